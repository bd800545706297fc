/* Host driver for the callgrind cross-check (docs/accounting.md): runs the reference
 * purgatory's own purgatory() -- the same purgatory.c, sha256.c and string.c, compiled with
 * the same flags -- natively over regions of the given lengths, as the harness runs it in
 * the emulator.  callgrind collects inside purgatory() only (--toggle-collect=purgatory).
 *
 *   driver LEN...     one region per length (at most 16), filled with a fixed pattern
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../purgatory.h"
#include "../sha256.h"

int main(int argc, char **argv)
{
	struct sha256_ctx ctx;
	int i, n = argc - 1;

	if (n < 1 || n > PURGATORY_REGIONS) {
		fprintf(stderr, "usage: %s LEN... (1 to %d region lengths)\n", argv[0], PURGATORY_REGIONS);
		return 2;
	}
	for (i = 0; i < n; i++) {
		size_t len = strtoull(argv[i + 1], NULL, 0);
		unsigned char *p = malloc(len ? len : 1);
		size_t j;

		if (!p)
			return 2;
		for (j = 0; j < len; j++)
			p[j] = (unsigned char)(j * 131 + i);
		purgatory_sha_regions[i].start = (uintptr_t)p;
		purgatory_sha_regions[i].len = len;
	}
	/* The digest the kernel would store, computed outside the collected function. */
	sha256_init(&ctx);
	for (i = 0; i < n; i++)
		sha256_update(&ctx, (const void *)(uintptr_t)purgatory_sha_regions[i].start,
			      purgatory_sha_regions[i].len);
	sha256_final(&ctx, purgatory_sha256_digest);

	purgatory();	/* spins forever on a mismatch */
	puts("purgatory() returned: digest verified");
	return 0;
}
