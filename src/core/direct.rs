//! Direct-mapped regions: memory a device must keep reaching at the same
//! address whatever it is attached to (firmware-owned buffers: VT-d RMRRs,
//! IORT RMRs). Linux calls them `IOMMU_RESV_DIRECT` reserved regions.
//!
//! The driver says which regions a device has
//! ([`IommuDriver::direct_regions`]); the core maps each one-to-one into
//! every paging domain attached at the device's requester ID before the
//! hardware switches to it, and refuses to unmap them from a domain while
//! such a device is attached to it.

use crate::addr::{Iova, PhysAddr};
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};
use crate::pgtable::{Gather, Prot};

use super::config::Capacities;
use super::driver::{DeviceInfo, IommuDriver};
use super::iommu::*;

/// A range of physical memory a device must keep reaching at the same
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectRegion {
    /// First byte.
    pub base: u64,
    /// Length in bytes (nonzero).
    pub len: u64,
}

impl DirectRegion {
    /// The region widened to whole pages: (first page, end), or `None` when
    /// empty or running past 2^64.
    fn pages(&self) -> Option<(u64, u64)> {
        let end = self
            .base
            .checked_add(self.len)?
            .checked_add(PAGE_SIZE - 1)?
            & !(PAGE_SIZE - 1);
        let start = self.base & !(PAGE_SIZE - 1);
        (self.len > 0).then_some((start, end))
    }
}

/// Direct regions one device may have at most.
pub const MAX_DIRECT_REGIONS: usize = 8;

/// A device's direct regions.
pub(super) type Regions = heapless::Vec<(u64, u64), MAX_DIRECT_REGIONS>;

pub(super) fn regions_of<D: IommuDriver>(driver: &D, info: &DeviceInfo) -> Result<Regions, Error> {
    let mut buf = [DirectRegion { base: 0, len: 0 }; MAX_DIRECT_REGIONS];
    let n = driver
        .direct_regions(info, &mut buf)
        .min(MAX_DIRECT_REGIONS);
    let mut out = Regions::new();
    for r in &buf[..n] {
        let range = r.pages().ok_or(Error::OutOfRange {
            what: "direct region",
            value: r.base,
        })?;
        // At most MAX_DIRECT_REGIONS: the push cannot fail.
        let _ = out.push(range);
    }
    Ok(out)
}

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    /// Map `info`'s direct regions one-to-one into `dom` (a paging domain;
    /// others need nothing): a region already mapped one-to-one stays, an
    /// unmapped one is mapped, one mapped elsewhere refuses the attach
    /// (`Overlap`) with nothing changed. Returns the regions it mapped, for
    /// [`unmap_direct`](Self::unmap_direct) if the attach then fails.
    pub(super) fn map_direct(
        &mut self,
        info: &DeviceInfo,
        dom: DomainId,
    ) -> Result<Regions, Error> {
        let mut mapped = Regions::new();
        if dom.is_static()
            || !matches!(
                domain_ref(self.slots.as_ref(), dom)?.data,
                Data::Paging { .. }
            )
        {
            return Ok(mapped);
        }
        let regions = regions_of(&self.driver, info)?;
        let mut todo = Regions::new();
        for &(start, end) in &regions {
            let (mut same, mut free) = (true, true);
            for page in (start..end).step_by(PAGE_SIZE as usize) {
                match self.iova_to_phys(dom, Iova(page))? {
                    Some(p) if p.get() == page => free = false,
                    Some(_) => return Err(Error::Overlap { iova: page }),
                    None => same = false,
                }
            }
            if !same && !free {
                // Part mapped one-to-one, part not: map the holes one by one.
                for page in (start..end).step_by(PAGE_SIZE as usize) {
                    if self.iova_to_phys(dom, Iova(page))?.is_none() {
                        let _ = todo.push((page, page + PAGE_SIZE));
                    }
                }
            } else if free {
                let _ = todo.push((start, end));
            }
        }
        let rw = Prot::READ | Prot::WRITE;
        for &(start, end) in &todo {
            if let Err(e) = self.map(dom, Iova(start), PhysAddr(start), end - start, rw) {
                self.unmap_direct(dom, &mapped);
                return Err(e);
            }
            let _ = mapped.push((start, end));
        }
        Ok(mapped)
    }

    /// Undo [`map_direct`](Self::map_direct) (the attach it prepared
    /// failed). Best effort: the domain was never attached to the device.
    pub(super) fn unmap_direct(&mut self, dom: DomainId, mapped: &Regions) {
        for &(start, end) in mapped {
            let mut g = Gather::new();
            if self.unmap(dom, Iova(start), end - start, &mut g).is_ok() {
                let _ = self.sync(dom, &mut g);
            }
        }
    }

    /// Refuse (`Busy`) to unmap `[iova, iova + len)` from `dom` while a
    /// device attached at its requester ID has a direct region there.
    pub(super) fn check_direct_unmap(
        &self,
        dom: DomainId,
        iova: u64,
        len: u64,
    ) -> Result<(), Error> {
        let end = iova.saturating_add(len);
        for d in self.devices.iter().filter(|d| d.rid == dom) {
            for (start, stop) in regions_of(&self.driver, &d.info)? {
                if start < end && iova < stop {
                    return Err(Error::Busy {
                        what: "a direct-mapped region (RMRR) of a device attached to the domain",
                    });
                }
            }
        }
        Ok(())
    }
}
