//! q35 board: boots under QEMU through PVH, reads the PVH start info and the
//! ACPI tables into a [`Platform`], and hands over to the shared
//! [`iommu_board::board_main`].
//!
//! Services: console on the debugcon port (0xE9), exit through isa-debug-exit
//! (0xF4), clock from the ACPI PM timer. Physical memory is identity mapped
//! (0..4 GiB at boot, extended to cover high RAM and the 64-bit PCI window).

#![no_std]
#![no_main]
#![deny(missing_docs)]

mod boot;
mod exceptions;
mod io;
mod paging;
mod start_info;

use iommu_board::acpi::{self, PhysMem};
use iommu_board::harness::EXIT_DISCOVERY;
use iommu_board::platform::{Platform, WindowKind};
use iommu_board::{BoardOps, CpuOps};

/// Physical memory as the boot identity map exposes it (0..4 GiB).
struct Identity;

/// End of the range the boot code maps.
const BOOT_MAPPED: u64 = 4 << 30;

impl PhysMem for Identity {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if addr == 0 || end > BOOT_MAPPED {
            return None;
        }
        // SAFETY: the range lies in the boot identity map (virtual ==
        // physical) and does not start at null. The parsers only ask for
        // addresses firmware gave us (start info, ACPI tables, memory map,
        // command line): RAM that nothing writes while the slice lives.
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
    }
}

/// Why the board could not describe the machine.
#[derive(defmt::Format)]
enum BootError {
    StartInfo(start_info::Error),
    Acpi(acpi::Error),
    NoRsdp,
    NoPmTimer,
}

unsafe extern "C" {
    /// End of the loaded image (link/q35.ld).
    static __image_end: u8;
}

fn discover(info_addr: u64) -> Result<Platform, BootError> {
    let mem = Identity;
    let info = start_info::read(&mem, info_addr).map_err(BootError::StartInfo)?;
    let mut p = Platform {
        board: "q35",
        ..Platform::default()
    };
    start_info::cmdline(&mem, &info, &mut p.cmdline).map_err(BootError::StartInfo)?;
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    let dropped =
        start_info::ram(&mem, &info, image_end, &mut p.ram).map_err(BootError::StartInfo)?;
    if dropped != 0 {
        defmt::println!("q35: {=usize} RAM regions beyond capacity ignored", dropped);
    }
    if info.rsdp_paddr == 0 {
        return Err(BootError::NoRsdp);
    }
    let fadt = acpi::discover(&mem, info.rsdp_paddr, &mut p).map_err(BootError::Acpi)?;
    io::init_clock(fadt.pm_timer.ok_or(BootError::NoPmTimer)?);

    // Everything the shared code may touch must be mapped.
    let ends = p
        .ram
        .iter()
        .map(|r| r.end())
        .chain(
            p.windows
                .iter()
                .filter(|w| w.kind != WindowKind::Io)
                .map(|w| w.cpu_base.saturating_add(w.size)),
        )
        .chain(p.iommus.iter().map(|u| u.base.saturating_add(u.size)))
        .chain(p.ecam.iter().map(|e| {
            e.base
                .saturating_add((u64::from(e.bus_end - e.bus_start) + 1) << 20)
        }));
    let need = ends.max().unwrap_or(0);
    let mapped = paging::map_up_to(need);
    if mapped < need {
        defmt::println!(
            "q35: identity map ends at {=u64:#x}, below {=u64:#x}: higher addresses fault",
            mapped,
            need
        );
    }
    Ok(p)
}

/// 64-bit entry from `boot.rs`: `start_info` is the PVH `hvm_start_info`.
#[unsafe(no_mangle)]
extern "C" fn q35_start(start_info: u64) -> ! {
    iommu_board::console::init(io::debugcon_write);
    iommu_board::harness::set_exit(io::exit);
    exceptions::init();
    match discover(start_info) {
        Ok(platform) => iommu_board::board_main(
            platform,
            BoardOps {
                exit: io::exit,
                now_ns: io::now_ns,
                cpu: CpuOps {
                    space: paging::cpu_space,
                    flush_va: paging::flush_va,
                },
            },
        ),
        Err(e) => {
            defmt::println!("q35: firmware discovery failed: {}", e);
            io::exit(EXIT_DISCOVERY)
        }
    }
}
