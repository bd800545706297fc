// OpenSSL 3's libcrypto (Debian libssl-dev) for the Run module's host SHA-256 block function.
//
// swift-crypto hashes whole messages only; the fast-forward needs SHA-256's compression
// function on the guest's own state words, which libcrypto exports as SHA256_Transform (one
// 64-byte block, state as native 32-bit words in SHA256_CTX.h). It is deprecated in OpenSSL 3
// in favour of the EVP interface, which has no block-level entry: the deprecation warning is
// silenced here, and only here. Nothing else belongs in this file.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/sha.h>
#include <openssl/crypto.h>

/// Runs SHA-256's compression function over `blocks` consecutive 64-byte blocks at `data`,
/// updating the eight state words `h` (native byte order, as SHA256_CTX keeps them).
static inline void ph_sha256_blocks(unsigned int h[8], const unsigned char *data, size_t blocks) {
    SHA256_CTX ctx;
    for (int i = 0; i < 8; i++) ctx.h[i] = h[i];
    for (size_t b = 0; b < blocks; b++) SHA256_Transform(&ctx, data + 64 * b);
    for (int i = 0; i < 8; i++) h[i] = ctx.h[i];
}
