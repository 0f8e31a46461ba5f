//! The `Hal` of the hardware models (VT-d, SMMUv3): pages from the heap,
//! physical address == virtual address, the real clock. It keeps every live
//! allocation, so a model only ever touches memory the driver was given (a
//! table pointer outside it is reported, never dereferenced) and a test can
//! count the pages still live. The models attached to it are stepped from
//! the driver's clock reads and told of every cache clean and free.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use iommu::PhysAddr;
use iommu::hal::Hal;

const PAGE: u64 = 4096;

/// A model unit the Hal serves: stepped whenever the driver reads the
/// clock, told whenever the driver cleans written memory to the walker
/// (`flush_dcache`) or frees pages.
pub trait Attached: Send + Sync {
    /// Step unless someone else is stepping; whether anything happened.
    fn try_step(&self) -> bool;
    /// The driver made its writes to `[addr, addr + len)` visible.
    fn flushed(&self, addr: u64, len: u64) {
        let _ = (addr, len);
    }
    /// Pages at `[addr, addr + len)` went back to the Hal.
    fn freed(&self, addr: u64, len: u64) {
        let _ = (addr, len);
    }
}

struct HalState {
    /// Start address -> page count.
    live: Mutex<BTreeMap<u64, usize>>,
    start: Instant,
    /// Emulators the driver's polling steps (see `now_ns`).
    units: Mutex<Vec<Weak<dyn Attached>>>,
    /// Fail allocations from this attempt on (counted from 1).
    fail_from: AtomicU64,
    attempts: AtomicU64,
    frees: AtomicU32,
}

/// The model's Hal: cheap to clone, every clone is the same memory.
#[derive(Clone)]
pub struct ModelHal(Arc<HalState>);

impl Default for ModelHal {
    fn default() -> Self {
        Self::new()
    }
}

fn layout(count: usize) -> Layout {
    let size = count * PAGE as usize;
    Layout::from_size_align(size, size).unwrap()
}

impl ModelHal {
    pub fn new() -> Self {
        ModelHal(Arc::new(HalState {
            live: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
            units: Mutex::new(Vec::new()),
            fail_from: AtomicU64::new(u64::MAX),
            attempts: AtomicU64::new(0),
            frees: AtomicU32::new(0),
        }))
    }

    fn live(&self) -> MutexGuard<'_, BTreeMap<u64, usize>> {
        self.0.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pages currently allocated.
    pub fn live_pages(&self) -> usize {
        self.live().values().sum()
    }

    /// The live allocations (start, pages).
    pub fn allocations(&self) -> Vec<(u64, usize)> {
        self.live().iter().map(|(a, n)| (*a, *n)).collect()
    }

    /// Whether `[addr, addr + len)` lies inside one live allocation.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let live = self.live();
        match live.range(..=addr).next_back() {
            Some((&start, &pages)) => addr
                .checked_add(len)
                .is_some_and(|end| end <= start + pages as u64 * PAGE),
            None => false,
        }
    }

    /// Fail every allocation from the `n`th attempt on (1-based, counted
    /// from now); `None` to stop failing.
    pub fn fail_after(&self, n: Option<u64>) {
        let base = self.0.attempts.load(Ordering::SeqCst);
        let v = n.map_or(u64::MAX, |n| base + n);
        self.0.fail_from.store(v, Ordering::SeqCst);
    }

    /// Let the driver's polling step this emulator too.
    pub fn attach(&self, unit: Weak<dyn Attached>) {
        self.0
            .units
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(unit);
    }

    /// Read a 64-bit word of live memory (`None` outside it).
    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        if !addr.is_multiple_of(8) || !self.contains(addr, 8) {
            return None;
        }
        // SAFETY: inside a live allocation of this Hal (phys == virt),
        // aligned; the driver writes it with volatile stores, the model reads
        // it atomically.
        Some(unsafe { AtomicU64::from_ptr(addr as *mut u64) }.load(Ordering::SeqCst))
    }

    /// Write a 32-bit word of live memory; false outside it.
    pub fn write_u32(&self, addr: u64, v: u32) -> bool {
        if !addr.is_multiple_of(4) || !self.contains(addr, 4) {
            return false;
        }
        // SAFETY: as in `read_u64`.
        unsafe { AtomicU32::from_ptr(addr as *mut u32) }.store(v, Ordering::SeqCst);
        true
    }

    /// Write a 64-bit word of live memory; false outside it.
    pub fn write_u64(&self, addr: u64, v: u64) -> bool {
        if !addr.is_multiple_of(8) || !self.contains(addr, 8) {
            return false;
        }
        // SAFETY: as in `read_u64`.
        unsafe { AtomicU64::from_ptr(addr as *mut u64) }.store(v, Ordering::SeqCst);
        true
    }

    /// A zeroed page for the test's own use (a guest's table, a buffer).
    pub fn page(&self) -> u64 {
        self.alloc_pages(1).expect("model memory").0
    }

    /// The attached units still alive.
    fn units(&self) -> Vec<std::sync::Arc<dyn Attached>> {
        let units = self.0.units.lock().unwrap_or_else(|e| e.into_inner());
        units.iter().filter_map(Weak::upgrade).collect()
    }

    /// Frees since the Hal was made.
    pub fn frees(&self) -> u32 {
        self.0.frees.load(Ordering::SeqCst)
    }
}

impl Drop for HalState {
    fn drop(&mut self) {
        // The last clone is gone: nothing uses the pages any more (the
        // emulators hold a clone until their threads are joined).
        let live = std::mem::take(self.live.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (addr, count) in live {
            // SAFETY: allocated in `alloc_pages` with this layout.
            unsafe { dealloc(addr as *mut u8, layout(count)) };
        }
    }
}

// SAFETY: every allocation is a fresh zeroed heap block of `count` pages
// aligned to its size, handed out once until freed; physical == virtual.
unsafe impl Hal for ModelHal {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        let n = self.0.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.0.fail_from.load(Ordering::SeqCst) {
            return None;
        }
        assert!(count.is_power_of_two() && count <= 16, "count {count}");
        // SAFETY: non-zero size.
        let p = unsafe { alloc_zeroed(layout(count)) };
        assert!(!p.is_null());
        self.live().insert(p as u64, count);
        Some(PhysAddr(p as u64))
    }

    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        let had = self.live().remove(&phys.0);
        assert_eq!(had, Some(count), "free of {:#x} ({count} pages)", phys.0);
        self.0.frees.fetch_add(1, Ordering::SeqCst);
        for u in self.units() {
            u.freed(phys.0, count as u64 * PAGE);
        }
        // SAFETY: allocated above with this layout (checked).
        unsafe { dealloc(phys.0 as *mut u8, layout(count)) };
    }

    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        phys.0 as *mut u8
    }

    fn now_ns(&self) -> u64 {
        // The driver polls the clock in every wait: step the emulators
        // here too, so a wait progresses even when their threads are not
        // scheduled (the threads still run them on their own).
        for u in self.units() {
            u.try_step();
        }
        self.0.start.elapsed().as_nanos() as u64
    }

    fn flush_dcache(&self, virt: *const u8, len: usize) {
        for u in self.units() {
            u.flushed(virt as u64, len as u64);
        }
    }
}
