//! Domains: allocation of paging domains over the page-table engine, their
//! driver state and tables, freeing, and mapping.

use crate::addr::{Iova, PhysAddr};
use crate::error::{Error, Object};
use crate::hal::Hal;
use crate::pgtable::{Gather, IoTable, Prot, TableFormat};

use super::config::{Capacities, VecStore};
use super::driver::{DeviceId, DeviceInfo, DomainDesc, DomainRequest, IommuDriver, PagingFlags};
use super::iommu::*;
use super::slots;
use super::sva::SpaceId;
use super::tags::{self, CacheTag, CacheTags};

/// `parent`, checked to be a nest-parent paging domain of `instance`.
pub(super) fn nest_parent<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &Domains<D, H, C>,
    parent: DomainId,
    instance: u16,
) -> Result<&Domain<D, H, C>, Error> {
    let not_parent = Error::Incompatible {
        what: "parent is not a nest-parent paging domain",
    };
    if parent.is_static() {
        return Err(not_parent);
    }
    let p = domain_ref(slots, parent)?;
    if p.instance != instance {
        return Err(Error::Incompatible {
            what: "parent belongs to another IOMMU instance",
        });
    }
    match p.data {
        Data::Paging { flags, .. } if flags.contains(PagingFlags::NEST_PARENT) => Ok(p),
        _ => Err(not_parent),
    }
}

/// The driver's view of a domain.
pub(super) fn describe<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &Domains<D, H, C>,
    id: DomainId,
) -> Result<DomainDesc<'_, D::DomainData, D::Format>, Error> {
    if id == DomainId::BLOCKED {
        return Ok(DomainDesc::Blocked);
    }
    if id == DomainId::IDENTITY {
        return Ok(DomainDesc::Identity);
    }
    let d = domain_ref(slots, id)?;
    Ok(match &d.data {
        Data::Paging { table, flags } => DomainDesc::Paging {
            hw: &d.hw,
            root: table.root_phys(),
            flags: *flags,
        },
        Data::Sva { desc, .. } => DomainDesc::Sva {
            hw: &d.hw,
            space: desc,
        },
        Data::Nested { parent } => {
            let p = domain_ref(slots, *parent)?;
            let Data::Paging { table, .. } = &p.data else {
                return Err(Error::NotFound {
                    what: Object::Domain,
                });
            };
            DomainDesc::Nested {
                hw: &d.hw,
                parent_hw: &p.hw,
                parent_root: table.root_phys(),
            }
        }
    })
}

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    pub(super) fn free_slot(&self) -> Result<usize, Error> {
        slots::vacant(self.slots.as_ref(), Object::Domain)
    }

    pub(super) fn install(&mut self, index: usize, domain: Domain<D, H, C>) -> DomainId {
        slots::fill(self.slots.as_mut(), index, domain)
    }

    /// Allocate a paging domain for `dev`'s IOMMU: an empty I/O page table in
    /// the format the driver chose. The domain can be attached to any device
    /// of that instance the driver accepts.
    pub fn alloc_paging(&mut self, dev: DeviceId, flags: PagingFlags) -> Result<DomainId, Error> {
        let info = self.device(dev)?;
        let index = self.free_slot()?;
        let hw = self
            .driver
            .domain_alloc(&info, &DomainRequest::Paging { flags })?;
        let table = match hw.format {
            Some(format) => format.build(self.hal.clone()),
            None => Err(Error::Unsupported {
                what: "a paging domain without a table format",
            }),
        };
        let table = match table {
            Ok(t) => t,
            Err(e) => {
                self.driver.domain_free(info.dev.instance, &hw);
                return Err(e);
            }
        };
        Ok(self.install(
            index,
            Domain {
                instance: info.dev.instance,
                hw,
                data: Data::Paging { table, flags },
                tags: CacheTags::new(),
                attached: 0,
                children: 0,
                fault: FaultTarget::None,
            },
        ))
    }

    pub(super) fn alloc_sva(
        &mut self,
        info: &DeviceInfo,
        space: SpaceId,
    ) -> Result<DomainId, Error> {
        let s = self.space_ref(space)?;
        let (desc, fault) = (s.desc, s.fault);
        if s.domains.is_full() {
            return Err(Error::Exhausted {
                what: Object::SpaceDomain,
            });
        }
        let index = self.free_slot()?;
        let hw = self
            .driver
            .domain_alloc(info, &DomainRequest::Sva { space: &desc })?;
        let id = self.install(
            index,
            Domain {
                instance: info.dev.instance,
                hw,
                data: Data::Sva { space, desc },
                tags: CacheTags::new(),
                attached: 0,
                children: 0,
                fault,
            },
        );
        if let Ok(s) = self.space_mut(space) {
            // Room was checked above.
            let _ = s.domains.push(id);
        }
        Ok(id)
    }

    /// Free a domain that is attached nowhere and parents no nested domain.
    /// Its table pages go back to the Hal.
    pub fn free_domain(&mut self, id: DomainId) -> Result<(), Error> {
        if id.is_static() {
            return Err(Error::Unsupported {
                what: "freeing the static Blocked / Identity domains",
            });
        }
        let d = domain_ref(self.slots.as_ref(), id)?;
        if d.attached != 0 {
            return Err(Error::Busy {
                what: "domain is attached",
            });
        }
        if d.children != 0 {
            return Err(Error::Busy {
                what: "domain is the parent of nested domains",
            });
        }
        let d = slots::take(self.slots.as_mut(), id)?;
        if let FaultTarget::Object(o) = d.fault {
            if let Ok(obj) = self.object_mut(o) {
                obj.users -= 1;
            }
        }
        match &d.data {
            Data::Nested { parent, .. } => {
                if let Ok(p) = domain_mut(self.slots.as_mut(), *parent) {
                    p.children -= 1;
                }
            }
            Data::Sva { space, .. } => {
                if let Ok(s) = self.space_mut(*space) {
                    s.domains.retain(|x| *x != id);
                }
            }
            Data::Paging { .. } => {}
        }
        for dev in self.devices.iter_mut() {
            if dev.virt.is_some_and(|(p, _)| p == id) {
                dev.virt = None;
            }
        }
        self.driver.domain_free(d.instance, &d.hw);
        // Dropping the domain frees its table.
        drop(d);
        Ok(())
    }

    /// Which kind a domain is.
    pub fn domain_kind(&self, id: DomainId) -> Result<DomainKind, Error> {
        if id == DomainId::BLOCKED {
            return Ok(DomainKind::Blocked);
        }
        if id == DomainId::IDENTITY {
            return Ok(DomainKind::Identity);
        }
        Ok(match domain_ref(self.slots.as_ref(), id)?.data {
            Data::Paging { .. } => DomainKind::Paging,
            Data::Sva { .. } => DomainKind::Sva,
            Data::Nested { .. } => DomainKind::Nested,
        })
    }

    /// The driver's state of a domain.
    pub fn domain_hw(&self, id: DomainId) -> Result<&Hw<D>, Error> {
        Ok(&domain_ref(self.slots.as_ref(), id)?.hw)
    }

    /// The IOMMU instance a domain belongs to.
    pub fn domain_instance(&self, id: DomainId) -> Result<u16, Error> {
        Ok(domain_ref(self.slots.as_ref(), id)?.instance)
    }

    /// The cache tags recorded on a domain (one per distinct tag).
    pub fn domain_tags(&self, id: DomainId) -> Result<impl Iterator<Item = &CacheTag>, Error> {
        Ok(domain_ref(self.slots.as_ref(), id)?.tags.iter())
    }

    /// How many attachments (RID or PASID) use a domain.
    pub fn domain_users(&self, id: DomainId) -> Result<u32, Error> {
        Ok(domain_ref(self.slots.as_ref(), id)?.attached)
    }

    /// Where a domain's faults go.
    pub fn set_fault_target(&mut self, id: DomainId, target: FaultTarget) -> Result<(), Error> {
        if let FaultTarget::Object(o) = target {
            self.object_ref(o)?;
        }
        let d = domain_mut(self.slots.as_mut(), id)?;
        let old = core::mem::replace(&mut d.fault, target);
        if let FaultTarget::Object(o) = old {
            if let Ok(obj) = self.object_mut(o) {
                obj.users -= 1;
            }
        }
        if let FaultTarget::Object(o) = target {
            if let Ok(obj) = self.object_mut(o) {
                obj.users += 1;
            }
        }
        Ok(())
    }

    pub(super) fn table_mut(&mut self, id: DomainId) -> Result<(&mut TableOf<D, H>, u16), Error> {
        let unsupported = Error::Unsupported {
            what: "mapping into a domain without an I/O page table",
        };
        // Blocked / Identity exist (they are not "not found") but have no table.
        if id.is_static() {
            return Err(unsupported);
        }
        let d = domain_mut(self.slots.as_mut(), id)?;
        match &mut d.data {
            Data::Paging { table, .. } => Ok((table, d.instance)),
            _ => Err(unsupported),
        }
    }

    /// Map `[iova, iova + len)` to `paddr` in a paging domain. Under caching
    /// mode the new range is invalidated too, paging-structure caches
    /// included (VT-d IH clear, as Linux does); if that invalidation fails the
    /// mapping stays and the hardware error is returned.
    pub fn map(
        &mut self,
        id: DomainId,
        iova: Iova,
        paddr: PhysAddr,
        len: u64,
        prot: Prot,
    ) -> Result<(), Error> {
        let (table, instance) = self.table_mut(id)?;
        table.map(iova, paddr, len, prot)?;
        if self.driver.flush_on_map(instance) {
            let d = domain_ref(self.slots.as_ref(), id)?;
            // New table pages may hang under entries the unit cached as
            // not present: its paging-structure caches go too.
            tags::flush(
                d.tags.iter(),
                Some((iova.0, iova.0 + len)),
                crate::hal::PAGE_SIZE,
                true,
                &mut self.driver,
            )?;
        }
        Ok(())
    }

    /// Unmap `[iova, iova + len)` from a paging domain into `gather`; the
    /// IOTLB may still hold the range until [`sync`](Self::sync). Refused
    /// (`Busy`) over a direct-mapped region of a device attached at the
    /// domain's requester ID.
    pub fn unmap(
        &mut self,
        id: DomainId,
        iova: Iova,
        len: u64,
        gather: &mut Gather,
    ) -> Result<(), Error> {
        self.check_direct_unmap(id, iova.0, len)?;
        let (table, _) = self.table_mut(id)?;
        table.unmap(iova, len, gather)
    }

    /// Invalidate what `gather` covers through every cache tag of the domain
    /// (one batch and one wait per instance; a nested parent's tags reach its
    /// nested domains), then free the gathered table pages. On error nothing
    /// is freed and the gather can be synced again.
    pub fn sync(&mut self, id: DomainId, gather: &mut Gather) -> Result<(), Error> {
        let d = domain_ref(self.slots.as_ref(), id)?;
        tags::sync(&d.tags, gather, &mut self.driver, &self.hal)
    }

    /// [`unmap`](Self::unmap) then [`sync`](Self::sync). If the sync fails
    /// the range is unmapped but its freed table pages are leaked (never
    /// freed while the IOMMU might walk them) and the error returned.
    pub fn unmap_sync(&mut self, id: DomainId, iova: Iova, len: u64) -> Result<(), Error> {
        let mut gather = Gather::new();
        self.unmap(id, iova, len, &mut gather)?;
        self.sync(id, &mut gather)
    }

    /// What `iova` translates to in a paging domain.
    pub fn iova_to_phys(&self, id: DomainId, iova: Iova) -> Result<Option<PhysAddr>, Error> {
        let unsupported = Error::Unsupported {
            what: "lookups in a domain without an I/O page table",
        };
        if id.is_static() {
            return Err(unsupported);
        }
        match &domain_ref(self.slots.as_ref(), id)?.data {
            Data::Paging { table, .. } => Ok(table.iova_to_phys(iova)),
            _ => Err(unsupported),
        }
    }
}
