/* pic-no-hidden variant only: the kernel-visible hash data defined in a
 * translation unit of its own.  purgatory.c (built with
 * -DPURGATORY_ABI_DATA_ELSEWHERE) then sees only the extern declarations
 * in purgatory.h, and without the hidden pragma -fpic makes it load their
 * addresses from the GOT (R_X86_64_REX_GOTPCRELX). */
#include "purgatory.h"

struct region purgatory_sha_regions[PURGATORY_REGIONS]
	__attribute__((section(".kexec-purgatory"))) IN_ORDER;
uint8_t purgatory_sha256_digest[32]
	__attribute__((section(".kexec-purgatory"))) IN_ORDER;
