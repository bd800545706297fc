/* The C half of the reference purgatory: verify the SHA-256 of the
 * regions the kernel loaded before entry64 jumps to the next kernel. */
#include "purgatory.h"
#include "sha256.h"

/* The data the kernel writes (see purgatory.h).  The pic-no-hidden
 * variant defines it in abi-data.c instead, so that this file reaches it
 * through an extern declaration only. */
#ifndef PURGATORY_ABI_DATA_ELSEWHERE
struct region purgatory_sha_regions[PURGATORY_REGIONS]
	__attribute__((section(".kexec-purgatory"))) IN_ORDER;
uint8_t purgatory_sha256_digest[32]
	__attribute__((section(".kexec-purgatory"))) IN_ORDER;
#endif

void purgatory(void)
{
	struct sha256_ctx ctx;
	uint8_t digest[32];
	int i;

	sha256_init(&ctx);
	for (i = 0; i < PURGATORY_REGIONS; i++) {
		const struct region *r = &purgatory_sha_regions[i];

		if (r->len)	/* unused slots are all zero */
			sha256_update(&ctx, (const void *)(uintptr_t)r->start,
				      r->len);
	}
	sha256_final(&ctx, digest);

	if (memcmp(digest, purgatory_sha256_digest, sizeof(digest)) != 0) {
		/* Corrupted image: never start it.  Interrupts are off, so
		 * this is a permanent hang (a single `jmp .`). */
		for (;;)
			;
	}
}
