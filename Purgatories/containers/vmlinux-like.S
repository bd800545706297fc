/*
 * A miniature vmlinux: an x86-64 executable linked at the kernel's virtual base whose
 * .rodata holds a purgatory the way the kernel's build embeds its own -- the object,
 * .align 8, then its u64 size -- under the symbols kexec_purgatory and kexec_purgatory_size.
 * `extract` finds it through the symbols here, and by scanning in the stripped copy
 * (what a bzImage's payload decompresses to).
 */
	.section .rodata, "a"
	.align	8
	.globl	kexec_purgatory
kexec_purgatory:
	.incbin	"reference/purgatory.ro"
.Lkexec_purgatory_end:
	.align	8
	.globl	kexec_purgatory_size
kexec_purgatory_size:
	.quad	.Lkexec_purgatory_end - kexec_purgatory

	.text
	.globl	_start
_start:
	hlt
	jmp	_start
