import ArgumentParser

/// ArgumentParser says only "The value 'x' is invalid for '--load-address <load-address>'" when a
/// value does not parse; this adds what the option accepts, found from the option's value type.
enum UsageHints {
    /// What each value type accepts, by the type's name.
    static let accepted: [String: String] = [
        "Quantity": "expected " + Quantity.accepted,
        "Seed": "expected a decimal number, 0x hex or K/M/G/T suffix below 2^64, or a negative number for its two's complement",
        "AddressRange": "expected LO-HI with LO < HI, each " + Quantity.accepted + " (e.g. 2G-4G)",
        "Shard": "expected i/n with 0 ≤ i < n (e.g. 0/4)",
        "Int": "expected a decimal integer",
    ]

    static func explain(_ message: String) -> String {
        guard message.hasPrefix("The value '"), message.hasSuffix(">'"),
              let open = message.range(of: "' is invalid for '--") else { return message }
        let rest = message[open.upperBound...]
        guard let space = rest.firstIndex(of: " ") else { return message }
        let option = String(rest[..<space])
        guard let type = valueType(of: option), let hint = accepted.first(where: { type.contains("<\($0.key)>") || type.contains("<Optional<\($0.key)>>") || type.contains("<Array<\($0.key)>>") })?.value
        else { return message }
        return message + ": " + hint
    }

    /// The declared type of `--option-name` in any subcommand ("Option<Optional<Quantity>>").
    static func valueType(of option: String) -> String? {
        var commands: [any ParsableCommand.Type] = [PurgatoryHarness.self]
        var index = 0
        while index < commands.count {
            commands += commands[index].configuration.subcommands
            index += 1
        }
        for command in commands {
            for child in Mirror(reflecting: command.init()).children {
                guard let label = child.label, label.hasPrefix("_") else { continue }
                let name = kebab(String(label.dropFirst()))
                if name == option || name == option + "s" { return String(describing: type(of: child.value)) }
            }
        }
        return nil
    }

    static func kebab(_ name: String) -> String {
        var result = ""
        for character in name {
            if character.isUppercase { result += "-" + character.lowercased() } else { result.append(character) }
        }
        return result
    }
}
