/* Declarations shared by the reference purgatory's C files.
 *
 * Everything is declared hidden: with -fpic, a *declaration* of an
 * extern object with default visibility makes the compiler go through
 * the GOT (R_X86_64_REX_GOTPCRELX), which the kernel's purgatory loader
 * rejects.  Hidden declarations give plain PC32/PLT32 instead.  The
 * pragma (rather than only -fvisibility=hidden) is what covers
 * declarations; gcc and clang both honour it.  The pic-no-hidden variant
 * defines PURGATORY_NO_HIDDEN_PRAGMA to show what happens without it. */
#ifndef PURGATORY_H
#define PURGATORY_H

#include <stddef.h>
#include <stdint.h>

#ifndef PURGATORY_NO_HIDDEN_PRAGMA
#pragma GCC visibility push(hidden)
#endif

/* One memory range to hash, as written by the kernel (start, len). */
struct region {
	uint64_t start;
	uint64_t len;
};

#define PURGATORY_REGIONS 16

/* Filled in by the kernel through its symbol-set interface.  Defined in
 * purgatory.c (or, with PURGATORY_ABI_DATA_ELSEWHERE, in abi-data.c).
 * Both live in their own PROGBITS section (the kernel cannot set symbols
 * in NOBITS): regions at offset 0, digest at 0x100, in definition order.
 * gcc would otherwise reorder them (it emitted the digest first);
 * no_reorder stops that.  clang keeps source order and lacks the
 * attribute. */
#if defined(__has_attribute) && __has_attribute(no_reorder)
#define IN_ORDER __attribute__((no_reorder))
#else
#define IN_ORDER
#endif

extern struct region purgatory_sha_regions[PURGATORY_REGIONS];
extern uint8_t purgatory_sha256_digest[32];

void purgatory(void);

/* The compiler may emit calls to these even with -ffreestanding. */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#ifndef PURGATORY_NO_HIDDEN_PRAGMA
#pragma GCC visibility pop
#endif

#endif
