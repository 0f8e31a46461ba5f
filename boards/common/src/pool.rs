//! A static pool of physical pages: what the drivers' tables and queues,
//! and the suites' DMA buffers, are allocated from.
//!
//! Both boards identity-map RAM, so a page's address in the image is its
//! physical address. Allocations are runs of 1, 2, 4, 8 or 16 pages aligned
//! to their size (the `Hal` contract), tracked in a bitmap; a run never
//! crosses a bitmap word.

use core::cell::UnsafeCell;

use iommu::PhysAddr;
use iommu::hal::{Hal, PAGE_SIZE};

/// Pages in the pool (8 MiB).
pub const PAGES: usize = 2048;

/// Aligned to the largest run (16 pages): a run's address is then
/// aligned to its size, as the `Hal` contract requires.
#[repr(C, align(65536))]
struct Memory(UnsafeCell<[u8; PAGES * PAGE_SIZE as usize]>);

// SAFETY: every byte is reached only through allocations the bitmap hands
// out to one owner at a time.
unsafe impl Sync for Memory {}

static MEMORY: Memory = Memory(UnsafeCell::new([0; PAGES * PAGE_SIZE as usize]));
static USED: spin::Mutex<[u64; PAGES / 64]> = spin::Mutex::new([0; PAGES / 64]);

fn base() -> u64 {
    MEMORY.0.get() as u64
}

/// Pages currently allocated.
pub fn pages_in_use() -> u32 {
    USED.lock().iter().map(|w| w.count_ones()).sum()
}

/// The pool's physical range: (first byte, length).
pub fn span() -> (u64, u64) {
    (base(), PAGES as u64 * PAGE_SIZE)
}

/// Whether `phys` lies in the pool.
pub fn contains(phys: u64) -> bool {
    phys >= base() && phys < base() + PAGES as u64 * PAGE_SIZE
}

/// The pool as the drivers see it, with the board's clock.
#[derive(Clone, Copy)]
pub struct PoolHal {
    /// Monotonic nanoseconds.
    pub now: fn() -> u64,
}

// SAFETY: each allocation is a run of pool pages that no one else holds
// until it is freed (tracked in `USED`), zeroed before it is handed out;
// physical = virtual (the boards identity-map RAM), so `phys_to_virt`
// reaches the bytes the IOMMU reads. The walkers are coherent on both QEMU
// machines (VT-d ECAP.C, SMMU IDR0.COHACC), and the CPU writes are ordered
// before each doorbell by the drivers' fences.
unsafe impl Hal for PoolHal {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        if !count.is_power_of_two() || count > 16 {
            return None;
        }
        let run = (1u64 << count) - 1;
        let mut used = USED.lock();
        let (w, bit) = used.iter().enumerate().find_map(|(w, word)| {
            (0..64)
                .step_by(count)
                .find(|&b| word & (run << b) == 0)
                .map(|b| (w, b))
        })?;
        used[w] |= run << bit;
        let page = base() + ((w * 64 + bit) as u64) * PAGE_SIZE;
        // SAFETY: the run lies in `MEMORY` and is now ours alone.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, count * PAGE_SIZE as usize) };
        Some(PhysAddr(page))
    }

    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        if !contains(phys.get()) || count == 0 || count > 16 {
            return;
        }
        let first = ((phys.get() - base()) / PAGE_SIZE) as usize;
        let run = (1u64 << count) - 1;
        USED.lock()[first / 64] &= !(run << (first % 64));
    }

    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        phys.get() as *mut u8
    }

    fn now_ns(&self) -> u64 {
        (self.now)()
    }
}

/// One page of the pool, given back when dropped: a DMA buffer.
pub struct Page {
    phys: u64,
    hal: PoolHal,
}

impl Page {
    /// A zeroed page, `None` when the pool is empty.
    pub fn new(hal: PoolHal) -> Option<Page> {
        hal.alloc_pages(1).map(|p| Page { phys: p.get(), hal })
    }

    /// Its physical (= bus, untranslated) address.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Byte `i` (below 4096).
    pub fn get(&self, i: usize) -> u8 {
        // SAFETY: `i` is inside the page, which this value owns.
        unsafe { core::ptr::read_volatile((self.phys as *const u8).add(i % PAGE_SIZE as usize)) }
    }

    /// Fill the page with a pattern derived from `seed`.
    pub fn fill(&self, seed: u32) {
        for i in 0..PAGE_SIZE as usize {
            // SAFETY: as in `get`.
            unsafe { core::ptr::write_volatile((self.phys as *mut u8).add(i), pattern(seed, i)) };
        }
    }

    /// The first offset in `[0, len)` whose byte is not `pattern(seed, i +
    /// shift)`.
    pub fn mismatch(&self, seed: u32, shift: usize, len: usize) -> Option<usize> {
        (0..len).find(|&i| self.get(i) != pattern(seed, i + shift))
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`; the suites give a buffer back only
        // when no device is using it.
        unsafe { self.hal.free_pages(PhysAddr(self.phys), 1) };
    }
}

/// The byte at offset `i` of the pattern `seed`.
pub fn pattern(seed: u32, i: usize) -> u8 {
    let x = seed
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(i as u32 * 0x85eb_ca6b);
    (x >> 24) as u8 ^ (i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_aligned_to_their_size_and_given_back() {
        let hal = PoolHal { now: || 0 };
        let before = pages_in_use();
        let mut got = heapless::Vec::<(PhysAddr, usize), 16>::new();
        for count in [1, 16, 2, 8, 4, 16] {
            let p = hal.alloc_pages(count).expect("room");
            assert_eq!(
                p.get() % (count as u64 * PAGE_SIZE),
                0,
                "{count} pages aligned"
            );
            got.push((p, count)).unwrap();
        }
        assert!(hal.alloc_pages(3).is_none(), "not a power of two");
        assert!(hal.alloc_pages(32).is_none(), "more than 16");
        for (p, count) in got {
            // SAFETY: allocated above, unused.
            unsafe { hal.free_pages(p, count) };
        }
        assert_eq!(pages_in_use(), before);
    }
}
