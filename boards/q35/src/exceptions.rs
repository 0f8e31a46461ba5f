//! CPU exceptions: an IDT whose 32 vectors turn a fault into a panic, so a
//! stray access shows up as `@@PANIC` with the vector, error code, RIP and
//! CR2 instead of a silent triple fault.

use core::arch::global_asm;
use core::ptr::addr_of;

use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;

global_asm!(
    r#"
    .pushsection .text.exceptions, "ax"
    .code64
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
exc_stub_\n:
    /* Vectors 8, 10-14, 17, 21, 29, 30 push an error code; push 0 for the rest. */
    .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    push $0
    .endif
    push $\n
    jmp exc_common
    .endr

exc_common:
    mov %rsp, %rdi                  /* &Frame */
    and $-16, %rsp
    call q35_exception
    ud2
    .popsection

    .pushsection .rodata.exceptions, "a"
    .balign 8
    .global exc_stub_table
exc_stub_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_stub_\n
    .endr
    .popsection
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    /// Entry points of the 32 stubs above.
    static exc_stub_table: [u64; 32];
}

/// What the stubs leave on the stack.
#[repr(C)]
struct Frame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
}

#[unsafe(no_mangle)]
extern "C" fn q35_exception(f: &Frame) -> ! {
    panic!(
        "CPU exception {} (error {:#x}) at rip {:#x} rsp {:#x} rflags {:#x} cr2 {:#x}",
        f.vector,
        f.error,
        f.rip,
        f.rsp,
        f.rflags,
        Cr2::read_raw()
    )
}

#[repr(C, align(16))]
struct Idt([[u64; 2]; 32]);

static mut IDT: Idt = Idt([[0; 2]; 32]);

/// 64-bit code segment of the boot GDT.
const KERNEL_CS: u64 = 0x08;
/// Present, DPL 0, 64-bit interrupt gate.
const GATE: u64 = 0x8e;

/// Build and load the IDT.
pub fn init() {
    // SAFETY: single-core, interrupts off, called once at boot: nothing else
    // reads IDT while it is filled. The stub table is immutable data the asm
    // above defines. The IDT is a static, so it outlives the `lidt`.
    unsafe {
        let stubs = &*addr_of!(exc_stub_table);
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (gate, &addr) in idt.0.iter_mut().zip(stubs.iter()) {
            gate[0] = (addr & 0xffff)
                | (KERNEL_CS << 16)
                | (GATE << 40)
                | (((addr >> 16) & 0xffff) << 48);
            gate[1] = addr >> 32;
        }
        lidt(&DescriptorTablePointer {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: VirtAddr::new(idt as *const Idt as u64),
        });
    }
}
