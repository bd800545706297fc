/// The one place the tool's version is written. `purgatory-harness --version`, the `tool_version`
/// key of `run --json` and `fuzz --json`, the campaign identity of `fuzz --jsonl`, the Debian
/// package (scripts/package-deb asks the built binary) and its man pages all read it from here.
/// CHANGELOG.md must have a section for it (scripts/package-deb checks).
public enum PurgatoryHarnessVersion {
    public static let string = "0.2.0"
}
