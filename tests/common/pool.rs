//! A page pool standing in for physical memory: the test `Hal`.
//!
//! Physical addresses are fake (`base + index * 4 KiB`) and map to one host
//! allocation. The pool counts every allocation and free, can fail the Nth
//! allocation, panics on double frees / frees of pages it never handed out /
//! frees with the wrong size, poisons freed pages (so a walk through a freed
//! table lands on garbage), and keeps a "device view" of memory that only
//! `flush_dcache` updates (so a missing flush of a PTE write is visible).

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// 4 KiB.
pub const PAGE: u64 = 4096;
/// Default fake physical base: 64 KiB aligned, bits above 32 set, below 2^37
/// so it fits every output-address size the tests use.
pub const DEFAULT_BASE: u64 = 0x12_3450_0000;
/// Byte pattern written over freed pages.
pub const POISON: u8 = 0xa5;

/// Counters of a pool, for balance checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Successful `alloc_pages` calls.
    pub allocs: u64,
    /// `free_pages` calls.
    pub frees: u64,
    /// Pages handed out by successful calls.
    pub pages_allocated: u64,
    /// Pages given back.
    pub pages_freed: u64,
    /// `alloc_pages` calls that were refused (injected failure or pool full).
    pub failed: u64,
    /// `flush_dcache` calls.
    pub flushes: u64,
}

impl Counts {
    /// Pages currently allocated.
    pub fn live_pages(&self) -> u64 {
        self.pages_allocated - self.pages_freed
    }
}

struct State {
    /// Allocation start page index -> page count.
    live: BTreeMap<usize, usize>,
    /// Per page: allocated?
    used: Vec<bool>,
    /// Next-fit cursor (page index), so freed pages are not reused at once.
    cursor: usize,
    counts: Counts,
    /// Number of `alloc_pages` attempts so far.
    attempts: u64,
    /// Attempts (1-based, absolute) that must fail.
    fail_at: Vec<u64>,
    /// Fail every attempt from this one on (absolute, 1-based).
    fail_from: Option<u64>,
    /// Every `alloc_pages` count asked for, in order.
    sizes_asked: Vec<usize>,
}

/// The test Hal. `Sync`: all state is behind a mutex, memory is accessed
/// through raw pointers only.
pub struct TestHal {
    base: u64,
    pages: usize,
    mem: *mut u8,
    shadow: *mut u8,
    state: Mutex<State>,
}

// SAFETY: the raw pointers are owned by the pool and only dereferenced for
// byte copies within bounds; bookkeeping is under the mutex. Concurrent use of
// the *same* table page by several threads is the caller's business (the
// engine's contract: one lock per table).
unsafe impl Send for TestHal {}
// SAFETY: see above.
unsafe impl Sync for TestHal {}

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE as usize, 64 * 1024).unwrap()
}

impl TestHal {
    /// A pool of `pages` pages at [`DEFAULT_BASE`].
    pub fn new(pages: usize) -> Self {
        Self::with_base(DEFAULT_BASE, pages)
    }

    /// A pool of `pages` pages whose fake physical addresses start at `base`
    /// (64 KiB aligned).
    pub fn with_base(base: u64, pages: usize) -> Self {
        assert!(pages > 0 && base.is_multiple_of(64 * 1024));
        // SAFETY: non-zero size.
        let mem = unsafe { alloc_zeroed(layout(pages)) };
        // SAFETY: non-zero size.
        let shadow = unsafe { alloc_zeroed(layout(pages)) };
        assert!(!mem.is_null() && !shadow.is_null());
        TestHal {
            base,
            pages,
            mem,
            shadow,
            state: Mutex::new(State {
                live: BTreeMap::new(),
                used: vec![false; pages],
                cursor: 0,
                counts: Counts::default(),
                attempts: 0,
                fail_at: Vec::new(),
                fail_from: None,
                sizes_asked: Vec::new(),
            }),
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not hide the pool from later checks.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// First fake physical address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the last fake physical address.
    pub fn end(&self) -> u64 {
        self.base + self.pages as u64 * PAGE
    }

    fn index(&self, phys: u64) -> Option<usize> {
        if phys < self.base || phys >= self.end() {
            return None;
        }
        Some(((phys - self.base) / PAGE) as usize)
    }

    /// Allocate `count` (power of two, 1..=16) contiguous zeroed pages aligned
    /// to `count` pages. `None` when an injected failure hits or the pool is
    /// full.
    pub fn alloc(&self, count: usize) -> Option<u64> {
        assert!(
            count.is_power_of_two() && count <= 16,
            "alloc_pages({count}): count must be a power of two in 1..=16"
        );
        let mut st = self.st();
        st.attempts += 1;
        st.sizes_asked.push(count);
        let n = st.attempts;
        if st.fail_at.contains(&n) || st.fail_from.is_some_and(|f| n >= f) {
            st.counts.failed += 1;
            return None;
        }
        // Next fit over count-aligned positions.
        let slots = self.pages / count;
        let start_slot = st.cursor.div_ceil(count);
        let mut found = None;
        for k in 0..slots {
            let slot = (start_slot + k) % slots;
            let i = slot * count;
            if st.used[i..i + count].iter().all(|u| !u) {
                found = Some(i);
                break;
            }
        }
        let Some(i) = found else {
            st.counts.failed += 1;
            return None;
        };
        st.used[i..i + count].iter_mut().for_each(|u| *u = true);
        st.live.insert(i, count);
        st.cursor = (i + count) % self.pages;
        st.counts.allocs += 1;
        st.counts.pages_allocated += count as u64;
        let off = i * PAGE as usize;
        let len = count * PAGE as usize;
        // SAFETY: in bounds of both allocations.
        unsafe {
            self.mem.add(off).write_bytes(0, len);
            self.shadow.add(off).write_bytes(0, len);
        }
        Some(self.base + i as u64 * PAGE)
    }

    /// Give back an allocation; panics unless `(phys, count)` is exactly a
    /// live allocation.
    pub fn free(&self, phys: u64, count: usize) {
        let mut st = self.st();
        let Some(i) = self.index(phys).filter(|_| phys.is_multiple_of(PAGE)) else {
            drop(st);
            panic!("free_pages({phys:#x}, {count}): not a page of this pool");
        };
        match st.live.get(&i).copied() {
            Some(c) if c == count => {}
            Some(c) => {
                drop(st);
                panic!("free_pages({phys:#x}, {count}): allocated with count {c}");
            }
            None => {
                drop(st);
                panic!("free_pages({phys:#x}, {count}): double free or never allocated");
            }
        }
        st.live.remove(&i);
        st.used[i..i + count].iter_mut().for_each(|u| *u = false);
        st.counts.frees += 1;
        st.counts.pages_freed += count as u64;
        let off = i * PAGE as usize;
        let len = count * PAGE as usize;
        // SAFETY: in bounds of both allocations.
        unsafe {
            self.mem.add(off).write_bytes(POISON, len);
            self.shadow.add(off).write_bytes(POISON, len);
        }
    }

    /// Host pointer for a fake physical address of the pool (panics outside).
    pub fn virt(&self, phys: u64) -> *mut u8 {
        let Some(_) = self.index(phys) else {
            panic!("phys_to_virt({phys:#x}): outside the pool");
        };
        // SAFETY: in bounds.
        unsafe { self.mem.add((phys - self.base) as usize) }
    }

    /// Record a cache clean: copy `[virt, virt+len)` into the device view.
    pub fn flush(&self, virt: *const u8, len: usize) {
        let off = (virt as usize).wrapping_sub(self.mem as usize);
        assert!(
            off < self.pages * PAGE as usize && off + len <= self.pages * PAGE as usize,
            "flush_dcache({virt:p}, {len:#x}): outside the pool"
        );
        let mut st = self.st();
        st.counts.flushes += 1;
        // SAFETY: in bounds (checked); copies between distinct allocations.
        unsafe { core::ptr::copy_nonoverlapping(self.mem.add(off), self.shadow.add(off), len) };
        drop(st);
    }

    /// Counters so far.
    pub fn counts(&self) -> Counts {
        self.st().counts
    }

    /// Number of `alloc_pages` attempts so far (failed ones included).
    pub fn attempts(&self) -> u64 {
        self.st().attempts
    }

    /// Every `count` asked of `alloc_pages`, in order.
    pub fn sizes_asked(&self) -> Vec<usize> {
        self.st().sizes_asked.clone()
    }

    /// Make the `n`th allocation attempt from now (1-based) fail, once.
    pub fn fail_nth(&self, n: u64) {
        assert!(n >= 1);
        let mut st = self.st();
        let at = st.attempts + n;
        st.fail_at.push(at);
    }

    /// Make every allocation attempt from the `n`th from now on fail.
    pub fn fail_from_nth(&self, n: u64) {
        assert!(n >= 1);
        let mut st = self.st();
        st.fail_from = Some(st.attempts + n);
    }

    /// Forget injected failures.
    pub fn clear_failures(&self) {
        let mut st = self.st();
        st.fail_at.clear();
        st.fail_from = None;
    }

    /// Live allocations: (phys, count), by address.
    pub fn live(&self) -> Vec<(u64, usize)> {
        self.st()
            .live
            .iter()
            .map(|(&i, &c)| (self.base + i as u64 * PAGE, c))
            .collect()
    }

    /// Is `phys` (any address) inside a live allocation?
    pub fn is_live(&self, phys: u64) -> bool {
        let Some(i) = self.index(phys) else {
            return false;
        };
        self.st().used[i]
    }

    /// Read a little-endian u64 at a fake physical address (8-aligned), as the
    /// CPU sees it.
    pub fn read_u64(&self, phys: u64) -> u64 {
        assert!(phys.is_multiple_of(8), "unaligned read {phys:#x}");
        // SAFETY: in bounds (virt panics otherwise) and aligned. Atomic, as a
        // hardware walker's 64-bit reads are single-copy atomic and the engine
        // may be writing concurrently (concurrency test).
        unsafe { AtomicU64::from_ptr(self.virt(phys) as *mut u64) }.load(Ordering::Relaxed)
    }

    /// Read a u64 as the (non-coherent) device sees it: last flushed value.
    pub fn read_u64_device(&self, phys: u64) -> u64 {
        assert!(phys.is_multiple_of(8), "unaligned read {phys:#x}");
        let _ = self.virt(phys);
        // SAFETY: in bounds and aligned.
        unsafe { (self.shadow.add((phys - self.base) as usize) as *const u64).read_volatile() }
    }

    /// Write a u64 (for hand-built tables in walker self-tests), and flush it.
    pub fn write_u64(&self, phys: u64, value: u64) {
        assert!(phys.is_multiple_of(8), "unaligned write {phys:#x}");
        // SAFETY: in bounds and aligned.
        unsafe { (self.virt(phys) as *mut u64).write_volatile(value) };
        self.flush(self.virt(phys), 8);
    }

    /// The 512 entries of the page at `phys`, as the CPU sees them.
    pub fn page_words(&self, phys: u64) -> Vec<u64> {
        let phys = phys & !(PAGE - 1);
        (0..512).map(|i| self.read_u64(phys + i * 8)).collect()
    }

    /// Snapshot of every live allocation's words, by address.
    pub fn snapshot(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut out = BTreeMap::new();
        for (phys, count) in self.live() {
            let mut words = vec![0u64; count * 512];
            // SAFETY: a live allocation inside the pool; the destination is a
            // distinct host buffer of the same size.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.virt(phys) as *const u64,
                    words.as_mut_ptr(),
                    count * 512,
                )
            };
            out.insert(phys, words);
        }
        out
    }

    /// Entries (page, index) whose CPU view differs from the device view,
    /// among the given pages.
    pub fn unflushed(&self, pages: impl IntoIterator<Item = u64>) -> Vec<(u64, usize)> {
        let mut bad = Vec::new();
        for page in pages {
            let off = (page - self.base) as usize;
            assert!(page.is_multiple_of(PAGE) && off < self.pages * PAGE as usize);
            // SAFETY: a page inside both buffers, 8-byte aligned.
            let (cpu, dev) = unsafe {
                (
                    core::slice::from_raw_parts(self.mem.add(off) as *const u64, 512),
                    core::slice::from_raw_parts(self.shadow.add(off) as *const u64, 512),
                )
            };
            if cpu != dev {
                bad.extend((0..512).filter(|&i| cpu[i] != dev[i]).map(|i| (page, i)));
            }
        }
        bad
    }
}

impl Drop for TestHal {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_base` with this layout.
        unsafe {
            dealloc(self.mem, layout(self.pages));
            dealloc(self.shadow, layout(self.pages));
        }
    }
}

/// Memory as the reference walkers see it: read-only and checked.
pub trait PhysMem {
    /// Read the u64 at `phys`.
    fn read(&self, phys: u64) -> u64;
    /// Is the table page at `phys` a live allocation of the pool?
    fn is_table_page(&self, phys: u64) -> bool;
}

impl PhysMem for TestHal {
    fn read(&self, phys: u64) -> u64 {
        self.read_u64(phys)
    }
    fn is_table_page(&self, phys: u64) -> bool {
        self.is_live(phys)
    }
}

/// The device's (flushed) view of the pool.
pub struct DeviceView<'a>(pub &'a TestHal);

impl PhysMem for DeviceView<'_> {
    fn read(&self, phys: u64) -> u64 {
        self.0.read_u64_device(phys)
    }
    fn is_table_page(&self, phys: u64) -> bool {
        self.0.is_live(phys)
    }
}
