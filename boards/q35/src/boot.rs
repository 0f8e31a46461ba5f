//! PVH entry: the Xen `PHYS32_ENTRY` ELF note and the 32-bit → 64-bit switch.
//!
//! QEMU (`-kernel` with an ELF that carries the note) enters `pvh_start32` in
//! 32-bit protected mode, paging off, flat segments, `EBX` = physical address
//! of the `hvm_start_info`. We zero `.bss`, identity-map the first 4 GiB with
//! 2 MiB pages (1 GiB pages are not assumed), enable PAE + `EFER.LME` +
//! paging, load a GDT with a 64-bit code segment, far-jump to 64-bit code,
//! switch to the boot stack and call [`crate::q35_start`] with the
//! `hvm_start_info` address.
//!
//! The page tables live in `.bss.boot_tables` so that [`crate::paging`] can
//! extend the identity map above 4 GiB later.

use core::arch::global_asm;

/// Size of the boot stack.
pub const STACK_SIZE: usize = 256 * 1024;

global_asm!(
    r#"
    .set XEN_ELFNOTE_PHYS32_ENTRY, 18

    /* Xen ELF note. QEMU reads the descriptor as a size_t (8 bytes) for an
       ELF64 image, so the 32-bit entry is stored zero-extended. */
    .pushsection .note.pvh, "a", @note
    .balign 4
    .long 4                         /* namesz: "Xen\0" */
    .long 8                         /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .long 0
    .balign 4
    .popsection

    .pushsection .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0                         /* null */
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff        /* 0x10: flat data */
boot_gdt_end:
    .balign 8
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    /* EBX = hvm_start_info: kept in EBX throughout (rep stos uses EAX/ECX/EDI). */

    /* Zero .bss (page tables and stack included; both ends 16-byte aligned). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4

    /* PDPT[0..4] -> the four page directories */
    mov $boot_pd, %eax
    or $0x3, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
1:
    mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 1b

    /* 2048 PDEs: 2 MiB pages (PS | RW | P) covering 0..4 GiB */
    mov $boot_pd, %edi
    mov $0x83, %eax
    mov $2048, %ecx
2:
    mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 2b

    mov $boot_pml4, %eax
    mov %eax, %cr3

    mov %cr4, %eax
    or $0x20, %eax                  /* CR4.PAE */
    mov %eax, %cr4

    mov $0xC0000080, %ecx           /* IA32_EFER */
    rdmsr
    or $0x100, %eax                 /* LME */
    wrmsr

    mov %cr0, %eax
    or $0x80000001, %eax            /* PG | PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs

    mov $boot_stack_top, %rsp
    xor %ebp, %ebp
    mov %ebx, %edi                  /* zero-extends: RDI = hvm_start_info */
    call q35_start
3:
    cli
    hlt
    jmp 3b
    .popsection

    .pushsection .bss.boot_tables, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
    .global boot_pdpt
boot_pdpt:
    .skip 4096
    .global boot_pd
boot_pd:
    .skip 4 * 4096
    .balign 16
boot_stack_bottom:
    .skip {stack_size}
boot_stack_top:
    .popsection
    "#,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);
