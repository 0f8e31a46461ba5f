//! One page-table engine, four hardware formats (VT-d second level and
//! x86-64 with the `vtd` feature, Arm stage 1 and stage 2 with `smmuv3`).
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

#[cfg(feature = "smmuv3")]
mod arm;
mod gather;
mod map;
mod table;
mod unmap;
#[cfg(feature = "vtd")]
mod vtd_sl;
#[cfg(feature = "vtd")]
mod x86_64;

#[cfg(feature = "smmuv3")]
pub use arm::{ArmS1, ArmS2, MairIndices};
pub use gather::Gather;
pub use table::{AnyFormat, AnyTable, Either, EitherTable, IoTable, TableFormat};
#[cfg(feature = "vtd")]
pub use vtd_sl::{LargePages, VtdSl};
#[cfg(feature = "vtd")]
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

    /// Physical address `iova` translates to, if mapped.
    pub fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        self.translate(iova).map(|t| t.phys)
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

#[cfg(all(test, feature = "vtd"))]
mod smoke;
