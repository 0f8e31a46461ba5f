//! Board support shared by the QEMU boards (`boards/q35`, `boards/virt`).
//!
//! A board boots the CPU, installs a console sink, reads its firmware tables
//! into a [`platform::Platform`], and hands over to [`board_main`], which
//! enumerates PCI, assigns BARs, prints what it found and runs the on-target
//! test suites through the [`harness`].
//!
//! The parsers (`acpi`, `fdt`) are plain `no_std` code over byte slices and
//! are tested on the host.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
// A test's failure carries its message inline (no allocator to box it); it is
// returned once per test, so the size of the `Err` variant costs nothing.
#![allow(clippy::result_large_err)]

pub mod acpi;
pub mod bench;
pub mod cmdline;
pub mod console;
pub mod cpu_window;
pub mod dma_env;
pub mod edu;
pub mod edu_suite;
pub mod embedding;
pub mod fdt;
pub mod harness;
pub mod iopf;
pub mod isolation;
pub mod pci;
pub mod platform;
pub mod pool;
pub mod smmu_dma;
pub mod smmu_env;
pub mod smmu_isolation;
pub mod smmu_nested;
pub mod smmu_walk;
pub mod suites;
pub mod sva;
pub mod tour;
pub mod vtd_dma;
pub mod vtd_env;
pub mod vtd_isolation;
pub mod vtd_walk;

/// What the board provides to the shared code besides the [`platform::Platform`].
#[derive(Clone, Copy)]
pub struct BoardOps {
    /// Leave the machine with an exit code the host sees as QEMU's exit status
    /// (0 = all tests passed).
    pub exit: fn(code: u8) -> !,
    /// Monotonic time in nanoseconds since an arbitrary origin.
    pub now_ns: fn() -> u64,
    /// The CPU's own translation, shared with devices by SVA.
    pub cpu: CpuOps,
}

/// The CPU's own translation: its page-table root and format, and the TLB
/// maintenance after a change.
#[derive(Clone, Copy)]
pub struct CpuOps {
    /// Physical address of the page-table root the CPU translates through
    /// (CR3, TTBR0_EL1), its format, and the ASID the CPU tags it with (0
    /// where it does not tag: no PCID on q35).
    pub space: fn() -> (u64, iommu::core::CpuFormat, u32),
    /// Drop what the CPU cached of the page at a virtual address.
    pub flush_va: fn(u64),
}

/// Shared main: discovery report, PCI bring-up and the test suites. Never returns.
pub fn board_main(platform: platform::Platform, ops: BoardOps) -> ! {
    harness::main(platform, ops)
}
