//! What the crate needs from its embedder: memory for tables and queues, the
//! way to reach it, and cache maintenance for non-coherent walkers.

use crate::addr::PhysAddr;

/// Size of the pages the crate allocates.
pub const PAGE_SIZE: u64 = 4096;

/// Services the embedder provides.
///
/// Physical addresses are what the IOMMU walks; `phys_to_virt` is how the CPU
/// reaches the same memory. The crate never assumes they are equal.
///
/// # Safety
///
/// The crate writes table entries through the pointers this trait gives it,
/// and frees pages it was given, trusting the implementation. An
/// implementation must guarantee:
///
/// - `alloc_pages(count)` returns the physical address of `count`
///   contiguous 4 KiB pages, aligned to `count * 4 KiB`, zeroed, that nothing
///   else (no Rust reference, no other allocation, no device) uses until they
///   are given back with `free_pages`;
/// - for every address inside such a live allocation, `phys_to_virt` returns
///   a non-null pointer, valid for reads and writes of the rest of that page
///   and aligned like it, to the same memory the IOMMU reads at that physical
///   address, for as long as the allocation lives;
/// - `flush_dcache` makes the CPU's writes to the range visible to the
///   IOMMU's table walker (or does nothing when the walker is coherent).
pub unsafe trait Hal {
    /// Allocate `count` physically contiguous, zeroed 4 KiB pages aligned to
    /// `count * 4 KiB` (`count` is a power of two, at most 16). `None` when out
    /// of memory. The zeroes must be visible to the IOMMU's table walker
    /// (written back from the CPU caches if the walker is not coherent).
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr>;

    /// Give pages back.
    ///
    /// # Safety
    /// `(phys, count)` came from [`Hal::alloc_pages`] and neither the CPU nor
    /// any IOMMU uses them any more.
    unsafe fn free_pages(&self, phys: PhysAddr, count: usize);

    /// The CPU's address for physical memory the crate allocated.
    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8;

    /// Monotonic time in nanoseconds, from any origin: what the drivers time
    /// their hardware waits against (a queue's completion, a register's
    /// acknowledgement). It must keep advancing, or a wait for a stuck unit
    /// never ends.
    fn now_ns(&self) -> u64;

    /// Make CPU writes to `[virt, virt + len)` visible to a non-coherent table
    /// walker (clean the data cache to the point of coherency). Called after
    /// every batch of table-entry writes. The default does nothing, which is
    /// right for coherent walkers (VT-d ECAP.C = 1, SMMU IDR0.COHACC = 1).
    fn flush_dcache(&self, virt: *const u8, len: usize) {
        let _ = (virt, len);
    }
}

// SAFETY: forwards every call to `T`, which keeps the promises.
unsafe impl<T: Hal + ?Sized> Hal for &T {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        (**self).alloc_pages(count)
    }
    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { (**self).free_pages(phys, count) }
    }
    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        (**self).phys_to_virt(phys)
    }
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
    fn flush_dcache(&self, virt: *const u8, len: usize) {
        (**self).flush_dcache(virt, len)
    }
}
