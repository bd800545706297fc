import Foundation
import Testing

/// docs/json.md is the contract: every object of every command's `--json` has exactly the keys
/// documented for it, every key is snake_case, and the object carries `schema_version`.
@Suite struct JSONConventionTests {
    /// Documented children per object path, per command section: "" is the root, "a[]" the
    /// elements of list a; map objects (`a.*`) are listed in `maps`.
    struct Schema {
        var children: [String: Set<String>] = [:]
        var maps: Set<String> = []
    }

    static func schemas() throws -> [String: Schema] {
        let text = try String(contentsOfFile: Fixtures.repository.appendingPathComponent("docs/json.md").path, encoding: .utf8)
        var sections: [String: [(path: String, type: String)]] = [:]
        var current: String?
        var commands: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") {
                current = String(line.dropFirst(3))
                commands.append(current ?? "")
            } else if line.hasPrefix("### ") {
                current = String(line.dropFirst(4))
            } else if let current, line.hasPrefix("| `") {
                let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                guard cells.count >= 4 else { continue }
                sections[current, default: []].append((cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`")), cells[2]))
            }
        }
        func expand(_ section: String, under prefix: String, into schema: inout Schema, depth: Int = 0) {
            guard depth < 8 else { return }
            for (path, type) in sections[section] ?? [] {
                let full = prefix.isEmpty ? path : prefix + "." + path
                let parts = full.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                let parent = parts.dropLast().joined(separator: "."), key = parts.last ?? ""
                if key == "*" { schema.maps.insert(parent); continue }
                schema.children[parent, default: []].insert(key)
                if let open = type.range(of: "(#"), let close = type[open.upperBound...].firstIndex(of: ")") {
                    let target = String(type[open.upperBound ..< close])
                    expand(target, under: type.hasPrefix("list of") ? full + "[]" : full, into: &schema, depth: depth + 1)
                }
            }
        }
        var result: [String: Schema] = [:]
        for command in commands {
            var schema = Schema()
            expand(command, under: "", into: &schema)
            for name in command.components(separatedBy: " and ") { result[name] = schema }
        }
        return result
    }

    /// Every object in `value` against the schema: the documented keys, exactly.
    static func check(_ value: Any, _ schema: Schema, path: String = "", _ problems: inout [String]) {
        if let object = value as? [String: Any] {
            if !schema.maps.contains(path) {
                for key in object.keys where key.contains(where: \.isUppercase) || key.contains(" ") { problems.append("\(path).\(key): not snake_case") }
                let documented = schema.children[path] ?? []
                let keys = Set(object.keys)
                if keys != documented {
                    problems.append("\(path.isEmpty ? "(root)" : path): undocumented \(keys.subtracting(documented).sorted()), missing \(documented.subtracting(keys).sorted())")
                }
            }
            for (key, child) in object { check(child, schema, path: path.isEmpty ? key : path + "." + key, &problems) }
        } else if let list = value as? [Any] {
            for element in list { check(element, schema, path: path + "[]", &problems) }
        }
    }

    static func output(_ arguments: [String]) throws -> Any {
        let out = try Fixtures.harness(arguments)
        do { return try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) } catch {
            Issue.record("\(arguments): not JSON (\(error)): \(out.stderr)")
            throw error
        }
    }

    @Test func everyCommandPrintsExactlyTheDocumentedKeys() throws {
        let schemas = try Self.schemas()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ph-json-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let kernelModel = Fixtures.repository.appendingPathComponent("Purgatories/variants/kernel-model.ro").path
        let large = Fixtures.repository.appendingPathComponent("Purgatories/variants/large.ro").path
        let ud2 = try Fixtures.temporaryFile(try ScenarioTests.patchedPurgatory([0x0f, 0x0b]), name: "ud2-\(UUID().uuidString).ro")
        let vmlinux = Fixtures.containersPath + "/vmlinux-like"
        let cases: [(String, [String])] = [
            ("run", ["run", "--seed", "1", "--json"]),
            ("run", ["run", "--seed", "1", "--json", "--tamper", "--cross-check", "--ima-segment", "4K", "--ima-rewrite", "--kernel-profile", "6.16"]),
            ("run", ["run", ud2, "--seed", "1", "--json", "--kernel-profile", "linux-6.16", "--early-serial", "0x3f8"]),
            ("run", ["run", kernelModel, "--load-address", "0x80000000", "--json"]),
            ("run", ["run", "--seed", "1", "--json", "--fast-hash", "--kernel-size", "1M"]),
            ("run", ["run", "--load-address", "0x17f7affd000", "--json"]),
            ("check", ["check", kernelModel, "--runs", "20", "--json", "--svg", dir + "/c.svg"]),
            ("inspect", ["inspect", kernelModel, "--json"]),
            ("inspect", ["inspect", vmlinux, "--json"]),
            ("extract", ["extract", vmlinux, "-o", dir + "/x.ro", "--json"]),
            ("fuzz", ["fuzz", kernelModel, "--runs", "30", "--seed", "1", "--range", "1G-4G", "--json", "--jsonl", dir + "/f.jsonl"]),
            ("fuzz-merge", ["fuzz-merge", dir + "/f.jsonl", "--json"]),
            ("compare", ["compare", Fixtures.referencePath, large, kernelModel, "--load-address", "0x100000000", "--json"]),
            ("matrix", ["matrix", Fixtures.repository.appendingPathComponent("Purgatories").path, "--json"]),
            ("error", ["run", "/nonexistent/purgatory.ro", "--json"]),
            ("error", ["fuzz", "--range", "0x100000-0x101000", "--json"]),
        ]
        for (command, arguments) in cases {
            let schema = try #require(schemas[command], Comment(rawValue: "docs/json.md has no section for \(command)"))
            let value = try Self.output(arguments)
            var problems: [String] = []
            Self.check(value, schema, &problems)
            #expect(problems.isEmpty, Comment(rawValue: arguments.joined(separator: " ") + ":\n" + problems.joined(separator: "\n")))
            #expect((value as? [String: Any])?["schema_version"] as? Int == 1, "\(arguments)")
        }
    }
}
