//! Port I/O services: debugcon console, isa-debug-exit, ACPI PM timer clock.

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use iommu_board::acpi::PmTimer;
use x86_64::instructions::port::Port;

/// QEMU `-debugcon` port.
const DEBUGCON: u16 = 0xe9;
/// QEMU `isa-debug-exit` port (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
const DEBUG_EXIT: u16 = 0xf4;

/// Console sink for [`iommu_board::console::init`]: every byte to the debugcon port.
pub fn debugcon_write(bytes: &[u8]) {
    let mut port = Port::<u8>::new(DEBUGCON);
    for &b in bytes {
        // SAFETY: 0xe9 is QEMU's debugcon; writing it has no effect beyond
        // emitting the byte (and is ignored where no device decodes it).
        unsafe { port.write(b) };
    }
}

/// `BoardOps::exit`: QEMU exits with status `(code << 1) | 1`. Halts if no
/// isa-debug-exit device is present.
pub fn exit(code: u8) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT);
    // SAFETY: 0xf4 is the isa-debug-exit device on this board; the write ends
    // the VM. Nothing else decodes the port.
    unsafe { port.write(u32::from(code)) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// PM timer port (0 until [`init_clock`]).
static PM_PORT: AtomicU16 = AtomicU16::new(0);
/// Valid counter bits.
static PM_MASK: AtomicU32 = AtomicU32::new(0);
/// Counter value at the previous [`now_ns`] call.
static PM_LAST: AtomicU32 = AtomicU32::new(0);
/// Ticks accumulated since [`init_clock`].
static PM_TICKS: AtomicU64 = AtomicU64::new(0);

fn read_pm(port: u16) -> u32 {
    let mut p = Port::<u32>::new(port);
    // SAFETY: `port` is the FADT's PM_TMR_BLK, a read-only counter; reading
    // it has no side effects.
    unsafe { p.read() }
}

/// Start the clock on the FADT's PM timer.
pub fn init_clock(timer: PmTimer) {
    PM_MASK.store(timer.mask(), Ordering::Relaxed);
    PM_LAST.store(read_pm(timer.port) & timer.mask(), Ordering::Relaxed);
    PM_TICKS.store(0, Ordering::Relaxed);
    PM_PORT.store(timer.port, Ordering::Release);
}

/// `BoardOps::now_ns`: nanoseconds since [`init_clock`], from the PM timer
/// extended to 64 bits in software. Correct as long as calls are less than
/// one counter period apart (4.7 s at 24 bits, 20 min at 32 bits). The board
/// is single-core with interrupts off, so the load/store pairs do not race.
pub fn now_ns() -> u64 {
    let port = PM_PORT.load(Ordering::Acquire);
    if port == 0 {
        return 0;
    }
    let mask = PM_MASK.load(Ordering::Relaxed);
    let now = read_pm(port) & mask;
    let last = PM_LAST.swap(now, Ordering::Relaxed);
    let delta = u64::from(now.wrapping_sub(last) & mask);
    let ticks = PM_TICKS.fetch_add(delta, Ordering::Relaxed) + delta;
    (u128::from(ticks) * 1_000_000_000 / u128::from(PmTimer::HZ)) as u64
}
