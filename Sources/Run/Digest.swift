import Crypto

/// Lowercase hex SHA-256, as sha256sum prints it: how extracted purgatories are identified.
public func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}
