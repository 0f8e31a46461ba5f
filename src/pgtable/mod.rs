//! One page-table engine, four hardware formats.
//!
//! [`PageTable`] walks and edits radix tables of 512-entry, 4 KiB pages; a
//! [`Format`] describes one hardware's entries as data (levels, which levels
//! may hold leaves, how a table/leaf entry is encoded and decoded). Formats:
//! [`VtdSl`] (VT-d second level), [`X86_64`] (x86-64 paging, also VT-d first
//! level and the CPU's own tables), [`ArmS1`] and [`ArmS2`] (VMSAv8-64 stage 1
//! and stage 2, 4 KiB granule).
//!
//! # Levels
//! Level 0 holds 4 KiB leaves, level 1 2 MiB, level 2 1 GiB, and so on; the
//! root is level `levels() - 1`. (Arm numbers the other way: Arm level = 3 -
//! ours.)
//!
//! # Semantics
//! - `map` uses the largest leaf that the alignment of `iova` and `paddr`, the
//!   remaining length and the format allow. It refuses (typed error) a range
//!   that overlaps anything mapped, and leaves the table bit-for-bit as it was
//!   on any error, including out-of-memory: it first walks the range read-only
//!   (checking for overlap and counting the table pages it will need), reserves
//!   those pages, and only then writes.
//! - `unmap` refuses a range that is not entirely mapped or that would cut a
//!   block (2 MiB / 1 GiB leaf) in two: blocks are never split (as in Linux).
//!   Tables it empties are unlinked and handed to the caller's [`Gather`],
//!   never freed while the IOMMU may still walk them: the caller invalidates
//!   the IOTLB for [`Gather::range`], then calls [`Gather::release`].
//!
//! # Concurrency
//! `map` and `unmap` take `&mut self`: the caller serialises them (one lock per
//! table, e.g. per domain). `iova_to_phys` / `translate` take `&self`.
//! Hardware may walk the table at any time: every entry is written with a
//! single 64-bit store, a new table is linked only after it is zeroed, and a
//! leaf or table entry is never changed from one valid value to another,
//! except in the bits hardware ignores in table entries, where the engine
//! keeps each table's count of valid entries ([`Format::count_shift`]).

mod arm;
mod vtd_sl;
mod x86_64;

pub use arm::{ArmS1, ArmS2, MairIndices};
pub use vtd_sl::VtdSl;
pub use x86_64::X86_64;

use core::sync::atomic::{AtomicU64, Ordering, fence};

use crate::addr::{Iova, PhysAddr};
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};

bitflags::bitflags! {
    /// Access permissions and memory type of a mapping.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        /// Reads allowed.
        const READ = 1 << 0;
        /// Writes allowed.
        const WRITE = 1 << 1;
        /// Instruction fetches allowed.
        const EXEC = 1 << 2;
        /// Only privileged (supervisor / EL1) accesses allowed.
        const PRIV = 1 << 3;
        /// Normal write-back cacheable memory, coherent with the CPU (without
        /// it: normal non-cacheable).
        const CACHE = 1 << 4;
        /// Device memory (takes precedence over `CACHE`).
        const MMIO = 1 << 5;
        /// Global mapping (x86 G, Arm nG = 0); the default is non-global.
        const GLOBAL = 1 << 6;
    }
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    /// Not present.
    Invalid,
    /// Points to the next-level table at this physical address.
    Table(u64),
    /// Maps memory at this physical address (the start of the leaf).
    Leaf(u64),
}

/// A hardware page-table format, as data.
///
/// Methods are small and `#[inline]`: the engine is monomorphised per format.
pub trait Format {
    /// Number of levels walked; the root is level `levels() - 1`.
    fn levels(&self) -> u32;
    /// Index bits the root resolves: 9 for a one-page root, more when root
    /// tables are concatenated (Arm stage 2), fewer when the input range does
    /// not fill the root.
    fn root_bits(&self) -> u32;
    /// Output (physical) address bits.
    fn oas(&self) -> u32;
    /// Whether a leaf may sit at `level` (level 0 always may).
    fn leaf_at(&self, level: u32) -> bool;
    /// Every bit of a leaf entry at `level` except the output address.
    fn leaf_bits(&self, level: u32, prot: Prot) -> u64;
    /// Every bit of a table entry at `level` except the next table's address.
    fn table_bits(&self, level: u32) -> u64;
    /// Bit position of a 10-bit field that hardware ignores in table entries.
    /// The engine keeps there the number of valid entries in the table the
    /// entry points to, so it knows in O(1) when an unmap empties a table.
    fn count_shift(&self) -> u32;
    /// Decode an entry found at `level`.
    fn decode(&self, pte: u64, level: u32) -> Pte;
    /// Permissions and type of a leaf entry at `level`.
    fn leaf_prot(&self, pte: u64, level: u32) -> Prot;
    /// Whether `pte` is a leaf at `level`: the same answer as
    /// `matches!(decode(pte, level), Pte::Leaf(_))`, as plain bit tests so
    /// scans over many entries vectorise.
    #[inline]
    fn is_leaf(&self, pte: u64, level: u32) -> bool {
        matches!(self.decode(pte, level), Pte::Leaf(_))
    }

    /// Input address bits.
    #[inline]
    fn ias(&self) -> u32 {
        12 + 9 * (self.levels() - 1) + self.root_bits()
    }
    /// First input address past the range the format translates (the
    /// default is `1 << ias()`; x86-64 keeps to the lower, canonical half).
    #[inline]
    fn input_limit(&self) -> u64 {
        1u64 << self.ias()
    }
    /// Pages the root occupies (concatenated root tables).
    #[inline]
    fn root_pages(&self) -> usize {
        1 << self.root_bits().saturating_sub(9)
    }
    /// Mask of the output-address bits of an entry.
    #[inline]
    fn addr_mask(&self) -> u64 {
        ((1u64 << self.oas()) - 1) & !(PAGE_SIZE - 1)
    }
}

/// The result of a software walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the input address.
    pub phys: PhysAddr,
    /// Size of the leaf that maps it.
    pub size: u64,
    /// Its permissions and memory type.
    pub prot: Prot,
}

#[inline]
fn shift(level: u32) -> u32 {
    12 + 9 * level
}

#[inline]
fn level_size(level: u32) -> u64 {
    1u64 << shift(level)
}

/// Table pages unlinked by `unmap` and the address range whose translations
/// the IOTLB may still hold.
///
/// Freed pages are chained through their entry 0 (a 4 KiB-aligned physical
/// address: never a valid entry in any format, so a walker following a stale
/// pointer still sees only non-present entries) until [`Gather::release`].
#[derive(Debug)]
#[must_use = "gathered table pages are freed only by a sync (`Iommu::sync`) or `Gather::release` after the IOTLB invalidation"]
pub struct Gather {
    start: u64,
    end: u64,
    pgsize: u64,
    head: u64,
    freed: usize,
}

impl Default for Gather {
    fn default() -> Self {
        Gather::new()
    }
}

impl Gather {
    /// An empty gather.
    pub const fn new() -> Self {
        Gather {
            start: u64::MAX,
            end: 0,
            pgsize: 0,
            head: 0,
            freed: 0,
        }
    }

    /// Range to invalidate, `[start, end)`, covering every unmap gathered
    /// (their union's bounds: may include addresses in between).
    pub fn range(&self) -> Option<(u64, u64)> {
        (self.end > self.start).then_some((self.start, self.end))
    }

    /// Smallest leaf size unmapped (0 if nothing was).
    pub fn page_size(&self) -> u64 {
        self.pgsize
    }

    /// Table pages waiting for [`Gather::release`].
    pub fn freed_pages(&self) -> usize {
        self.freed
    }

    /// Whether the unmap freed table pages (then paging-structure caches must
    /// be invalidated too, not only leaf entries).
    pub fn has_freed_tables(&self) -> bool {
        self.freed != 0
    }

    fn add_range(&mut self, start: u64, end: u64, leaf: u64) {
        self.start = self.start.min(start);
        self.end = self.end.max(end);
        self.pgsize = if self.pgsize == 0 {
            leaf
        } else {
            self.pgsize.min(leaf)
        };
    }

    fn push_page<H: Hal>(&mut self, hal: &H, phys: u64) {
        store(entry_ptr(hal, phys, 0), self.head);
        self.head = phys;
        self.freed += 1;
    }

    /// Free every gathered table page. Call only after the IOTLB (and
    /// paging-structure caches) of every IOMMU using the table were
    /// invalidated for [`Gather::range`].
    pub fn release<H: Hal>(&mut self, hal: &H) {
        while self.head != 0 {
            let page = self.head;
            self.head = load(entry_ptr(hal, page, 0));
            // The link stays behind: `alloc_pages` hands out zeroed pages.
            // SAFETY: the page was allocated by a PageTable through this Hal,
            // unlinked from its table by unmap, and the caller has invalidated
            // the IOMMU caches that could still reference it.
            unsafe { hal.free_pages(PhysAddr(page), 1) };
        }
        *self = Gather::new();
    }
}

#[inline]
fn entry_ptr<H: Hal>(hal: &H, table: u64, index: usize) -> *mut u64 {
    // The table is a page the Hal gave us; `index` is below its entry count.
    (hal.phys_to_virt(PhysAddr(table)) as *mut u64).wrapping_add(index)
}

#[inline]
fn load(p: *mut u64) -> u64 {
    // SAFETY: `p` points into a live, 8-byte aligned table page owned by the
    // PageTable (see `entry_ptr`); hardware only reads it.
    unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Relaxed)
}

#[inline]
fn store(p: *mut u64, v: u64) {
    // SAFETY: as in `load`; a single-copy-atomic 64-bit store, so a concurrent
    // hardware walk sees the old or the new entry, never a torn one.
    unsafe { AtomicU64::from_ptr(p) }.store(v, Ordering::Relaxed)
}

/// The embedder's allocator gave a table page that entries cannot address.
fn table_above_oas(phys: u64) -> Error {
    Error::OutOfRange {
        what: "table page above the format's output address size",
        value: phys,
    }
}

/// Most levels any format walks (x86-64 and VT-d 5-level).
const MAX_LEVELS: usize = 5;

/// Width of the valid-entry count kept in table entries (up to 512).
const COUNT_MASK: u64 = 0x3ff;

/// Pages reserved for one map call, chained through entry 0 like [`Gather`].
struct Reserve {
    head: u64,
}

/// An I/O (or CPU) page table in one hardware format.
pub struct PageTable<F: Format, H: Hal> {
    format: F,
    hal: H,
    root: u64,
}

impl<F: Format, H: Hal> PageTable<F, H> {
    /// Allocate an empty table (the root page or pages).
    pub fn new(format: F, hal: H) -> Result<Self, Error> {
        let root = hal
            .alloc_pages(format.root_pages())
            .ok_or(Error::NoMemory)?
            .0;
        let end = root + format.root_pages() as u64 * PAGE_SIZE;
        if end > 1u64 << format.oas() {
            // SAFETY: just allocated, never handed to hardware.
            unsafe { hal.free_pages(PhysAddr(root), format.root_pages()) };
            return Err(table_above_oas(root));
        }
        Ok(PageTable { format, hal, root })
    }

    /// Physical address of the root (what the hardware's table pointer takes).
    pub fn root_phys(&self) -> PhysAddr {
        PhysAddr(self.root)
    }

    /// The format.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// The embedder services.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    #[inline]
    fn root_level(&self) -> u32 {
        self.format.levels() - 1
    }

    #[inline]
    fn entries(&self, level: u32) -> usize {
        if level == self.root_level() {
            1 << self.format.root_bits()
        } else {
            512
        }
    }

    #[inline]
    fn index(&self, iova: u64, level: u32) -> usize {
        ((iova >> shift(level)) as usize) & (self.entries(level) - 1)
    }

    /// Valid entries of the table that the table entry `pte` points to.
    #[inline]
    fn count_of(&self, pte: u64) -> u64 {
        (pte >> self.format.count_shift()) & COUNT_MASK
    }

    /// `pte` (a table entry) with its count field set to `count`.
    #[inline]
    fn with_count(&self, pte: u64, count: u64) -> u64 {
        debug_assert!(count <= 512, "table entry count out of range");
        let sh = self.format.count_shift();
        (pte & !(COUNT_MASK << sh)) | (count << sh)
    }

    /// Add `added` to the count kept in the table entry at `slot` (the parent's
    /// entry for a table; `None` for the root, whose count is not kept). Only
    /// ignored bits change: a concurrent walk sees the same table pointer.
    #[inline]
    fn add_count(&self, slot: Option<*mut u64>, added: u64) {
        if let (Some(slot), true) = (slot, added != 0) {
            let pte = load(slot);
            store(slot, self.with_count(pte, self.count_of(pte) + added));
            self.flush(slot, 1);
        }
    }

    /// Whether entries `idx..idx + n` of `table` are all leaves at `level`.
    /// A branch-free fold over a plain slice, so the compiler can vectorise
    /// it; callers fall back to an entry-by-entry walk when it says no.
    #[inline]
    fn all_leaves(&self, table: u64, level: u32, idx: usize, n: usize) -> bool {
        let p = entry_ptr(&self.hal, table, idx) as *const u64;
        // SAFETY: `idx + n <= entries(level)` in every caller, inside a live
        // table page owned by this PageTable. Only this code writes it (callers
        // hold `&mut self`), and walkers never write tables we own: accessed
        // and dirty bits are preset and hardware updates are not enabled.
        let entries = unsafe { core::slice::from_raw_parts(p, n) };
        entries
            .iter()
            .fold(true, |ok, &e| ok & self.format.is_leaf(e, level))
    }

    #[inline]
    fn flush(&self, p: *mut u64, count: usize) {
        self.hal.flush_dcache(p as *const u8, count * 8);
    }

    fn check_range(&self, iova: u64, len: u64) -> Result<u64, Error> {
        for v in [iova, len] {
            if !v.is_multiple_of(PAGE_SIZE) {
                return Err(Error::Unaligned {
                    value: v,
                    align: PAGE_SIZE,
                });
            }
        }
        if len == 0 {
            return Err(Error::OutOfRange {
                what: "length",
                value: 0,
            });
        }
        let end = iova.checked_add(len).ok_or(Error::OutOfRange {
            what: "iova",
            value: iova,
        })?;
        if end > self.format.input_limit() {
            return Err(Error::OutOfRange {
                what: "iova",
                value: iova,
            });
        }
        Ok(end)
    }

    /// Map `[iova, iova + len)` to `[paddr, paddr + len)`.
    ///
    /// All three must be 4 KiB aligned; `len > 0`. On error the table is
    /// exactly as before.
    pub fn map(&mut self, iova: Iova, paddr: PhysAddr, len: u64, prot: Prot) -> Result<(), Error> {
        let (iova, paddr) = (iova.0, paddr.0);
        let end = self.check_range(iova, len)?;
        if !paddr.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned {
                value: paddr,
                align: PAGE_SIZE,
            });
        }
        let pend = paddr.checked_add(len).ok_or(Error::OutOfRange {
            what: "paddr",
            value: paddr,
        })?;
        if pend > 1u64 << self.format.oas() {
            return Err(Error::OutOfRange {
                what: "paddr",
                value: paddr,
            });
        }
        // A leaf the format would read back as "not present" (VT-d without
        // READ or WRITE) would map nothing and be overwritten silently later.
        if self.format.decode(self.format.leaf_bits(0, prot), 0) == Pte::Invalid {
            return Err(Error::Unsupported {
                what: "permissions this format cannot express as a present entry",
            });
        }
        let level = self.root_level();
        let need = self.check_map(Some(self.root), level, iova, end, paddr)?;
        let mut reserve = self.reserve(need)?;
        self.commit_map(self.root, None, level, iova, end, paddr, prot, &mut reserve);
        debug_assert_eq!(reserve.head, 0, "map used fewer tables than counted");
        // Pages counted but unused would be a bug in the count; never leak them.
        self.free_reserve(reserve);
        Ok(())
    }

    /// Whether a leaf of `level` can map `[iova, end)` from `pa` onwards.
    #[inline]
    fn leaf_fits(&self, level: u32, iova: u64, end: u64, pa: u64) -> bool {
        let size = level_size(level);
        self.format.leaf_at(level) && (iova | pa) & (size - 1) == 0 && end - iova >= size
    }

    /// Read-only pass of `map`: refuse overlaps, count the tables to create.
    /// `table` is `None` for a table that does not exist yet.
    fn check_map(
        &self,
        table: Option<u64>,
        level: u32,
        mut iova: u64,
        end: u64,
        mut pa: u64,
    ) -> Result<usize, Error> {
        let size = level_size(level);
        let mut need = 0;
        while iova < end {
            let idx = self.index(iova, level);
            if self.leaf_fits(level, iova, end, pa) {
                let n = (((end - iova) / size) as usize).min(self.entries(level) - idx);
                if let Some(t) = table {
                    let base = entry_ptr(&self.hal, t, idx);
                    for k in 0..n {
                        let e = load(base.wrapping_add(k));
                        if e != 0 && self.format.decode(e, level) != Pte::Invalid {
                            return Err(Error::Overlap {
                                iova: iova + k as u64 * size,
                            });
                        }
                    }
                }
                iova += n as u64 * size;
                pa += n as u64 * size;
                continue;
            }
            let span_end = end.min((iova | (size - 1)) + 1);
            let existing = table.map(|t| {
                self.format
                    .decode(load(entry_ptr(&self.hal, t, idx)), level)
            });
            need += match existing {
                Some(Pte::Leaf(_)) => return Err(Error::Overlap { iova }),
                Some(Pte::Table(child)) => {
                    self.check_map(Some(child), level - 1, iova, span_end, pa)?
                }
                Some(Pte::Invalid) | None => {
                    1 + self.check_map(None, level - 1, iova, span_end, pa)?
                }
            };
            pa += span_end - iova;
            iova = span_end;
        }
        Ok(need)
    }

    fn reserve(&self, count: usize) -> Result<Reserve, Error> {
        let mut r = Reserve { head: 0 };
        for _ in 0..count {
            match self.hal.alloc_pages(1).map(|p| p.0) {
                // A table entry cannot point above the output address size.
                Some(p) if p & !self.format.addr_mask() != 0 => {
                    // SAFETY: just allocated, never linked.
                    unsafe { self.hal.free_pages(PhysAddr(p), 1) };
                    self.free_reserve(r);
                    return Err(table_above_oas(p));
                }
                Some(p) => {
                    store(entry_ptr(&self.hal, p, 0), r.head);
                    r.head = p;
                }
                None => {
                    self.free_reserve(r);
                    return Err(Error::NoMemory);
                }
            }
        }
        Ok(r)
    }

    fn free_reserve(&self, mut r: Reserve) {
        while r.head != 0 {
            let p = r.head;
            r.head = load(entry_ptr(&self.hal, p, 0));
            // SAFETY: reserved pages were never linked into the table, so no
            // walker can reach them.
            unsafe { self.hal.free_pages(PhysAddr(p), 1) };
        }
    }

    /// A zeroed page from the reserve (checked by `check_map` to suffice).
    fn take(&self, r: &mut Reserve) -> u64 {
        let p = r.head;
        debug_assert_ne!(p, 0, "map needed more tables than counted");
        r.head = load(entry_ptr(&self.hal, p, 0));
        let e0 = entry_ptr(&self.hal, p, 0);
        store(e0, 0);
        self.flush(e0, 1);
        p
    }

    /// Write pass of `map`; cannot fail after `check_map` and `reserve`.
    #[allow(clippy::too_many_arguments)]
    fn commit_map(
        &self,
        table: u64,
        counter: Option<*mut u64>,
        level: u32,
        mut iova: u64,
        end: u64,
        mut pa: u64,
        prot: Prot,
        reserve: &mut Reserve,
    ) {
        let size = level_size(level);
        let mut added = 0u64;
        while iova < end {
            let idx = self.index(iova, level);
            if self.leaf_fits(level, iova, end, pa) {
                let n = (((end - iova) / size) as usize).min(self.entries(level) - idx);
                added += n as u64;
                let bits = self.format.leaf_bits(level, prot);
                let base = entry_ptr(&self.hal, table, idx);
                let mut a = pa;
                for k in 0..n {
                    store(base.wrapping_add(k), a | bits);
                    a += size;
                }
                self.flush(base, n);
                iova += n as u64 * size;
                pa += n as u64 * size;
                continue;
            }
            let span_end = end.min((iova | (size - 1)) + 1);
            let slot = entry_ptr(&self.hal, table, idx);
            let child = match self.format.decode(load(slot), level) {
                Pte::Table(child) => child,
                _ => {
                    let child = self.take(reserve);
                    // The zeroed child must be visible before the pointer to it.
                    fence(Ordering::Release);
                    store(slot, child | self.format.table_bits(level));
                    self.flush(slot, 1);
                    added += 1;
                    child
                }
            };
            self.commit_map(
                child,
                Some(slot),
                level - 1,
                iova,
                span_end,
                pa,
                prot,
                reserve,
            );
            pa += span_end - iova;
            iova = span_end;
        }
        self.add_count(counter, added);
    }

    /// Unmap `[iova, iova + len)`, which must be entirely mapped and must not
    /// cut a block. Emptied tables go to `gather`; on error nothing changes.
    pub fn unmap(&mut self, iova: Iova, len: u64, gather: &mut Gather) -> Result<(), Error> {
        let iova = iova.0;
        let end = self.check_range(iova, len)?;
        // Descend once to the lowest table whose single entry holds the whole
        // range, remembering the entries passed (at most one per level).
        let mut path = [(core::ptr::null_mut::<u64>(), 0u64); MAX_LEVELS];
        let mut depth = 0;
        let (mut table, mut level) = (self.root, self.root_level());
        while level > 0 && iova >> shift(level) == (end - 1) >> shift(level) {
            let slot = entry_ptr(&self.hal, table, self.index(iova, level));
            let pte = load(slot);
            match self.format.decode(pte, level) {
                Pte::Table(child) => {
                    path[depth] = (slot, pte);
                    depth += 1;
                    table = child;
                    level -= 1;
                }
                Pte::Invalid => return Err(Error::NotMapped { iova }),
                // A block: check_unmap decides whether the range covers it.
                Pte::Leaf(_) => break,
            }
        }
        self.check_unmap(table, level, iova, end)?;
        // The root's count is not kept: it is never freed.
        let count = depth.checked_sub(1).map_or(0, |d| self.count_of(path[d].1));
        let mut left = self.commit_unmap(table, count, level, iova, end, gather);
        // Back up the path: unlink tables the unmap emptied, update the count
        // of the first one that still holds something, and stop there.
        for d in (0..depth).rev() {
            let (slot, pte) = path[d];
            if left == 0 {
                store(slot, 0);
                self.flush(slot, 1);
                if let Pte::Table(child) = self.format.decode(pte, level + (depth - d) as u32) {
                    gather.push_page(&self.hal, child);
                }
                // The table holding `slot` lost an entry; the root keeps no count.
                let Some(up) = d.checked_sub(1) else { break };
                left = self.count_of(path[up].1) - 1;
            } else {
                store(slot, self.with_count(pte, left));
                self.flush(slot, 1);
                break;
            }
        }
        Ok(())
    }

    fn check_unmap(&self, table: u64, level: u32, mut iova: u64, end: u64) -> Result<(), Error> {
        let size = level_size(level);
        let base = entry_ptr(&self.hal, table, 0);
        if level == 0 {
            // Every 4 KiB entry in range must be present.
            let idx = self.index(iova, 0);
            let n = ((end - iova) / size) as usize;
            if self.all_leaves(table, 0, idx, n) {
                return Ok(());
            }
            for k in 0..n {
                if self.format.decode(load(base.wrapping_add(idx + k)), 0) == Pte::Invalid {
                    return Err(Error::NotMapped {
                        iova: iova + k as u64 * size,
                    });
                }
            }
            return Ok(());
        }
        while iova < end {
            let span_end = end.min((iova | (size - 1)) + 1);
            let pte = load(base.wrapping_add(self.index(iova, level)));
            match self.format.decode(pte, level) {
                Pte::Invalid => return Err(Error::NotMapped { iova }),
                Pte::Leaf(_) => {
                    if iova & (size - 1) != 0 || span_end - iova != size {
                        return Err(Error::SplitBlock {
                            iova: iova & !(size - 1),
                            size,
                        });
                    }
                    // Whole blocks that follow in range: one load and decode each.
                    let idx = self.index(iova, level);
                    let max = (((end - iova) / size) as usize).min(self.entries(level) - idx);
                    let mut n = if self.all_leaves(table, level, idx, max) {
                        max
                    } else {
                        1
                    };
                    while n < max
                        && matches!(
                            self.format.decode(load(base.wrapping_add(idx + n)), level),
                            Pte::Leaf(_)
                        )
                    {
                        n += 1;
                    }
                    iova += n as u64 * size;
                    continue;
                }
                Pte::Table(child) => self.check_unmap(child, level - 1, iova, span_end)?,
            }
            iova = span_end;
        }
        Ok(())
    }

    /// Write pass of `unmap` on `table`, which holds `count` valid entries;
    /// returns how many it still holds.
    fn commit_unmap(
        &self,
        table: u64,
        count: u64,
        level: u32,
        mut iova: u64,
        end: u64,
        gather: &mut Gather,
    ) -> u64 {
        let size = level_size(level);
        let mut removed = 0u64;
        while iova < end {
            let idx = self.index(iova, level);
            let slot = entry_ptr(&self.hal, table, idx);
            match self.format.decode(load(slot), level) {
                Pte::Leaf(_) => {
                    // The run of consecutive leaves in range (check_unmap proved each
                    // is a whole leaf). At level 0 every entry in range is one; above,
                    // a table may follow them.
                    let max = (((end - iova) / size) as usize).min(self.entries(level) - idx);
                    let mut n = if level == 0 || self.all_leaves(table, level, idx, max) {
                        max
                    } else {
                        1
                    };
                    while n < max
                        && matches!(
                            self.format.decode(load(slot.wrapping_add(n)), level),
                            Pte::Leaf(_)
                        )
                    {
                        n += 1;
                    }
                    for k in 0..n {
                        store(slot.wrapping_add(k), 0);
                    }
                    self.flush(slot, n);
                    removed += n as u64;
                    gather.add_range(iova, iova + n as u64 * size, size);
                    iova += n as u64 * size;
                }
                Pte::Table(child) => {
                    let span_end = end.min((iova | (size - 1)) + 1);
                    let pte = load(slot);
                    let left = self.commit_unmap(
                        child,
                        self.count_of(pte),
                        level - 1,
                        iova,
                        span_end,
                        gather,
                    );
                    if left == 0 {
                        store(slot, 0);
                        removed += 1;
                        gather.push_page(&self.hal, child);
                    } else {
                        store(slot, self.with_count(pte, left));
                    }
                    self.flush(slot, 1);
                    iova = span_end;
                }
                // check_unmap proved the range is mapped.
                Pte::Invalid => iova = end.min((iova | (size - 1)) + 1),
            }
        }
        debug_assert!(removed <= count || level == self.root_level());
        count.saturating_sub(removed)
    }

    /// Physical address `iova` translates to, if mapped.
    pub fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.translate(Iova(iova.0)).map(|t| t.phys)
    }

    /// Walk the table for `iova` as the hardware would.
    pub fn translate(&self, iova: Iova) -> Option<Translation> {
        let iova = iova.0;
        if iova >= self.format.input_limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.root_level();
        loop {
            let pte = load(entry_ptr(&self.hal, table, self.index(iova, level)));
            match self.format.decode(pte, level) {
                Pte::Invalid => return None,
                Pte::Leaf(base) => {
                    let size = level_size(level);
                    return Some(Translation {
                        phys: PhysAddr(base | (iova & (size - 1))),
                        size,
                        prot: self.format.leaf_prot(pte, level),
                    });
                }
                Pte::Table(next) => {
                    if level == 0 {
                        return None;
                    }
                    table = next;
                    level -= 1;
                }
            }
        }
    }

    fn free_tree(&self, table: u64, level: u32) {
        if level > 0 {
            for i in 0..self.entries(level) {
                if let Pte::Table(child) = self
                    .format
                    .decode(load(entry_ptr(&self.hal, table, i)), level)
                {
                    self.free_tree(child, level - 1);
                    // SAFETY: the child is a table page this PageTable allocated;
                    // the table is being dropped, so nothing walks it any more.
                    unsafe { self.hal.free_pages(PhysAddr(child), 1) };
                }
            }
        }
    }
}

impl<F: Format, H: Hal> Drop for PageTable<F, H> {
    /// Free every table page (never the memory mapped). The embedder must have
    /// detached the table from every IOMMU and invalidated their caches first.
    fn drop(&mut self) {
        self.free_tree(self.root, self.root_level());
        // SAFETY: the root came from alloc_pages(root_pages) in `new`.
        unsafe {
            self.hal
                .free_pages(PhysAddr(self.root), self.format.root_pages())
        };
    }
}

#[cfg(test)]
mod smoke {
    extern crate std;
    use super::*;
    use crate::drivers::vtd::regs::LargePages;
    use core::cell::{Cell, RefCell};
    use std::vec::Vec;

    /// Pages from a host buffer; physical address = offset + 1 GiB.
    struct Pool {
        mem: RefCell<Vec<[u64; 512]>>,
        free: RefCell<Vec<usize>>,
        live: Cell<isize>,
    }
    const BASE: u64 = 1 << 30;
    impl Pool {
        fn new(pages: usize) -> Self {
            Pool {
                mem: RefCell::new(std::vec![[0u64; 512]; pages]),
                free: RefCell::new((0..pages).rev().collect()),
                live: Cell::new(0),
            }
        }
    }
    // SAFETY: each page is a distinct element of `mem`, handed out once
    // until freed, zeroed at allocation; `phys_to_virt` points at it.
    unsafe impl Hal for Pool {
        fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
            assert_eq!(count, 1);
            let i = self.free.borrow_mut().pop()?;
            self.mem.borrow_mut()[i] = [0; 512];
            self.live.set(self.live.get() + 1);
            Some(PhysAddr(BASE + i as u64 * PAGE_SIZE))
        }
        unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
            assert_eq!(count, 1);
            self.free
                .borrow_mut()
                .push(((phys.0 - BASE) / PAGE_SIZE) as usize);
            self.live.set(self.live.get() - 1);
        }
        fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
            let i = ((phys.0 - BASE) / PAGE_SIZE) as usize;
            self.mem.borrow_mut()[i].as_mut_ptr() as *mut u8
        }
    }

    #[test]
    fn map_translate_unmap_release() {
        let pool = Pool::new(64);
        {
            let fmt = VtdSl::new(48, LargePages::SIZE_2M).unwrap();
            let mut pt = PageTable::new(fmt, &pool).unwrap();
            let rw = Prot::READ | Prot::WRITE;
            // 1 MiB of 4 KiB pages and one 2 MiB block.
            pt.map(Iova(0x10_0000), PhysAddr(0x8000_0000), 0x10_0000, rw)
                .unwrap();
            pt.map(Iova(0x40_0000), PhysAddr(0x9000_0000), 0x20_0000, rw)
                .unwrap();
            assert_eq!(pool.live.get(), 4, "root + L2 + L1 + one leaf table");
            let t = pt.translate(Iova(0x10_3123)).unwrap();
            assert_eq!((t.phys.0, t.size), (0x8000_3123, 4096));
            let t = pt.translate(Iova(0x5f_fff8)).unwrap();
            assert_eq!((t.phys.0, t.size), (0x901f_fff8, 2 << 20));
            assert_eq!(pt.iova_to_phys(Iova(0x20_0000)), None);
            assert_eq!(
                pt.map(Iova(0x1f_f000), PhysAddr(0), 0x2000, rw),
                Err(Error::Overlap { iova: 0x1f_f000 })
            );
            let mut g = Gather::new();
            assert_eq!(
                pt.unmap(Iova(0x40_0000), 0x1000, &mut g),
                Err(Error::SplitBlock {
                    iova: 0x40_0000,
                    size: 2 << 20
                })
            );
            assert_eq!(
                pt.unmap(Iova(0x20_0000), 0x1000, &mut g),
                Err(Error::NotMapped { iova: 0x20_0000 })
            );
            pt.unmap(Iova(0x10_0000), 0x10_0000, &mut g).unwrap();
            assert_eq!(g.freed_pages(), 1, "the emptied leaf table");
            assert_eq!(g.range(), Some((0x10_0000, 0x20_0000)));
            assert_eq!(g.page_size(), 4096);
            assert_eq!(pt.iova_to_phys(Iova(0x10_0000)), None);
            g.release(pt.hal());
            assert_eq!(pool.live.get(), 3);
        }
        assert_eq!(pool.live.get(), 0, "drop frees every table");
    }

    /// Every kept count equals the number of valid entries of its table.
    fn counts_ok<F: Format, H: Hal>(pt: &PageTable<F, H>, table: u64, level: u32) -> usize {
        let mut valid = 0;
        for i in 0..pt.entries(level) {
            let e = load(entry_ptr(&pt.hal, table, i));
            match pt.format.decode(e, level) {
                Pte::Invalid => assert_eq!(e, 0, "invalid entries are zero"),
                Pte::Leaf(_) => valid += 1,
                Pte::Table(child) => {
                    valid += 1;
                    let n = counts_ok(pt, child, level - 1);
                    assert_eq!(
                        pt.count_of(e) as usize,
                        n,
                        "count of table at level {}",
                        level - 1
                    );
                    assert!(n > 0, "no empty table stays linked");
                }
            }
        }
        valid
    }

    #[test]
    fn counts_track_every_map_and_unmap() {
        let pool = Pool::new(64);
        let mut pt =
            PageTable::new(ArmS1::new(MairIndices::default(), 48).unwrap(), &pool).unwrap();
        let rw = Prot::READ | Prot::WRITE;
        let mut g = Gather::new();
        // 3 MiB at an odd 4 KiB offset: leaf tables, one 2 MiB block, leaf tables.
        pt.map(
            Iova(0x1ff000),
            PhysAddr(0x4000_0000 + 0x1ff000),
            0x30_2000,
            rw,
        )
        .unwrap();
        pt.map(Iova(0x8000_0000), PhysAddr(0x8000_0000), 1 << 30, rw)
            .unwrap();
        counts_ok(&pt, pt.root, pt.root_level());
        pt.unmap(Iova(0x1ff000), 0x1000, &mut g).unwrap();
        counts_ok(&pt, pt.root, pt.root_level());
        pt.unmap(Iova(0x200000), 0x20_0000, &mut g).unwrap();
        counts_ok(&pt, pt.root, pt.root_level());
        pt.unmap(Iova(0x400000), 0x1000, &mut g).unwrap();
        counts_ok(&pt, pt.root, pt.root_level());
        pt.unmap(Iova(0x8000_0000), 1 << 30, &mut g).unwrap();
        assert_eq!(
            counts_ok(&pt, pt.root, pt.root_level()),
            1,
            "0x401000..0x501000 is left"
        );
        pt.unmap(Iova(0x401000), 0x10_0000, &mut g).unwrap();
        assert_eq!(counts_ok(&pt, pt.root, pt.root_level()), 0);
        g.release(pt.hal());
        assert_eq!(pool.live.get(), 1, "only the root is left");
    }

    #[test]
    fn is_leaf_agrees_with_decode() {
        fn check<F: Format>(f: &F) {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for level in 0..f.levels() {
                    let want = matches!(f.decode(x, level), Pte::Leaf(_));
                    assert_eq!(f.is_leaf(x, level), want, "{x:#x} at level {level}");
                    let low = x & 0xfff;
                    assert_eq!(
                        f.is_leaf(low, level),
                        matches!(f.decode(low, level), Pte::Leaf(_))
                    );
                }
            }
        }
        check(&VtdSl::new(57, LargePages::all()).unwrap());
        check(&X86_64::new(true));
        check(&ArmS1::new(MairIndices::default(), 48).unwrap());
        check(&ArmS2::new(40, 48).unwrap());
    }

    #[test]
    fn vtd_refuses_a_leaf_without_access() {
        let pool = Pool::new(8);
        let fmt = VtdSl::new(39, LargePages::empty()).unwrap();
        let mut pt = PageTable::new(fmt, &pool).unwrap();
        assert!(matches!(
            pt.map(Iova(0), PhysAddr(0), 4096, Prot::EXEC),
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(pool.live.get(), 1);
        pt.map(Iova(0), PhysAddr(0), 4096, Prot::WRITE).unwrap();
        assert_eq!(pt.translate(Iova(0)).unwrap().prot, Prot::WRITE);
    }

    #[test]
    fn out_of_memory_leaves_nothing_behind() {
        let pool = Pool::new(3); // root + 2: not enough for a 4-level 4 KiB map
        let mut pt = PageTable::new(X86_64::new(false), &pool).unwrap();
        assert_eq!(
            pt.map(Iova(0), PhysAddr(0), 4096, Prot::READ),
            Err(Error::NoMemory)
        );
        // Non-canonical (upper-half) x86 inputs are refused, not masked.
        assert!(matches!(
            pt.map(Iova(1 << 47), PhysAddr(0), 4096, Prot::READ),
            Err(Error::OutOfRange { what: "iova", .. })
        ));
        assert_eq!(pt.translate(Iova((1 << 47) + 0x1000)), None);
        assert_eq!(pool.live.get(), 1);
        assert_eq!(pt.iova_to_phys(Iova(0)), None);
    }
}
