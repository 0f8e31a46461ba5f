//! Shared virtual addressing: a device translating through a CPU page table.
//!
//! The embedder registers an address space (the CPU page table's root, its
//! format, its ASID) with [`Iommu::register_space`](super::Iommu::register_space);
//! [`Iommu::bind`](super::Iommu::bind) gives a device access to it at the
//! space's one global PASID. The core never maps into or frees the CPU page
//! table: the embedder's memory manager owns it and reports changes through
//! [`Iommu::invalidate_range`](super::Iommu::invalidate_range).

/// The format of a CPU page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuFormat {
    /// x86-64 4-level (`five_level` false) or 5-level paging.
    X86_64 {
        /// LA57 paging.
        five_level: bool,
    },
    /// AArch64 stage 1, as the CPU's translation registers describe it.
    Aarch64 {
        /// TCR_EL1 (the TTBR0 half is what a context descriptor takes).
        tcr: u64,
        /// MAIR_EL1.
        mair: u64,
    },
}

/// A CPU address space a device may share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// Physical address of the page table's root (CR3 / TTBR0 base).
    pub root: u64,
    /// Its format.
    pub format: CpuFormat,
    /// The CPU's ASID / PCID for it (0 if the CPU does not tag).
    pub asid: u32,
}

/// Names a registered address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

/// Names one device's binding to an address space (refcounted: binding the
/// same pair again gives the same bond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BondId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}
