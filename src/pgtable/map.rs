//! Map: check the whole range first, reserve every table page it needs, then
//! write, so that an error leaves the table exactly as it was.

use crate::addr::{Iova, PhysAddr};
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};

use super::*;

impl<F: Format, H: Hal> PageTable<F, H> {
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
}
