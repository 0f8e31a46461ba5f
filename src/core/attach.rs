//! Attachments: a domain at a device's requester ID or at one of its
//! PASIDs, replaced in one step, with the cache tags each attachment records.

use heapless::Vec;

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::domain::describe;
use super::driver::{DeviceId, DeviceInfo, IommuDriver};
use super::iommu::*;
use super::tags::{CacheTag, TagKind};

/// Tags an attachment of `id` at (`info`, `pasid`) records, and on which
/// domain: the domain's IOTLB (and device TLB with ATS); for a nested
/// domain also its parent, whose unmaps reach the nested translations.
pub(super) type TagList = Vec<(DomainId, CacheTag), 4>;

pub(super) fn tags_for<H: Hal, P>(
    slots: &Domains<H, P>,
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

pub(super) fn add_tags<H: Hal, P>(slots: &mut Domains<H, P>, list: &TagList) -> Result<(), Error> {
    for (i, (id, tag)) in list.iter().enumerate() {
        let r = domain_mut(slots, *id).and_then(|d| d.tags.add(*tag));
        if let Err(e) = r {
            remove_tags(slots, &list[..i]);
            return Err(e);
        }
    }
    Ok(())
}

pub(super) fn remove_tags<H: Hal, P>(slots: &mut Domains<H, P>, list: &[(DomainId, CacheTag)]) {
    for (id, tag) in list {
        if let Ok(d) = domain_mut(slots, *id) {
            // Recorded by the matching add: cannot be missing.
            let _ = d.tags.remove(tag);
        }
    }
}

pub(super) fn count_attach<H: Hal, P>(slots: &mut Domains<H, P>, id: DomainId, up: bool) {
    if let Ok(d) = domain_mut(slots, id) {
        if up {
            d.attached += 1;
        } else {
            d.attached = d.attached.saturating_sub(1);
        }
    }
}

impl<D: IommuDriver, H: Hal + Clone, const DOMAINS: usize, const DEVICES: usize>
    Iommu<D, H, DOMAINS, DEVICES>
{
    /// What is attached at `dev`'s requester ID (`pasid` `None`) or at a
    /// PASID (`None` if nothing is).
    pub fn attached(&self, dev: DeviceId, pasid: Option<u32>) -> Result<Option<DomainId>, Error> {
        Ok(self.devices[self.device_index(dev)?].domain_at(pasid))
    }

    /// Make `dev`'s requester ID translate through `domain`, replacing what
    /// was attached in one step (the driver sees old and new).
    pub fn attach(&mut self, dev: DeviceId, domain: DomainId) -> Result<(), Error> {
        self.attach_at(dev, None, domain)
    }

    /// Leave `dev`'s requester ID Blocked.
    pub fn detach(&mut self, dev: DeviceId) -> Result<(), Error> {
        self.attach_at(dev, None, DomainId::BLOCKED)
    }

    /// Make `dev` translate requests tagged with `pasid` through `domain`
    /// (any kind), replacing what was attached there in one step. The PASID
    /// must come from the global allocator and fit the device's width.
    pub fn attach_pasid(
        &mut self,
        dev: DeviceId,
        pasid: u32,
        domain: DomainId,
    ) -> Result<(), Error> {
        self.attach_at(dev, Some(pasid), domain)
    }

    pub(super) fn check_attachable(
        &self,
        id: DomainId,
        info: &DeviceInfo,
        pasid: Option<u32>,
    ) -> Result<(), Error> {
        if id.is_static() {
            return Ok(());
        }
        let d = domain_ref(&self.slots, id)?;
        if d.instance != info.dev.instance {
            return Err(Error::Incompatible {
                what: "domain belongs to another IOMMU instance",
            });
        }
        if pasid.is_none() && matches!(d.data, Data::Sva { .. }) {
            return Err(Error::Incompatible {
                what: "an SVA domain attaches at a PASID only",
            });
        }
        Ok(())
    }

    pub(super) fn attach_at(
        &mut self,
        dev: DeviceId,
        pasid: Option<u32>,
        new: DomainId,
    ) -> Result<(), Error> {
        let di = self.device_index(dev)?;
        let info = self.devices[di].info;
        if let Some(p) = pasid {
            self.check_pasid(&info, p)?;
        }
        self.check_attachable(new, &info, pasid)?;
        let entry = pasid.and_then(|p| self.devices[di].pasids.iter().position(|(q, _)| *q == p));
        let old = match (pasid, entry) {
            (None, _) => self.devices[di].rid,
            (Some(_), Some(i)) => self.devices[di].pasids[i].1,
            (Some(_), None) => DomainId::BLOCKED,
        };
        if pasid.is_some() && entry.is_none() && self.devices[di].pasids.is_full() {
            return Err(Error::Exhausted {
                what: Object::Attachment,
            });
        }
        if old == new && (pasid.is_none() || entry.is_some()) {
            return Ok(());
        }
        let new_tags = tags_for(&self.slots, new, &info, pasid)?;
        let old_tags = tags_for(&self.slots, old, &info, pasid)?;
        add_tags(&mut self.slots, &new_tags)?;
        let done = describe(&self.slots, new).and_then(|n| {
            let o = describe(&self.slots, old)?;
            self.driver.attach(&info, pasid, &n, &o)
        });
        if let Err(e) = done {
            remove_tags(&mut self.slots, &new_tags);
            return Err(e);
        }
        remove_tags(&mut self.slots, &old_tags);
        count_attach(&mut self.slots, new, true);
        count_attach(&mut self.slots, old, false);
        let d = &mut self.devices[di];
        match (pasid, entry) {
            (None, _) => d.rid = new,
            (Some(_), Some(i)) => d.pasids[i].1 = new,
            // Room was checked above.
            (Some(p), None) => {
                let _ = d.pasids.push((p, new));
            }
        }
        Ok(())
    }

    /// Remove what is attached at `pasid` of `dev`; requests with that PASID
    /// then fault.
    pub fn detach_pasid(&mut self, dev: DeviceId, pasid: u32) -> Result<(), Error> {
        let di = self.device_index(dev)?;
        let info = self.devices[di].info;
        let i = self.devices[di]
            .pasids
            .iter()
            .position(|(q, _)| *q == pasid)
            .ok_or(Error::NotFound {
                what: Object::Attachment,
            })?;
        let old = self.devices[di].pasids[i].1;
        let old_tags = tags_for(&self.slots, old, &info, Some(pasid))?;
        let o = describe(&self.slots, old)?;
        self.driver.detach_pasid(&info, pasid, &o)?;
        remove_tags(&mut self.slots, &old_tags);
        count_attach(&mut self.slots, old, false);
        self.devices[di].pasids.swap_remove(i);
        Ok(())
    }
}
