//! Extending the boot identity map above 4 GiB.
//!
//! The boot code maps 0..4 GiB with 2 MiB pages through `boot_pdpt[0..4]`.
//! RAM above 4 GiB (`-m 3G` and up) and the 64-bit PCI window lie higher, so
//! once discovery knows how far they reach, [`map_up_to`] adds page
//! directories from a static pool, still with 2 MiB pages (1 GiB pages are
//! not assumed), up to [`MAP_LIMIT`].

use core::ptr::addr_of_mut;

use x86_64::registers::control::Cr3;

/// Bytes mapped by one page directory (512 × 2 MiB).
const PD_SPAN: u64 = 1 << 30;
/// Gigabytes mapped by the boot code.
const BOOT_GIB: usize = 4;
/// Highest address the identity map can reach.
pub const MAP_LIMIT: u64 = 64 << 30;
/// Page directories in the pool.
const EXTRA: usize = (MAP_LIMIT / PD_SPAN) as usize - BOOT_GIB;

/// Present | writable | 2 MiB page.
const PDE_LARGE: u64 = 0x83;
/// Present | writable.
const PDPTE_TABLE: u64 = 0x03;

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// Page-directory pool (in `.bss`, zeroed by the boot code).
static mut EXTRA_PDS: [Table; EXTRA] = [const { Table([0; 512]) }; EXTRA];

unsafe extern "C" {
    /// The boot PDPT (see `boot.rs`).
    static mut boot_pdpt: [u64; 512];
}

/// Identity-map `[0, end)`, rounded up to 1 GiB and capped at [`MAP_LIMIT`];
/// returns the end of the identity map afterwards.
pub fn map_up_to(end: u64) -> u64 {
    let gib = end.min(MAP_LIMIT).div_ceil(PD_SPAN) as usize;
    if gib <= BOOT_GIB {
        return BOOT_GIB as u64 * PD_SPAN;
    }
    // SAFETY: single-core, interrupts off, called once from early boot before
    // anything else touches the page tables. The boot PDPT entries 4.. are
    // zero (not present), so filling a directory before linking it changes no
    // live translation; the CR3 reload below flushes the paging-structure
    // caches. Identity mapping makes the pool's virtual address its physical one.
    unsafe {
        let pdpt = addr_of_mut!(boot_pdpt);
        let pool = addr_of_mut!(EXTRA_PDS);
        for i in BOOT_GIB..gib {
            if (*pdpt)[i] != 0 {
                continue;
            }
            let pd = &mut (*pool)[i - BOOT_GIB];
            for (j, e) in pd.0.iter_mut().enumerate() {
                *e = (i as u64 * PD_SPAN + ((j as u64) << 21)) | PDE_LARGE;
            }
            (*pdpt)[i] = (pd as *mut Table as u64) | PDPTE_TABLE;
        }
        let (frame, flags) = Cr3::read();
        Cr3::write(frame, flags);
    }
    gib as u64 * PD_SPAN
}

/// The CPU's page-table root (CR3) and format, for SVA; no PCID (ASID 0).
pub fn cpu_space() -> (u64, iommu::core::CpuFormat, u32) {
    let (frame, _) = Cr3::read();
    (
        frame.start_address().as_u64(),
        iommu::core::CpuFormat::X86_64 { five_level: false },
        0,
    )
}

/// Drop the CPU's translation of the page at `va`.
pub fn flush_va(va: u64) {
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(va));
}
