//! Unmap: check that the range is entirely mapped and cuts no block, then
//! clear it, gathering the tables it empties.

use crate::addr::Iova;
use crate::error::Error;
use crate::hal::Hal;

use super::*;

impl<F: Format, H: Hal> PageTable<F, H> {
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
}
