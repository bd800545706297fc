import HarnessVersion

/// A JSON object with `tool_version` (PurgatoryHarnessVersion.string) beside the value's own keys:
/// `run --json`, `fuzz --json` and `fuzz-merge --json` print through it.
struct WithToolVersion<Value: Encodable>: Encodable {
    var value: Value
    init(_ value: Value) { self.value = value }

    private enum Key: String, CodingKey { case toolVersion = "tool_version" }

    func encode(to encoder: Encoder) throws {
        try value.encode(to: encoder)
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(PurgatoryHarnessVersion.string, forKey: .toolVersion)
    }
}
