/* Declarations shared by the reference purgatory's C files.
 *
 * Everything is declared hidden: with -fpic, a *declaration* of an
 * extern object with default visibility makes the compiler go through
 * the GOT (R_X86_64_REX_GOTPCRELX), which the kernel's purgatory loader
 * rejects.  Hidden declarations give plain PC32/PLT32 instead.  The
 * pragma (rather than only -fvisibility=hidden) is what covers
 * declarations; gcc and clang both honour it. */
#ifndef PURGATORY_H
#define PURGATORY_H

#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

/* One memory range to hash, as written by the kernel (start, len). */
struct region {
	uint64_t start;
	uint64_t len;
};

#define PURGATORY_REGIONS 16

/* Filled in by the kernel through its symbol-set interface. */
extern struct region purgatory_sha_regions[PURGATORY_REGIONS];
extern uint8_t purgatory_sha256_digest[32];

void purgatory(void);

/* The compiler may emit calls to these even with -ffreestanding. */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#pragma GCC visibility pop

#endif
