//! QEMU `-machine virt` (AArch64) test board.
//!
//! Boot ([`boot`]): EL1 (dropping from EL2 if needed), FP/SIMD on, stack and
//! `.bss`, exception vectors. Then, with the MMU still off, the device tree
//! is found and read into a [`Platform`], the identity map is built from its
//! RAM and address range ([`mmu`]), and the shared [`iommu_board::board_main`]
//! takes over. Console and exit go through Arm semihosting ([`semihosting`]);
//! the clock is the generic timer's virtual counter.
//!
//! Run with `-machine virt,iommu=smmuv3 -cpu max -semihosting-config
//! enable=on,target=native -kernel iommu-virt`.

#![no_std]
#![no_main]

mod boot;
mod mmu;
mod semihosting;

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, Readable};
use iommu_board::fdt::{self, Fdt};
use iommu_board::harness::EXIT_DISCOVERY;
use iommu_board::platform::Platform;
use iommu_board::{BoardOps, CpuOps, board_main};

unsafe extern "C" {
    /// Where QEMU puts the DTB when x0 does not carry it (`link/virt.ld`).
    static __virt_dtb_fallback: u8;
}

/// Monotonic nanoseconds from the generic timer's virtual counter.
fn now_ns() -> u64 {
    let freq = CNTFRQ_EL0.get();
    let ticks = CNTVCT_EL0.get();
    if freq == 0 {
        return ticks;
    }
    (ticks / freq) * 1_000_000_000 + (ticks % freq) * 1_000_000_000 / freq
}

/// Why the board could not hand over to the shared code.
#[derive(defmt::Format)]
enum BootError {
    /// The device tree is unreadable or lacks what we need.
    Fdt(fdt::Error),
    /// The device tree blob overlaps the running image (DTB address, image start).
    DtbOverlapsImage(u64, u64),
    /// The MMU could not be set up.
    Mmu(mmu::Error),
}

/// The DTB: at x0 if that holds the FDT magic, else at the RAM base where
/// QEMU's ELF boot protocol puts it (x0 is 0 for ELF images).
fn find_dtb(x0: usize) -> Result<&'static [u8], BootError> {
    let read_header = |addr: usize| -> [u8; 8] {
        let p = addr as *const u32;
        // SAFETY: an aligned read of 8 bytes of RAM: `addr` is the loader's
        // x0 (checked non-null and aligned) or the RAM base.
        let (a, b) = unsafe { (p.read_volatile(), p.add(1).read_volatile()) };
        let mut h = [0; 8];
        h[..4].copy_from_slice(&a.to_ne_bytes());
        h[4..].copy_from_slice(&b.to_ne_bytes());
        h
    };
    let from_x0 = x0 != 0 && x0.is_multiple_of(8) && Fdt::total_size(&read_header(x0)).is_ok();
    let addr = if from_x0 {
        x0
    } else {
        core::ptr::addr_of!(__virt_dtb_fallback) as usize
    };
    let size = Fdt::total_size(&read_header(addr)).map_err(BootError::Fdt)?;
    // `totalsize` comes from the blob: a blob that would run past the end of
    // the address space cannot be there.
    let blob_end = addr
        .checked_add(size)
        .ok_or(BootError::Fdt(fdt::Error::Truncated))?;
    let (start, end) = mmu::image_range();
    if (addr as u64) < end && start < blob_end as u64 {
        return Err(BootError::DtbOverlapsImage(addr as u64, start));
    }
    // SAFETY: the loader wrote a `size`-byte blob at `addr` (its header says
    // so), outside our image, and nothing writes it while we run.
    Ok(unsafe { core::slice::from_raw_parts(addr as *const u8, size) })
}

/// Device-tree discovery and the MMU, all before the shared code runs.
fn bring_up(x0: usize) -> Result<Platform, BootError> {
    let fdt = Fdt::new(find_dtb(x0)?).map_err(BootError::Fdt)?;
    let platform = fdt::platform(&fdt, "virt").map_err(BootError::Fdt)?;
    let limit = fdt::address_limit(&fdt).map_err(BootError::Fdt)?;
    let mapped = mmu::enable(&platform.ram, limit).map_err(BootError::Mmu)?;
    if mapped.limit < limit {
        defmt::println!(
            "virt: device tree reaches {=u64:#x}, only {=u64:#x} mapped ({=u32}-bit PA)",
            limit,
            mapped.limit,
            mapped.pa_bits
        );
    }
    Ok(platform)
}

/// Rust entry from `_start` (EL1, MMU off, FP on, stack and `.bss` ready).
#[unsafe(no_mangle)]
extern "C" fn virt_main(x0: usize) -> ! {
    iommu_board::harness::set_exit(semihosting::exit);
    semihosting::open_console();
    iommu_board::console::init(semihosting::write);
    match bring_up(x0) {
        Ok(platform) => board_main(
            platform,
            BoardOps {
                exit: semihosting::exit,
                now_ns,
                cpu: CpuOps {
                    space: mmu::cpu_space,
                    flush_va: mmu::flush_va,
                },
            },
        ),
        Err(e) => {
            defmt::println!("virt: discovery failed: {}", e);
            semihosting::exit(EXIT_DISCOVERY)
        }
    }
}
