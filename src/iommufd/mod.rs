//! iommufd's objects as a library API, for a hypervisor giving a guest (or
//! a user-space driver) control of a device's DMA translation.
//!
//! - [`Ioas`]: an I/O address space — the mappings a user asked for, with
//!   the ranges it may use (allowed) and may never use (reserved). Every
//!   paging domain ("HWPT paging") filled from it mirrors its mappings.
//! - [`alloc_hwpt_paging`]: a paging domain on an IOAS (flags: nest parent,
//!   dirty tracking).
//! - [`alloc_hwpt_nested`]: a user stage-1 on a nest-parent HWPT, from
//!   untrusted user data the driver validates field by field (the bytes go to
//!   it with their type tag, [`crate::core::user`]); [`invalidate_user`]
//!   applies a user array of
//!   cache invalidations and reports how many were handled and the first bad
//!   one.
//! - [`hw_info`]: the raw capability registers of a device's IOMMU.
//! - Fault objects: [`Iommu::alloc_fault_object`], routed to with
//!   [`Iommu::set_fault_target`], read with [`Iommu::fault_read`] and
//!   answered by cookie with [`Iommu::fault_respond`].
//!
//! Objects are plain values the embedder keeps (no handle table, no global
//! state); a HWPT is the core's [`DomainId`].

use heapless::Vec;

use crate::addr::{Iova, PhysAddr};
use crate::core::user::InvalidateOutcome;
use crate::core::{
    Capacities, DeviceId, DomainId, DomainKind, HwInfo, Iommu, IommuDriver, PagingFlags,
};
use crate::error::{Error, Object};
use crate::hal::{Hal, PAGE_SIZE};
use crate::pgtable::Prot;

pub use crate::core::{FaultObjectId, FaultTarget, UserFault};

/// Paging domains one IOAS can feed.
pub const HWPTS_PER_IOAS: usize = 8;

/// One mapping of an IOAS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    /// First I/O virtual address.
    pub iova: Iova,
    /// Physical address it maps to.
    pub paddr: PhysAddr,
    /// Length in bytes (a multiple of 4 KiB).
    pub len: u64,
    /// Permissions.
    pub prot: Prot,
}

impl Area {
    fn end(&self) -> u64 {
        self.iova.0 + self.len
    }
}

/// Half-open `[start, end)`; both 4 KiB aligned, `end > start`.
fn check_range(start: u64, end: u64) -> Result<(), Error> {
    for v in [start, end] {
        if !v.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned {
                value: v,
                align: PAGE_SIZE,
            });
        }
    }
    if end <= start {
        return Err(Error::OutOfRange {
            what: "range end",
            value: end,
        });
    }
    Ok(())
}

/// The end of `[iova, iova + len)`: refused when empty or past 2^64.
fn end_of(iova: u64, len: u64) -> Result<u64, Error> {
    if len == 0 {
        return Err(Error::OutOfRange {
            what: "length",
            value: 0,
        });
    }
    iova.checked_add(len).ok_or(Error::OutOfRange {
        what: "iova + length",
        value: iova,
    })
}

fn intersects(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// An I/O address space: up to `M` mappings, `R` allowed and `R` reserved
/// ranges, and the paging domains that mirror it.
#[derive(Debug, Default)]
pub struct Ioas<const M: usize = 64, const R: usize = 8> {
    areas: Vec<Area, M>,
    allowed: Vec<(u64, u64), R>,
    reserved: Vec<(u64, u64), R>,
    hwpts: Vec<DomainId, HWPTS_PER_IOAS>,
}

impl<const M: usize, const R: usize> Ioas<M, R> {
    /// An empty IOAS: no mappings, every address allowed, nothing reserved.
    pub const fn new() -> Self {
        Ioas {
            areas: Vec::new(),
            allowed: Vec::new(),
            reserved: Vec::new(),
            hwpts: Vec::new(),
        }
    }

    /// The mappings, in IOVA order.
    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    /// The paging domains mirroring this IOAS.
    pub fn hwpts(&self) -> &[DomainId] {
        &self.hwpts
    }

    /// The allowed ranges (empty: every address).
    pub fn allowed(&self) -> &[(u64, u64)] {
        &self.allowed
    }

    /// The reserved ranges.
    pub fn reserved(&self) -> &[(u64, u64)] {
        &self.reserved
    }

    /// Restrict mappings to `ranges` (`[start, end)`, 4 KiB aligned, not
    /// overlapping each other); an empty slice allows everything. Refused
    /// (`Busy`) if an existing mapping falls outside.
    pub fn set_allowed(&mut self, ranges: &[(u64, u64)]) -> Result<(), Error> {
        let mut new: Vec<(u64, u64), R> = Vec::new();
        for &(s, e) in ranges {
            check_range(s, e)?;
            if let Some(o) = new.iter().find(|r| intersects(**r, (s, e))) {
                return Err(Error::Overlap { iova: o.0.max(s) });
            }
            new.push((s, e)).map_err(|_| Error::Exhausted {
                what: Object::IoasRange,
            })?;
        }
        let inside =
            |a: &Area| new.is_empty() || new.iter().any(|&(s, e)| s <= a.iova.0 && a.end() <= e);
        if self.areas.iter().any(|a| !inside(a)) {
            return Err(Error::Busy {
                what: "a mapping lies outside the new allowed ranges",
            });
        }
        self.allowed = new;
        Ok(())
    }

    /// Reserve `[start, end)`: nothing may be mapped there (an MSI window,
    /// firmware-reserved memory). Refused (`Overlap`) if a mapping is there.
    pub fn add_reserved(&mut self, start: u64, end: u64) -> Result<(), Error> {
        check_range(start, end)?;
        if let Some(a) = self
            .areas
            .iter()
            .find(|a| intersects((a.iova.0, a.end()), (start, end)))
        {
            return Err(Error::Overlap {
                iova: a.iova.0.max(start),
            });
        }
        self.reserved
            .push((start, end))
            .map_err(|_| Error::Exhausted {
                what: Object::IoasRange,
            })
    }

    /// Check that `[iova, iova + len)` may be mapped; returns its end.
    fn check_free(&self, iova: u64, len: u64) -> Result<u64, Error> {
        let end = end_of(iova, len)?;
        check_range(iova, end)?;
        if !self.allowed.is_empty() && !self.allowed.iter().any(|&(s, e)| s <= iova && end <= e) {
            return Err(Error::OutOfRange {
                what: "iova outside the allowed ranges",
                value: iova,
            });
        }
        if let Some(r) = self.reserved.iter().find(|r| intersects(**r, (iova, end))) {
            return Err(Error::OutOfRange {
                what: "iova in a reserved range",
                value: r.0.max(iova),
            });
        }
        if let Some(a) = self
            .areas
            .iter()
            .find(|a| intersects((a.iova.0, a.end()), (iova, end)))
        {
            return Err(Error::Overlap {
                iova: a.iova.0.max(iova),
            });
        }
        Ok(end)
    }

    /// The lowest free IOVA with room for `len` bytes aligned to `align` (a
    /// power of two, at least 4 KiB), inside the allowed ranges and outside
    /// reserved ranges and mappings.
    pub fn alloc_iova(&self, len: u64, align: u64) -> Result<Iova, Error> {
        if !align.is_power_of_two() || align < PAGE_SIZE {
            return Err(Error::Unaligned {
                value: align,
                align: PAGE_SIZE,
            });
        }
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned {
                value: len,
                align: PAGE_SIZE,
            });
        }
        let whole = [(0u64, !(PAGE_SIZE - 1))];
        let windows: &[(u64, u64)] = if self.allowed.is_empty() {
            &whole
        } else {
            &self.allowed
        };
        let mut best: Option<u64> = None;
        for &(s, e) in windows {
            let mut at = s;
            // Each step moves past one obstacle, so this ends.
            while let Some(cand) = at.checked_next_multiple_of(align) {
                let Some(end) = cand.checked_add(len) else {
                    break;
                };
                if end > e {
                    break;
                }
                let blocker = self
                    .reserved
                    .iter()
                    .copied()
                    .chain(self.areas.iter().map(|a| (a.iova.0, a.end())))
                    .filter(|r| intersects(*r, (cand, end)))
                    .map(|r| r.1)
                    .max();
                match blocker {
                    None => {
                        best = Some(best.map_or(cand, |b| b.min(cand)));
                        break;
                    }
                    Some(next) => at = next,
                }
            }
        }
        best.map(Iova)
            .ok_or(Error::Exhausted { what: Object::Iova })
    }

    /// Map `[iova, iova + len)` to `paddr` in the IOAS and every paging
    /// domain mirroring it. All or nothing: if a domain refuses, the range is
    /// unmapped again from the domains that took it.
    pub fn map<D: IommuDriver, H: Hal + Clone, C: Capacities>(
        &mut self,
        core: &mut Iommu<D, H, C>,
        iova: Iova,
        paddr: PhysAddr,
        len: u64,
        prot: Prot,
    ) -> Result<(), Error> {
        let (iova, paddr) = (iova.0, paddr.0);
        self.check_free(iova, len)?;
        if !paddr.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned {
                value: paddr,
                align: PAGE_SIZE,
            });
        }
        if self.areas.is_full() {
            return Err(Error::Exhausted {
                what: Object::IoasMapping,
            });
        }
        for (i, &d) in self.hwpts.iter().enumerate() {
            if let Err(e) = core.map(d, Iova(iova), PhysAddr(paddr), len, prot) {
                // Domain `i` may hold the range too (a caching-mode flush
                // failed after the map).
                for &done in &self.hwpts[..=i] {
                    undo_map(core, done, Iova(iova), len);
                }
                return Err(e);
            }
        }
        let area = Area {
            iova: Iova(iova),
            paddr: PhysAddr(paddr),
            len,
            prot,
        };
        let at = self.areas.iter().position(|a| a.iova.0 > iova);
        // Room was checked above.
        let _ = match at {
            Some(i) => self.areas.insert(i, area),
            None => self.areas.push(area),
        };
        Ok(())
    }

    /// Unmap every mapping inside `[iova, iova + len)` from the IOAS and its
    /// domains (with IOTLB invalidation). A mapping that is only partly
    /// inside is refused (mappings are never split), as is a range with no
    /// mapping at all. Returns the bytes unmapped. If a domain's
    /// invalidation fails, the mappings are still removed everywhere and the
    /// first error is returned.
    pub fn unmap<D: IommuDriver, H: Hal + Clone, C: Capacities>(
        &mut self,
        core: &mut Iommu<D, H, C>,
        iova: Iova,
        len: u64,
    ) -> Result<u64, Error> {
        let iova = iova.0;
        let end = end_of(iova, len)?;
        let mut hit = false;
        for a in self
            .areas
            .iter()
            .filter(|a| intersects((a.iova.0, a.end()), (iova, end)))
        {
            if a.iova.0 < iova || a.end() > end {
                return Err(Error::SplitBlock {
                    iova: a.iova.0,
                    size: a.len,
                });
            }
            hit = true;
        }
        if !hit {
            return Err(Error::NotMapped { iova });
        }
        let mut first_err = None;
        let mut bytes = 0;
        while let Some(i) = self
            .areas
            .iter()
            .position(|a| a.iova.0 >= iova && a.end() <= end)
        {
            let a = self.areas.remove(i);
            for &d in &self.hwpts {
                if let Err(e) = core.unmap_sync(d, a.iova, a.len) {
                    first_err.get_or_insert(e);
                }
            }
            bytes += a.len;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(bytes),
        }
    }

    /// Make the paging domain `hwpt` mirror this IOAS: map every existing
    /// mapping into it (all or nothing).
    pub fn attach_hwpt<D: IommuDriver, H: Hal + Clone, C: Capacities>(
        &mut self,
        core: &mut Iommu<D, H, C>,
        hwpt: DomainId,
    ) -> Result<(), Error> {
        if core.domain_kind(hwpt)? != DomainKind::Paging {
            return Err(Error::Incompatible {
                what: "only paging domains mirror an IOAS",
            });
        }
        if self.hwpts.contains(&hwpt) {
            return Err(Error::Busy {
                what: "domain already mirrors this IOAS",
            });
        }
        if self.hwpts.is_full() {
            return Err(Error::Exhausted {
                what: Object::IoasDomain,
            });
        }
        for (i, a) in self.areas.iter().enumerate() {
            if let Err(e) = core.map(hwpt, a.iova, a.paddr, a.len, a.prot) {
                for b in &self.areas[..=i] {
                    undo_map(core, hwpt, b.iova, b.len);
                }
                return Err(e);
            }
        }
        // Room was checked above.
        let _ = self.hwpts.push(hwpt);
        Ok(())
    }

    /// Stop mirroring into `hwpt` (its mappings stay until it is freed).
    pub fn detach_hwpt(&mut self, hwpt: DomainId) -> Result<(), Error> {
        let i = self
            .hwpts
            .iter()
            .position(|d| *d == hwpt)
            .ok_or(Error::NotFound {
                what: Object::IoasDomain,
            })?;
        self.hwpts.remove(i);
        Ok(())
    }
}

/// Take back a map of `[iova, iova + len)` into `hwpt` made by a call that
/// is failing, if it got that far. Just mapped, so the unmap cannot be
/// refused; a failed sync leaks the gathered table pages rather than free
/// what the IOMMU may walk.
fn undo_map<D: IommuDriver, H: Hal + Clone, C: Capacities>(
    core: &mut Iommu<D, H, C>,
    hwpt: DomainId,
    iova: Iova,
    len: u64,
) {
    if core.iova_to_phys(hwpt, iova).ok().flatten().is_some() {
        let _ = core.unmap_sync(hwpt, iova, len);
    }
}

/// Allocate a paging HWPT for `dev` on `ioas`, filled with its mappings.
/// Dirty tracking is refused (`Unsupported`): the page-table engine does not
/// read and clear dirty bits yet.
pub fn alloc_hwpt_paging<
    D: IommuDriver,
    H: Hal + Clone,
    C: Capacities,
    const M: usize,
    const R: usize,
>(
    core: &mut Iommu<D, H, C>,
    ioas: &mut Ioas<M, R>,
    dev: DeviceId,
    flags: PagingFlags,
) -> Result<DomainId, Error> {
    if flags.contains(PagingFlags::DIRTY_TRACKING) {
        return Err(Error::Unsupported {
            what: "dirty tracking (no read-and-clear of dirty bits yet)",
        });
    }
    core.device(dev)?;
    if ioas.hwpts.is_full() {
        return Err(Error::Exhausted {
            what: Object::IoasDomain,
        });
    }
    let d = core.alloc_paging(dev, flags)?;
    if let Err(e) = ioas.attach_hwpt(core, d) {
        // Attached nowhere: freeing cannot be refused.
        let _ = core.free_domain(d);
        return Err(e);
    }
    Ok(d)
}

/// Free a paging HWPT that nothing is attached to, and take it off its IOAS.
pub fn free_hwpt_paging<
    D: IommuDriver,
    H: Hal + Clone,
    C: Capacities,
    const M: usize,
    const R: usize,
>(
    core: &mut Iommu<D, H, C>,
    ioas: &mut Ioas<M, R>,
    hwpt: DomainId,
) -> Result<(), Error> {
    if !ioas.hwpts.contains(&hwpt) {
        return Err(Error::NotFound {
            what: Object::IoasDomain,
        });
    }
    core.free_domain(hwpt)?;
    ioas.detach_hwpt(hwpt)
}

/// Allocate a nested HWPT on `parent` (a paging HWPT allocated with
/// [`PagingFlags::NEST_PARENT`]) from untrusted user data in the driver's
/// format `data_type` (iommufd's `enum iommu_hwpt_data_type`).
pub fn alloc_hwpt_nested<D: IommuDriver, H: Hal + Clone, C: Capacities>(
    core: &mut Iommu<D, H, C>,
    dev: DeviceId,
    parent: DomainId,
    data_type: u32,
    data: &[u8],
) -> Result<DomainId, Error> {
    core.alloc_nested(dev, parent, data_type, data)
}

/// Apply a user invalidation array to a nested HWPT (see
/// [`Iommu::invalidate_user`]).
pub fn invalidate_user<D: IommuDriver, H: Hal + Clone, C: Capacities>(
    core: &mut Iommu<D, H, C>,
    hwpt: DomainId,
    data_type: u32,
    data: &[u8],
    entry_len: usize,
    count: usize,
) -> Result<InvalidateOutcome, Error> {
    core.invalidate_user(hwpt, data_type, data, entry_len, count)
}

/// The raw capability registers of the IOMMU translating `dev`.
pub fn hw_info<D: IommuDriver, H: Hal + Clone, C: Capacities>(
    core: &Iommu<D, H, C>,
    dev: DeviceId,
) -> Result<HwInfo, Error> {
    core.hw_info(dev)
}
