//! Arm semihosting (AArch64: `hlt #0xf000`, w0 = operation, x1 = parameter):
//! the console, the exit code and nothing else. QEMU needs
//! `-semihosting-config enable=on,target=native`.

use core::sync::atomic::{AtomicIsize, Ordering};

const SYS_OPEN: u32 = 0x01;
const SYS_WRITEC: u32 = 0x03;
const SYS_WRITE: u32 = 0x05;
const SYS_EXIT: u32 = 0x18;
/// SYS_EXIT reason: the application exited; the subcode is its exit status.
const ADP_STOPPED_APPLICATION_EXIT: usize = 0x20026;
/// SYS_OPEN mode 4 = "w": ":tt" opened for writing is the host's stdout.
const OPEN_MODE_W: usize = 4;

/// Handle of ":tt" for writing, or -1 (then [`write`] falls back to SYS_WRITEC).
static CONSOLE: AtomicIsize = AtomicIsize::new(-1);

/// One semihosting call.
///
/// # Safety
/// `param` must be what operation `op` expects: for the calls here, the
/// address of a parameter block the host may read for the duration of the call.
unsafe fn call(op: u32, param: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid parameter for `op`; the host reads
    // (never writes) guest memory for the operations used here, and the
    // asm block is treated as touching memory, so the block is in place.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") op as usize => ret,
            in("x1") param,
            options(nostack),
        );
    }
    ret
}

/// Open ":tt" for writing once; later writes use the handle.
pub fn open_console() {
    let name = b":tt\0";
    let block: [usize; 3] = [name.as_ptr() as usize, OPEN_MODE_W, name.len() - 1];
    // SAFETY: SYS_OPEN takes [name, mode, length of name without the NUL].
    let handle = unsafe { call(SYS_OPEN, block.as_ptr() as usize) };
    CONSOLE.store(handle, Ordering::Relaxed);
}

/// The console sink: SYS_WRITE to ":tt", or SYS_WRITEC byte by byte if it could not be opened.
pub fn write(mut bytes: &[u8]) {
    let handle = CONSOLE.load(Ordering::Relaxed);
    if handle >= 0 {
        while !bytes.is_empty() {
            let block: [usize; 3] = [handle as usize, bytes.as_ptr() as usize, bytes.len()];
            // SAFETY: SYS_WRITE takes [handle, buffer, length]; it returns the
            // number of bytes *not* written.
            let left = unsafe { call(SYS_WRITE, block.as_ptr() as usize) };
            if left <= 0 {
                return;
            }
            let left = left as usize;
            if left >= bytes.len() {
                return; // no progress: give up rather than spin
            }
            bytes = &bytes[bytes.len() - left..];
        }
    } else {
        for b in bytes {
            // SAFETY: SYS_WRITEC takes the address of the character.
            unsafe { call(SYS_WRITEC, b as *const u8 as usize) };
        }
    }
}

/// Leave QEMU with exit status `code`.
pub fn exit(code: u8) -> ! {
    let block: [usize; 2] = [ADP_STOPPED_APPLICATION_EXIT, usize::from(code)];
    // SAFETY: SYS_EXIT (AArch64 form) takes the address of [reason, subcode].
    unsafe { call(SYS_EXIT, block.as_ptr() as usize) };
    // Only reached without semihosting.
    loop {
        aarch64_cpu::asm::wfe();
    }
}
