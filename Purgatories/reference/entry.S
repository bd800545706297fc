/* Assembly half of the reference purgatory (kexec_file_load ABI, x86-64).
 *
 * Entered at purgatory_start with paging on (identity mapped), interrupts
 * off, an invalid GDT/IDT and rsp on some caller stack.  We install our
 * own GDT and stack, run purgatory() (the SHA-256 check), then enter the
 * next kernel with the register file the kernel stored in entry64_regs.
 * Everything is RIP-relative so the blob runs wherever it is placed; the
 * only absolute relocation is the GDT base in gdt_desc (R_X86_64_64).
 * With -DKEXEC_TOOLS_ABI (kexec-tools-abi variant) entry64_regs has
 * kexec-tools' field order instead of the kernel's.  With
 * -DGDT_BASE_AT_RUNTIME (pie-norelative variant) the descriptor sits in
 * .data and its base is stored at run time, so nothing needs relocating. */

#ifdef GDT_BASE_AT_RUNTIME
#define LOAD_GDT			\
	leaq	gdt(%rip), %rax;	\
	movq	%rax, gdt_desc + 2(%rip); \
	lgdt	gdt_desc(%rip)
#else
#define LOAD_GDT lgdt gdt_desc(%rip)
#endif

#define KERNEL_CS 0x10
#define KERNEL_DS 0x18

	.text
	.balign	16
	.globl	purgatory_start
	.type	purgatory_start, @function
purgatory_start:
	LOAD_GDT
	movl	$KERNEL_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	private_stack_end(%rip), %rsp	/* 16-byte aligned for the call */

	/* Reload CS from our GDT: the old selector points into a GDT that
	 * no longer exists. */
	pushq	$KERNEL_CS
	leaq	1f(%rip), %rax
	pushq	%rax
	lretq
1:
	call	purgatory	/* returns only if the digest matched */
	/* fall through */
	.size	purgatory_start, . - purgatory_start

	.globl	entry64
	.type	entry64, @function
entry64:
	/* Same setup again so entry64 is self-contained. */
	LOAD_GDT
	movl	$KERNEL_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	private_stack_end(%rip), %rsp

	pushq	$KERNEL_CS
	leaq	2f(%rip), %rax
	pushq	%rax
	lretq
2:
#ifdef KEXEC_TOOLS_ABI
	/* kexec-tools' register file, loaded in its field order; every
	 * field is addressed RIP-relative, so no base register is needed. */
	movq	entry64_regs + 0x00(%rip), %rax
	movq	entry64_regs + 0x08(%rip), %rbx
	movq	entry64_regs + 0x10(%rip), %rcx
	movq	entry64_regs + 0x18(%rip), %rdx
	movq	entry64_regs + 0x20(%rip), %rsi
	movq	entry64_regs + 0x28(%rip), %rdi
	movq	entry64_regs + 0x30(%rip), %rsp
	movq	entry64_regs + 0x38(%rip), %rbp
	movq	entry64_regs + 0x40(%rip), %r8
	movq	entry64_regs + 0x48(%rip), %r9
	movq	entry64_regs + 0x50(%rip), %r10
	movq	entry64_regs + 0x58(%rip), %r11
	movq	entry64_regs + 0x60(%rip), %r12
	movq	entry64_regs + 0x68(%rip), %r13
	movq	entry64_regs + 0x70(%rip), %r14
	movq	entry64_regs + 0x78(%rip), %r15
#else
	/* Load the next kernel's registers; rax is the base, so last. */
	leaq	entry64_regs(%rip), %rax
	movq	0x08(%rax), %rcx
	movq	0x10(%rax), %rdx
	movq	0x18(%rax), %rbx
	movq	0x20(%rax), %rsp
	movq	0x28(%rax), %rbp
	movq	0x30(%rax), %rsi
	movq	0x38(%rax), %rdi
	movq	0x40(%rax), %r8
	movq	0x48(%rax), %r9
	movq	0x50(%rax), %r10
	movq	0x58(%rax), %r11
	movq	0x60(%rax), %r12
	movq	0x68(%rax), %r13
	movq	0x70(%rax), %r14
	movq	0x78(%rax), %r15
	movq	0x00(%rax), %rax
#endif
	jmp	*entry64_regs + 0x80(%rip)	/* rip field */
	.size	entry64, . - entry64

	.section .rodata
	.balign	16
gdt:
	.quad	0			/* 0x00 null */
	.quad	0			/* 0x08 unused */
	.quad	0x00af9a000000ffff	/* 0x10 64-bit code, DPL 0 */
	.quad	0x00cf92000000ffff	/* 0x18 data, DPL 0 */
gdt_end:
#ifdef GDT_BASE_AT_RUNTIME
	.data
	.balign	16
gdt_desc:				/* operand of lgdt; base stored by LOAD_GDT */
	.word	gdt_end - gdt - 1
	.quad	0
#else
gdt_desc:				/* operand of lgdt */
	.word	gdt_end - gdt - 1
	.quad	gdt			/* R_X86_64_64, patched at load time */
#endif

	.data
	.balign	16
	/* Register file for the next kernel; the loader fills it in
	 * (rbx = 0, rsi = boot params, rsp = stack_end, rip = kernel entry). */
	.globl	entry64_regs
	.type	entry64_regs, @object
	.size	entry64_regs, 136
entry64_regs:
#ifdef KEXEC_TOOLS_ABI
	.quad	0, 0, 0, 0	/* rax, rbx, rcx, rdx */
	.quad	0, 0, 0, 0	/* rsi, rdi, rsp, rbp */
#else
	.quad	0, 0, 0, 0	/* rax, rcx, rdx, rbx */
	.quad	0, 0, 0, 0	/* rsp, rbp, rsi, rdi */
#endif
	.quad	0, 0, 0, 0	/* r8,  r9,  r10, r11 */
	.quad	0, 0, 0, 0	/* r12, r13, r14, r15 */
	.quad	0		/* rip */

	/* The next kernel's initial stack (in .data, so it is part of the
	 * loaded image rather than NOBITS). */
	.balign	16
	.globl	stack
	.type	stack, @object
	.size	stack, 4096
stack:
	.fill	4096, 1, 0
	.globl	stack_end
stack_end:

	.bss
	.balign	16
	/* Our own stack for purgatory() and entry64. */
private_stack:
	.skip	4096
private_stack_end:

	.section .note.GNU-stack, "", @progbits
