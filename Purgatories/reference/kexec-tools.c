/* kexec-tools-abi variant: purgatory() with kexec-tools' symbol interface
 * instead of the kernel's (purgatory.c).  Same SHA-256 check, plus an
 * optional greeting on a 16550-style UART and a skip switch.
 *
 * Every symbol the loader writes lives in .data: kexec-tools refuses to
 * set symbols in NOBITS, and it checks each symbol's size against the
 * size it writes. */
#include "purgatory.h"
#include "sha256.h"

#define LOADER_SET __attribute__((section(".data")))

struct region sha256_regions[PURGATORY_REGIONS] LOADER_SET;	/* 256 bytes */
uint8_t sha256_digest[32] LOADER_SET;
/* Nonzero: skip the digest check.  kexec-tools' loader writes an
 * unsigned int here (and checks the size), so this is 4 bytes, not 1. */
uint32_t skip_checks LOADER_SET;

/* Console options.  console_serial nonzero: print on the UART at
 * serial_base.  serial_baud is accepted but not programmed (we do no
 * UART init: the port is used as the previous kernel or firmware left
 * it).  console_vga is accepted and ignored (no VGA output). */
uint8_t console_serial LOADER_SET;
uint16_t serial_base = 0x3f8;
uint32_t serial_baud = 115200;
uint8_t console_vga LOADER_SET;

#define UART_THR	0	/* transmit holding register (write) */
#define UART_LSR	5	/* line status register (read) */
#define LSR_THRE	0x20	/* THR empty: ready for the next byte */

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outb(uint8_t v, uint16_t port)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void serial_putc(char c)
{
	while (!(inb(serial_base + UART_LSR) & LSR_THRE))
		;
	outb((uint8_t)c, serial_base + UART_THR);
}

static void print(const char *s)
{
	if (!console_serial)
		return;
	while (*s)
		serial_putc(*s++);
}

void purgatory(void)
{
	struct sha256_ctx ctx;
	uint8_t digest[32];
	int i;

	print("I'm in purgatory\n");
	if (skip_checks)
		return;

	sha256_init(&ctx);
	for (i = 0; i < PURGATORY_REGIONS; i++)
		if (sha256_regions[i].len)
			sha256_update(&ctx,
				      (const void *)(uintptr_t)sha256_regions[i].start,
				      sha256_regions[i].len);
	sha256_final(&ctx, digest);

	if (memcmp(digest, sha256_digest, sizeof(digest)) != 0) {
		print("sha256 digests do not match :(\n");
		for (;;)
			;
	}
}
