//! Table pages an unmap freed, held until the IOTLB no longer needs them.

use crate::addr::PhysAddr;
use crate::hal::Hal;

use super::{entry_ptr, load, store};

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

    pub(super) fn add_range(&mut self, start: u64, end: u64, leaf: u64) {
        self.start = self.start.min(start);
        self.end = self.end.max(end);
        self.pgsize = if self.pgsize == 0 {
            leaf
        } else {
            self.pgsize.min(leaf)
        };
    }

    pub(super) fn push_page<H: Hal>(&mut self, hal: &H, phys: u64) {
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
