//! Attachments: a domain at a device's requester ID or at one of its
//! PASIDs, replaced in one step, with the cache tags each attachment records.

use heapless::Vec;

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::config::{Capacities, VecStore};
use super::direct::Regions;
use super::domain::describe;
use super::driver::{DeviceId, DeviceInfo, IommuDriver};
use super::fault::Retired;
use super::iommu::*;
use super::tags::{CacheTag, TagKind};

/// Tags an attachment of `id` at (`info`, `pasid`) records, and on which
/// domain: the domain's IOTLB (and device TLB with ATS); for a nested
/// domain also its parent, whose unmaps reach the nested translations.
pub(super) type TagList = Vec<(DomainId, CacheTag), 4>;

pub(super) fn tags_for<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &Domains<D, H, C>,
    id: DomainId,
    info: &DeviceInfo,
    pasid: Option<u32>,
) -> Result<TagList, Error> {
    let mut list = TagList::new();
    if id.is_static() {
        return Ok(list);
    }
    let d = domain_ref(slots, id)?;
    let tag = |kind| CacheTag {
        instance: info.dev.instance,
        id: d.hw.tag,
        pasid,
        device: info.dev.id,
        kind,
    };
    // Four entries at most: the pushes cannot fail.
    let _ = list.push((id, tag(TagKind::Iotlb)));
    if info.ats {
        let _ = list.push((id, tag(TagKind::DevTlb)));
    }
    if let Data::Nested { parent, .. } = d.data {
        let _ = list.push((parent, tag(TagKind::NestedParent)));
        if info.ats {
            let _ = list.push((parent, tag(TagKind::DevTlb)));
        }
    }
    Ok(list)
}

pub(super) fn add_tags<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &mut Domains<D, H, C>,
    list: &TagList,
) -> Result<(), Error> {
    for (i, (id, tag)) in list.iter().enumerate() {
        let r = domain_mut(slots, *id).and_then(|d| d.tags.add(*tag));
        if let Err(e) = r {
            remove_tags(slots, &list[..i]);
            return Err(e);
        }
    }
    Ok(())
}

pub(super) fn remove_tags<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &mut Domains<D, H, C>,
    list: &[(DomainId, CacheTag)],
) {
    for (id, tag) in list {
        if let Ok(d) = domain_mut(slots, *id) {
            // Recorded by the matching add: cannot be missing.
            let _ = d.tags.remove(tag);
        }
    }
}

pub(super) fn count_attach<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &mut Domains<D, H, C>,
    id: DomainId,
    up: bool,
) {
    if let Ok(d) = domain_mut(slots, id) {
        if up {
            d.attached += 1;
        } else {
            d.attached = d.attached.saturating_sub(1);
        }
    }
}

/// Who changes an attachment: the embedder through the public calls, or an
/// SVA bond (bind, unbind, teardown), which owns what it attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    Embedder,
    Bond,
}

/// What an attachment change did: `Ok(None)` done and its old faults
/// flushed; `Ok(Some(e))` done, but flushing the faults raised before it
/// failed with `e` (they are flushed by a later call); `Err(e)` nothing done.
pub(super) type Changed = Result<Option<Error>, Error>;

/// A public call's result from a [`Changed`]: a failed flush is its error.
pub(super) fn flushed(changed: Changed) -> Result<(), Error> {
    match changed {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(e),
    }
}

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    /// What is attached at `dev`'s requester ID (`pasid` `None`) or at a
    /// PASID (`None` if nothing is).
    pub fn attached(&self, dev: DeviceId, pasid: Option<u32>) -> Result<Option<DomainId>, Error> {
        Ok(self.devices[self.device_index(dev)?].domain_at(pasid))
    }

    /// Make `dev`'s requester ID translate through `domain`, replacing what
    /// was attached in one step (the driver sees old and new).
    ///
    /// When it returns, no fault raised before the call reaches a handler
    /// any more (see [`Iommu`]'s life cycle): the device's faults were
    /// flushed, those of the old attachment answered `Invalid` or dropped.
    /// Refused (`Busy`) while a whole-device SVA bond owns the requester ID.
    /// If the hardware change was made but the flush failed, the change
    /// stands and the flush error is returned; the old faults are flushed by
    /// a later call.
    pub fn attach(&mut self, dev: DeviceId, domain: DomainId) -> Result<(), Error> {
        flushed(self.attach_as(dev, None, domain, Owner::Embedder))
    }

    /// Leave `dev`'s requester ID Blocked (as [`attach`](Self::attach) of
    /// [`DomainId::BLOCKED`]).
    pub fn detach(&mut self, dev: DeviceId) -> Result<(), Error> {
        self.attach(dev, DomainId::BLOCKED)
    }

    /// Make `dev` translate requests tagged with `pasid` through `domain`
    /// (any kind; an SVA domain only at its own address space's PASID),
    /// replacing what was attached there in one step. The PASID must come
    /// from the global allocator and fit the device's width. Refused
    /// (`Busy`) while an SVA bond owns the attachment at `pasid`, or while a
    /// nested domain whose guest owns the device's PASIDs is attached at its
    /// requester ID. Faults are flushed as for [`attach`](Self::attach).
    pub fn attach_pasid(
        &mut self,
        dev: DeviceId,
        pasid: u32,
        domain: DomainId,
    ) -> Result<(), Error> {
        flushed(self.attach_as(dev, Some(pasid), domain, Owner::Embedder))
    }

    /// Remove what is attached at `pasid` of `dev`; requests with that PASID
    /// then fault. Refused (`Busy`) while an SVA bond owns the attachment
    /// (unbind it instead). Faults are flushed as for
    /// [`attach`](Self::attach): when it returns, every page-request group
    /// raised at that PASID has been answered once, partial groups are
    /// discarded, and none reaches a handler afterwards.
    pub fn detach_pasid(&mut self, dev: DeviceId, pasid: u32) -> Result<(), Error> {
        flushed(self.detach_as(dev, pasid, Owner::Embedder))
    }

    pub(super) fn check_attachable(
        &self,
        id: DomainId,
        info: &DeviceInfo,
        pasid: Option<u32>,
        owner: Owner,
    ) -> Result<(), Error> {
        if id.is_static() {
            return Ok(());
        }
        let d = domain_ref(self.slots.as_ref(), id)?;
        if d.instance != info.dev.instance {
            return Err(Error::Incompatible {
                what: "domain belongs to another IOMMU instance",
            });
        }
        // A bond attaches at its space's PASID (the first bind is taking it
        // now) or, for a whole device, at the RID; the embedder only at the
        // space's PASID.
        if let (Data::Sva { space, .. }, Owner::Embedder) = (&d.data, owner) {
            let own = self.space_ref(*space)?.pasid.map(|p| p.get());
            if pasid.is_none() || own != pasid {
                return Err(Error::Incompatible {
                    what: "an SVA domain attaches at its address space's PASID only",
                });
            }
        }
        Ok(())
    }

    /// Refused (`Busy`) when the embedder would change what a bond owns.
    fn check_owner(&self, di: usize, pasid: Option<u32>, owner: Owner) -> Result<(), Error> {
        if owner == Owner::Embedder && self.devices[di].bonded(pasid) {
            return Err(Error::Busy {
                what: "an SVA bond owns this attachment (unbind it)",
            });
        }
        Ok(())
    }

    /// Whether the domain at `dev`'s requester ID takes its PASID-tagged
    /// traffic too (a nested domain whose guest owns the PASIDs).
    pub(super) fn rid_takes_pasids(&self, di: usize) -> bool {
        let rid = self.devices[di].rid;
        !rid.is_static() && domain_ref(self.slots.as_ref(), rid).is_ok_and(|d| d.hw.user_pasids)
    }

    /// Before a change at `dev`: flush what earlier changes of the device
    /// left unflushed (refusing the change if that still fails, so old and
    /// new faults are never mixed), and keep room to record this change as
    /// unflushed if its own flush fails.
    fn prepare_change(&mut self, dev: DeviceId) -> Result<(), Error> {
        self.retry_unflushed(|r| r.dev == dev)?;
        if self.unflushed.is_full() {
            return Err(Error::Exhausted {
                what: Object::UnflushedAttachment,
            });
        }
        Ok(())
    }

    pub(super) fn attach_as(
        &mut self,
        dev: DeviceId,
        pasid: Option<u32>,
        new: DomainId,
        owner: Owner,
    ) -> Changed {
        let di = self.device_index(dev)?;
        let info = self.devices[di].info;
        if let Some(p) = pasid {
            self.check_pasid(&info, p)?;
            if self.rid_takes_pasids(di) {
                return Err(Error::Busy {
                    what: "the guest owns this device's PASIDs (nested domain at its requester ID)",
                });
            }
        }
        self.check_owner(di, pasid, owner)?;
        self.check_attachable(new, &info, pasid, owner)?;
        let entry = pasid.and_then(|p| self.devices[di].pasids.iter().position(|a| a.pasid == p));
        let old = match (pasid, entry) {
            (None, _) => self.devices[di].rid,
            (Some(_), Some(i)) => self.devices[di].pasids[i].domain,
            (Some(_), None) => DomainId::BLOCKED,
        };
        if pasid.is_some() && entry.is_none() && self.devices[di].pasids.is_full() {
            return Err(Error::Exhausted {
                what: Object::Attachment,
            });
        }
        if old == new && (pasid.is_none() || entry.is_some()) {
            return Ok(None);
        }
        let takes_pasids = !new.is_static() && domain_ref(self.slots.as_ref(), new)?.hw.user_pasids;
        if pasid.is_none() && takes_pasids && !self.devices[di].pasids.is_empty() {
            return Err(Error::Busy {
                what: "a domain owning the device's PASIDs needs them all detached",
            });
        }
        self.prepare_change(dev)?;
        let new_tags = tags_for(self.slots.as_ref(), new, &info, pasid)?;
        let old_tags = tags_for(self.slots.as_ref(), old, &info, pasid)?;
        // The device's direct regions are in the new domain before it
        // translates through it.
        let direct = match pasid {
            None => self.map_direct(&info, new)?,
            Some(_) => Regions::new(),
        };
        if let Err(e) = add_tags(self.slots.as_mut(), &new_tags) {
            self.unmap_direct(new, &direct);
            return Err(e);
        }
        let done = describe(self.slots.as_ref(), new).and_then(|n| {
            let o = describe(self.slots.as_ref(), old)?;
            self.driver.attach(&info, pasid, &n, &o)
        });
        if let Err(e) = done {
            remove_tags(self.slots.as_mut(), &new_tags);
            self.unmap_direct(new, &direct);
            return Err(e);
        }
        // Faults raised before the change still see the old state.
        let retired = Retired::at(&self.devices[di], pasid, self.rid_takes_pasids(di));
        let settled = self.settle(&retired);
        remove_tags(self.slots.as_mut(), &old_tags);
        count_attach(self.slots.as_mut(), new, true);
        count_attach(self.slots.as_mut(), old, false);
        let bond = owner == Owner::Bond;
        let d = &mut self.devices[di];
        match (pasid, entry) {
            (None, _) => {
                d.rid = new;
                d.rid_bond = bond && new != DomainId::BLOCKED;
            }
            (Some(_), Some(i)) => {
                d.pasids[i].domain = new;
                d.pasids[i].bond = bond;
            }
            // Room was checked above.
            (Some(p), None) => {
                let _ = d.pasids.push(Attachment {
                    pasid: p,
                    domain: new,
                    bond,
                });
            }
        }
        Ok(self.unsettled(retired, settled))
    }

    pub(super) fn detach_as(&mut self, dev: DeviceId, pasid: u32, owner: Owner) -> Changed {
        let di = self.device_index(dev)?;
        let info = self.devices[di].info;
        let i = self.devices[di]
            .pasids
            .iter()
            .position(|a| a.pasid == pasid)
            .ok_or(Error::NotFound {
                what: Object::Attachment,
            })?;
        self.check_owner(di, Some(pasid), owner)?;
        let old = self.devices[di].pasids[i].domain;
        let old_tags = tags_for(self.slots.as_ref(), old, &info, Some(pasid))?;
        self.prepare_change(dev)?;
        let o = describe(self.slots.as_ref(), old)?;
        self.driver.detach_pasid(&info, pasid, &o)?;
        let retired = Retired::at(&self.devices[di], Some(pasid), false);
        let settled = self.settle(&retired);
        remove_tags(self.slots.as_mut(), &old_tags);
        count_attach(self.slots.as_mut(), old, false);
        self.devices[di].pasids.swap_remove(i);
        Ok(self.unsettled(retired, settled))
    }

    /// After a change: a failed flush leaves `retired` to flush later.
    fn unsettled(&mut self, retired: Retired<C>, settled: Result<(), Error>) -> Option<Error> {
        let e = settled.err()?;
        // Room was kept by `prepare_change`.
        let _ = self.unflushed.push(retired);
        Some(e)
    }
}
