//! Shared helpers of the page-table host tests: a page pool that plays the
//! `Hal`, a model of the address space, and reference walkers written from
//! the specifications (independent of `src/pgtable`).

#![allow(dead_code)]

pub mod harness;
pub mod mock;
pub mod model;
pub mod pool;
pub mod walk;

use iommu::PhysAddr;
use iommu::hal::Hal;

pub use pool::TestHal;

// SAFETY: the pool hands out distinct zeroed pages of its own buffer once
// until freed, and `phys_to_virt` points into them.
unsafe impl Hal for TestHal {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        self.alloc(count).map(PhysAddr)
    }
    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        self.free(phys.0, count)
    }
    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        self.virt(phys.0)
    }
    fn now_ns(&self) -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }
    fn flush_dcache(&self, virt: *const u8, len: usize) {
        self.flush(virt, len)
    }
}
