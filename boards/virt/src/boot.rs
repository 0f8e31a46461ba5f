//! Entry point and exception vectors.
//!
//! `_start` runs before any Rust code: it leaves EL2 for EL1 if QEMU started
//! us at EL2 (`virtualization=on`), enables FP/SIMD (the target's code uses
//! it freely), sets the stack, zeroes `.bss`, installs the vector table and
//! calls [`crate::virt_main`] with the x0 the loader gave us.
//!
//! Exceptions are never expected (interrupts stay masked): every vector
//! switches to a stack of its own and calls [`virt_exception`], which panics with
//! ESR/ELR/FAR so the harness reports it and exits with its panic code. A
//! second exception while handling one (e.g. inside the panic path) exits
//! at once through semihosting with [`EXIT_NESTED_EXCEPTION`].

use aarch64_cpu::registers::{ELR_EL1, ESR_EL1, FAR_EL1, Readable, SPSR_EL1};

/// Stack for Rust code.
const STACK_SIZE: usize = 256 * 1024;
/// Stack for the exception handler (and the panic it raises).
const EXCEPTION_STACK_SIZE: usize = 32 * 1024;
/// Exit code when an exception hits while another one is being handled (=
/// the harness's panic code: that is what the first exception became).
pub const EXIT_NESTED_EXCEPTION: u8 = 3;
/// Exit code when the CPU starts at an exception level we do not handle (EL3).
pub const EXIT_BAD_EL: u8 = 2;

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mov     x19, x0                     // keep the loader's x0 (DTB pointer or 0)
    mrs     x1, CurrentEL
    ubfx    x1, x1, #2, #2
    cmp     x1, #1
    b.eq    .Lel1
    cmp     x1, #2
    b.eq    .Lel2
    adr     x1, .Lexit_bad_el           // EL3: not supported
    b       .Lsemihosting_exit

.Lel2:
    // EL1 runs AArch64; no stage 2, no traps, no VHE.
    mov     x1, #(1 << 31)              // HCR_EL2.RW
    msr     hcr_el2, x1
    mov     x1, #0x33ff                 // CPTR_EL2 RES1 bits; TFP = TTA = 0
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    mov     x1, #3                      // CNTHCTL_EL2.EL1PCTEN | EL1PCEN
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    mov     x1, #0x0800                 // SCTLR_EL1: RES1 bits, MMU and caches off, LE
    movk    x1, #0x30d0, lsl #16
    msr     sctlr_el1, x1
    mov     x1, #0x3c5                  // SPSR_EL2: D A I F masked, EL1h
    msr     spsr_el2, x1
    adr     x1, .Lel1
    msr     elr_el2, x1
    eret

.Lel1:
    mov     x1, #(3 << 20)              // CPACR_EL1.FPEN = 0b11: no FP/SIMD traps
    msr     cpacr_el1, x1
    isb
    adrp    x1, .Lstack_top
    add     x1, x1, :lo12:.Lstack_top
    mov     sp, x1
    adrp    x1, __virt_bss_start
    add     x1, x1, :lo12:__virt_bss_start
    adrp    x2, __virt_bss_end
    add     x2, x2, :lo12:__virt_bss_end
0:  cmp     x1, x2                      // 16-byte aligned stores: fine on Device memory (MMU off)
    b.hs    1f
    stp     xzr, xzr, [x1], #16
    b       0b
1:  adrp    x1, virt_exception_vectors
    add     x1, x1, :lo12:virt_exception_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      virt_main
    b       .

.Lsemihosting_exit:                     // x1 = [ADP_Stopped_ApplicationExit, code]
    mov     w0, #0x18                   // SYS_EXIT
    hlt     #0xf000
    b       .

    .balign 8
.Lexit_bad_el:
    .quad   0x20026, {bad_el}
.Lexit_nested:
    .quad   0x20026, {nested}

    .section .text.vectors, "ax"
    .balign 2048
    .global virt_exception_vectors
virt_exception_vectors:
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 128
    mov     x0, #\n
    b       .Lexception_common
    .endr

.Lexception_common:
    adrp    x1, .Lexception_stack_top
    add     x1, x1, :lo12:.Lexception_stack_top
    mov     sp, x1
    adrp    x1, .Lin_exception
    add     x1, x1, :lo12:.Lin_exception
    ldr     x2, [x1]
    cbnz    x2, 2f
    mov     x2, #1
    str     x2, [x1]
    bl      virt_exception
2:  adr     x1, .Lexit_nested
    b       .Lsemihosting_exit

    // Stacks and the nesting flag live in .bss (zeroed above, before use).
    .section .bss.virt_boot, "aw", %nobits
    .balign 16
    .skip   {stack_size}
.Lstack_top:
    .skip   {exception_stack_size}
.Lexception_stack_top:
.Lin_exception:
    .skip   8
"#,
    stack_size = const STACK_SIZE,
    exception_stack_size = const EXCEPTION_STACK_SIZE,
    bad_el = const EXIT_BAD_EL as u64,
    nested = const EXIT_NESTED_EXCEPTION as u64,
);

/// What an exception vector index means (VBAR_EL1 offset / 0x80).
fn vector_name(n: u64) -> (&'static str, &'static str) {
    let from = match n / 4 {
        0 => "EL1 with SP_EL0",
        1 => "EL1",
        2 => "EL0 AArch64",
        _ => "EL0 AArch32",
    };
    let kind = match n % 4 {
        0 => "synchronous",
        1 => "IRQ",
        2 => "FIQ",
        _ => "SError",
    };
    (kind, from)
}

/// Called by the vector code on its own stack; `vector` is the entry index.
#[unsafe(no_mangle)]
extern "C" fn virt_exception(vector: u64) -> ! {
    let (kind, from) = vector_name(vector);
    let esr = ESR_EL1.get();
    panic!(
        "CPU exception: {} from {}: ESR_EL1={:#x} (EC {:#x}) ELR_EL1={:#x} FAR_EL1={:#x} SPSR_EL1={:#x}",
        kind,
        from,
        esr,
        (esr >> 26) & 0x3f,
        ELR_EL1.get(),
        FAR_EL1.get(),
        SPSR_EL1.get()
    )
}
