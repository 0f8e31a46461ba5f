//! Shared helpers of the page-table host tests: a page pool that plays the
//! `Hal`, a model of the address space, and reference walkers written from
//! the specifications (independent of `src/pgtable`).

#![allow(dead_code)]

pub mod harness;
pub mod mock;
pub mod model;
pub mod pool;
pub mod walk;

use iommu::hal::Hal;

pub use pool::TestHal;

impl Hal for TestHal {
    fn alloc_pages(&self, count: usize) -> Option<u64> {
        self.alloc(count)
    }
    unsafe fn free_pages(&self, phys: u64, count: usize) {
        self.free(phys, count)
    }
    fn phys_to_virt(&self, phys: u64) -> *mut u8 {
        self.virt(phys)
    }
    fn flush_dcache(&self, virt: *const u8, len: usize) {
        self.flush(virt, len)
    }
}
