/* SHA-256 (FIPS 180-4), streaming interface. */
#ifndef SHA256_H
#define SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifndef PURGATORY_NO_HIDDEN_PRAGMA	/* see purgatory.h */
#pragma GCC visibility push(hidden)
#endif

struct sha256_ctx {
	uint32_t h[8];      /* chaining state */
	uint64_t count;     /* total bytes fed so far */
	uint8_t buf[64];    /* partial block */
};

void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t len);
void sha256_final(struct sha256_ctx *c, uint8_t out[32]);

#ifndef PURGATORY_NO_HIDDEN_PRAGMA
#pragma GCC visibility pop
#endif

#endif
