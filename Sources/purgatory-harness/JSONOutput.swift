import Foundation
import HarnessVersion

/// One convention for every command's `--json` (docs/json.md): one object on standard output,
/// keys in snake_case (each type's CodingKeys say so), sorted; a top-level `schema_version` and
/// `tool_version` (which build said it: shards and reports of different versions are told apart); and
/// every optional field present, `null` when there is none — Foundation's JSONEncoder leaves
/// absent optionals out, so the values are encoded through `NullKeepingEncoder` below, which
/// builds Foundation objects, and written by JSONSerialization.
enum JSONOutput {
    /// Bumped when a key changes meaning or disappears; new keys do not bump it.
    static let schemaVersion = 1

    /// `value` as the command's output object. An array (a list of rows) goes under `listKey`.
    static func data<T: Encodable>(_ value: T, listKey: String = "rows") throws -> Data {
        let encoder = NullKeepingEncoder()
        try value.encode(to: encoder)
        let root: NSMutableDictionary
        switch encoder.storage {
        case let object as NSMutableDictionary: root = object
        case let other?: root = [listKey: other]
        case nil: root = [:]
        }
        root["schema_version"] = schemaVersion
        root["tool_version"] = PurgatoryHarnessVersion.string
        return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys, .withoutEscapingSlashes])
    }

    /// The object for a refusal under `--json`: `{"error": {"file", "what", "reason", "exit_code"}}`.
    static func error(_ refusal: Refusal, exitCode: Int32) throws -> Data {
        let error: NSMutableDictionary = [
            "file": refusal.file.map { $0 as Any } ?? NSNull(), "what": refusal.what, "reason": refusal.reason, "exit_code": Int(exitCode),
        ]
        return try JSONSerialization.data(withJSONObject: ["error": error, "schema_version": schemaVersion, "tool_version": PurgatoryHarnessVersion.string] as NSDictionary, options: [.sortedKeys, .withoutEscapingSlashes])
    }
}

/// A refusal's three parts, as the one-line message names them: the file (when there is one),
/// the thing, and the reason.
struct Refusal {
    var file: String?
    var what: String
    var reason: String

    /// Split from "FILE: THING: REASON" (every input error's form) or "THING: REASON".
    init(message: String) {
        let parts = message.components(separatedBy: ": ")
        switch parts.count {
        case 0, 1: (file, what, reason) = (nil, "input", message)
        case 2: (file, what, reason) = (nil, parts[0], parts[1])
        default:
            let first = parts[0]
            let looksLikeFile = first.contains("/") || first.contains(".") || FileManager.default.fileExists(atPath: first)
            if looksLikeFile {
                (file, what, reason) = (first, parts[1], parts.dropFirst(2).joined(separator: ": "))
            } else {
                (file, what, reason) = (nil, first, parts.dropFirst().joined(separator: ": "))
            }
        }
    }
}

/// An Encoder that builds NSDictionary/NSArray/NSNumber/NSString/NSNull and writes `null` for an
/// absent optional (`encodeIfPresent` of nil) instead of leaving the key out.
final class NullKeepingEncoder: Encoder {
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] = [:]
    /// What was encoded: a container object, or a single value.
    var storage: Any?

    init(codingPath: [any CodingKey] = []) { self.codingPath = codingPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object = storage as? NSMutableDictionary ?? NSMutableDictionary()
        storage = object
        return KeyedEncodingContainer(Keyed<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array = storage as? NSMutableArray ?? NSMutableArray()
        storage = array
        return Unkeyed(array: array, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { Single(encoder: self) }

    /// A value as a Foundation object: scalars directly, everything else through its own encode(to:).
    static func box<T: Encodable>(_ value: T, codingPath: [any CodingKey]) throws -> Any {
        switch value {
        case let v as String: return v
        case let v as Bool: return NSNumber(value: v)
        case let v as Int: return NSNumber(value: v)
        case let v as Int32: return NSNumber(value: v)
        case let v as Int64: return NSNumber(value: v)
        case let v as UInt8: return NSNumber(value: v)
        case let v as UInt16: return NSNumber(value: v)
        case let v as UInt32: return NSNumber(value: v)
        case let v as UInt64: return NSNumber(value: v)
        case let v as UInt: return NSNumber(value: v)
        case let v as Double: return v.isFinite ? NSNumber(value: v) : NSNull()
        case let v as Float: return v.isFinite ? NSNumber(value: v) : NSNull()
        default:
            let encoder = NullKeepingEncoder(codingPath: codingPath)
            try value.encode(to: encoder)
            return encoder.storage ?? NSNull()
        }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let object: NSMutableDictionary
        var codingPath: [any CodingKey]

        mutating func encodeNil(forKey key: Key) throws { object[key.stringValue] = NSNull() }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            object[key.stringValue] = try NullKeepingEncoder.box(value, codingPath: codingPath + [key])
        }
        mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
            if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
        }
        // The concrete overloads, so that no default implementation leaves a key out.
        mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { try encodeAny(value, key) }
        mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { try encodeAny(value, key) }

        private mutating func encodeAny<T: Encodable>(_ value: T?, _ key: Key) throws {
            if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            let nested = NSMutableDictionary()
            object[key.stringValue] = nested
            return KeyedEncodingContainer(Keyed<NestedKey>(object: nested, codingPath: codingPath + [key]))
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            let nested = NSMutableArray()
            object[key.stringValue] = nested
            return Unkeyed(array: nested, codingPath: codingPath + [key])
        }
        mutating func superEncoder() -> any Encoder { NullKeepingEncoder(codingPath: codingPath) }
        mutating func superEncoder(forKey key: Key) -> any Encoder { NullKeepingEncoder(codingPath: codingPath + [key]) }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let array: NSMutableArray
        var codingPath: [any CodingKey]
        var count: Int { array.count }

        mutating func encodeNil() throws { array.add(NSNull()) }
        mutating func encode<T: Encodable>(_ value: T) throws { array.add(try NullKeepingEncoder.box(value, codingPath: codingPath)) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let nested = NSMutableDictionary()
            array.add(nested)
            return KeyedEncodingContainer(Keyed<NestedKey>(object: nested, codingPath: codingPath))
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let nested = NSMutableArray()
            array.add(nested)
            return Unkeyed(array: nested, codingPath: codingPath)
        }
        mutating func superEncoder() -> any Encoder { NullKeepingEncoder(codingPath: codingPath) }
    }

    struct Single: SingleValueEncodingContainer {
        let encoder: NullKeepingEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }
        mutating func encodeNil() throws { encoder.storage = NSNull() }
        mutating func encode<T: Encodable>(_ value: T) throws { encoder.storage = try NullKeepingEncoder.box(value, codingPath: codingPath) }
    }
}
