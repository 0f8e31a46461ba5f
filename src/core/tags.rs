//! Cache tags: which hardware caches may hold a domain's translations, and
//! how an unmap reaches all of them.
//!
//! Every attach records a [`CacheTag`] on the domain (the IOMMU instance, the
//! tag the hardware caches under — VT-d domain id, SMMU ASID or VMID — the
//! PASID, the device, and which cache); detach removes it. After an unmap has
//! filled a [`Gather`], [`sync`] sends each instance the invalidations for all
//! of its tags and then waits for completion exactly once per instance. Only
//! when every wait succeeded are the gathered table pages released: a page
//! the IOMMU may still walk is never freed.

use crate::error::{Error, Object};
use crate::hal::Hal;
use crate::pgtable::Gather;

use super::config::VecStore;

/// Which cache a tag names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TagKind {
    /// The IOMMU's own TLB (and paging-structure caches).
    Iotlb,
    /// A parent (stage-2) domain's entries cached for a nested domain on it.
    NestedParent,
    /// A device's own TLB (PCIe ATS); invalidated after the IOTLB.
    DevTlb,
}

/// One cache that may hold a domain's translations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheTag {
    /// The IOMMU instance (the embedder's index).
    pub instance: u16,
    /// What the hardware tags entries with: VT-d DID, SMMU ASID or VMID.
    pub id: u32,
    /// PASID the domain is attached at; `None` for the requester ID itself.
    pub pasid: Option<u32>,
    /// The device: its source-id / StreamID (needed for device-TLB invalidation).
    pub device: u32,
    /// Which cache.
    pub kind: TagKind,
}

/// The tags of one domain, with a user count each (the same tag recorded by
/// two attaches is one entry, removed when both detach), in a store of the
/// embedder's capacity (`heapless::Vec<(CacheTag, u32), N>` by default).
pub struct CacheTags<V: VecStore<(CacheTag, u32)> = heapless::Vec<(CacheTag, u32), 16>> {
    entries: V,
}

/// [`CacheTags`] with room for `N` distinct tags in a `heapless` vector.
pub type FixedCacheTags<const N: usize> = CacheTags<heapless::Vec<(CacheTag, u32), N>>;

impl<V: VecStore<(CacheTag, u32)>> Default for CacheTags<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: VecStore<(CacheTag, u32)>> CacheTags<V> {
    /// No tags.
    pub const fn new() -> Self {
        CacheTags { entries: V::EMPTY }
    }

    /// Record a tag (at attach).
    pub fn add(&mut self, tag: CacheTag) -> Result<(), Error> {
        if let Some((_, users)) = self.entries.iter_mut().find(|(t, _)| *t == tag) {
            *users += 1;
            return Ok(());
        }
        self.entries.push((tag, 1)).map_err(|_| Error::Exhausted {
            what: Object::CacheTag,
        })
    }

    /// Drop one use of a tag (at detach). Refused, changing nothing, when the
    /// tag is not recorded.
    pub fn remove(&mut self, tag: &CacheTag) -> Result<(), Error> {
        let i = self
            .entries
            .iter()
            .position(|(t, _)| t == tag)
            .ok_or(Error::NotFound {
                what: Object::CacheTag,
            })?;
        if self.entries[i].1 > 1 {
            self.entries[i].1 -= 1;
        } else {
            self.entries.swap_remove(i);
        }
        Ok(())
    }

    /// The distinct tags.
    pub fn iter(&self) -> impl Iterator<Item = &CacheTag> + Clone {
        self.entries.iter().map(|(t, _)| t)
    }

    /// The tags, to lend to a driver.
    pub fn view(&self) -> TagView<'_> {
        TagView {
            entries: &self.entries,
        }
    }

    /// Number of distinct tags.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no tag is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The cache tags of one domain, lent to a driver: a user invalidation of
/// a nested domain reaches every PASID and device the domain is attached
/// at.
#[derive(Clone, Copy, Debug)]
pub struct TagView<'a> {
    entries: &'a [(CacheTag, u32)],
}

impl<'a> TagView<'a> {
    /// A view of no tags.
    pub const EMPTY: TagView<'static> = TagView { entries: &[] };

    /// The distinct tags.
    pub fn iter(&self) -> impl Iterator<Item = &'a CacheTag> + Clone + use<'a> {
        self.entries.iter().map(|(t, _)| t)
    }
}

/// What a driver provides for invalidation: queue, then wait.
pub trait TagInvalidate {
    /// Queue invalidation of what `tag` caches for the input range
    /// `[start, end)` (IOVAs, or CPU virtual addresses for an SVA domain).
    /// `page_size` is the smallest leaf size the range was mapped with (4 KiB
    /// when unknown): a driver may invalidate by that stride or by address
    /// mask. `tables_freed` says paging-structure caches must go too (VT-d:
    /// IH clear; SMMUv3: no leaf flag). With `range` `None` everything under
    /// the tag goes, and `page_size` means nothing. Queued work may be
    /// buffered until [`wait`](Self::wait).
    fn invalidate(
        &mut self,
        tag: &CacheTag,
        range: Option<(u64, u64)>,
        page_size: u64,
        tables_freed: bool,
    ) -> Result<(), Error>;

    /// Wait until everything queued on `instance` has completed (one
    /// completion wait, with a timeout): the core frees table pages only
    /// after this returns `Ok`.
    fn wait(&mut self, instance: u16) -> Result<(), Error>;
}

/// Invalidate what `gather` covers in every cache `tags` names, one batch and
/// one completion wait per instance (IOTLB before device TLB within a batch),
/// then release the gathered table pages through `hal`.
///
/// On error nothing is released: the gather keeps its pages and range, so the
/// caller can retry the sync (or leak the pages rather than free memory the
/// IOMMU may still walk).
pub fn sync<V: VecStore<(CacheTag, u32)>, D: TagInvalidate, H: Hal>(
    tags: &CacheTags<V>,
    gather: &mut Gather,
    driver: &mut D,
    hal: &H,
) -> Result<(), Error> {
    let Some(range) = gather.range() else {
        // Nothing was unmapped; nothing can be cached.
        gather.release(hal);
        return Ok(());
    };
    flush(
        tags.iter(),
        Some(range),
        gather.page_size(),
        gather.has_freed_tables(),
        driver,
    )?;
    gather.release(hal);
    Ok(())
}

/// Invalidate `range` (`None`: everything) in every cache `tags` names: per
/// instance, in order of first appearance, the IOTLB tags, then nested-parent
/// tags, then device TLBs, and one completion wait. The first error stops it.
pub fn flush<'a, I, D>(
    tags: I,
    range: Option<(u64, u64)>,
    page_size: u64,
    tables_freed: bool,
    driver: &mut D,
) -> Result<(), Error>
where
    I: Iterator<Item = &'a CacheTag> + Clone,
    D: TagInvalidate + ?Sized,
{
    for (i, first) in tags.clone().enumerate() {
        // Each instance once: skip it if an earlier tag named it.
        if tags.clone().take(i).any(|t| t.instance == first.instance) {
            continue;
        }
        for kind in [TagKind::Iotlb, TagKind::NestedParent, TagKind::DevTlb] {
            for tag in tags
                .clone()
                .filter(|t| t.instance == first.instance && t.kind == kind)
            {
                driver.invalidate(tag, range, page_size, tables_freed)?;
            }
        }
        driver.wait(first.instance)?;
    }
    Ok(())
}
