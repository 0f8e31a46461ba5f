//! Nested translation: user-managed stage-1 domains on a stage-2 parent,
//! allocated from user data the driver validates, the virtual device IDs a
//! guest names its devices by, and user cache invalidations.

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::config::Capacities;
use super::domain::{describe, nest_parent};
use super::driver::{DeviceId, DomainRequest, IommuDriver};
use super::iommu::*;
use super::tags::CacheTags;
use super::user::{InvalidateOutcome, UserArray, UserData, VirtualIds};

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    /// Allocate a nested domain on `parent` (a paging domain allocated with
    /// [`PagingFlags::NEST_PARENT`](super::PagingFlags::NEST_PARENT)) from untrusted user data in the
    /// driver's format `data_type`. The driver validates every field against
    /// the instance's nesting capabilities; the core never reads the bytes.
    pub fn alloc_nested(
        &mut self,
        dev: DeviceId,
        parent: DomainId,
        data_type: u32,
        data: &[u8],
    ) -> Result<DomainId, Error> {
        let info = self.device(dev)?;
        let p = nest_parent(self.slots.as_ref(), parent, info.dev.instance)?;
        let index = self.free_slot()?;
        let hw = self.driver.domain_alloc(
            &info,
            &DomainRequest::Nested {
                parent: &p.hw,
                data: UserData {
                    data_type,
                    bytes: data,
                },
            },
        )?;
        let id = self.install(
            index,
            Domain {
                instance: info.dev.instance,
                hw,
                data: Data::Nested { parent },
                tags: CacheTags::new(),
                attached: 0,
                children: 0,
                fault: FaultTarget::None,
            },
        );
        if let Ok(p) = domain_mut(self.slots.as_mut(), parent) {
            p.children += 1;
        }
        Ok(id)
    }

    /// Give `dev` the ID a guest knows it by (a virtual StreamID) under the
    /// nest parent `parent` (the guest's stage 2). User invalidations of
    /// nested domains on that parent that name a device (SMMUv3 `CFGI_CD`,
    /// `CFGI_CD_ALL`, `ATC_INV`) must use it; they reach the device's real
    /// ID, and no other device. Refused (`Busy`) when the device already has
    /// one or another device has `virtual_id` under the same parent.
    pub fn set_virtual_id(
        &mut self,
        dev: DeviceId,
        parent: DomainId,
        virtual_id: u32,
    ) -> Result<(), Error> {
        let di = self.device_index(dev)?;
        nest_parent(self.slots.as_ref(), parent, dev.instance)?;
        if self.devices[di].virt.is_some() {
            return Err(Error::Busy {
                what: "device already has a virtual ID",
            });
        }
        if self
            .devices
            .iter()
            .any(|d| d.virt == Some((parent, virtual_id)))
        {
            return Err(Error::Busy {
                what: "virtual ID already used under this parent",
            });
        }
        self.devices[di].virt = Some((parent, virtual_id));
        Ok(())
    }

    /// Forget `dev`'s virtual ID (`NotFound` if it has none).
    pub fn clear_virtual_id(&mut self, dev: DeviceId) -> Result<(), Error> {
        let di = self.device_index(dev)?;
        self.devices[di]
            .virt
            .take()
            .map(|_| ())
            .ok_or(Error::NotFound {
                what: Object::VirtualId,
            })
    }

    /// `dev`'s virtual ID and the parent it is under.
    pub fn virtual_id(&self, dev: DeviceId) -> Result<Option<(DomainId, u32)>, Error> {
        Ok(self.devices[self.device_index(dev)?].virt)
    }

    /// Apply an array of untrusted user invalidations (`count` entries of
    /// `entry_len` bytes, in the driver's format `data_type`) to a nested
    /// domain. The driver validates and queues the entries in order up to
    /// the first bad one, resolving device IDs through the virtual IDs given
    /// under the domain's parent (see [`set_virtual_id`](Self::set_virtual_id));
    /// the core then waits once. The outcome says how many were handled and
    /// the index of the first bad entry; if the final wait fails, its error
    /// is reported at index `handled`.
    pub fn invalidate_user(
        &mut self,
        id: DomainId,
        data_type: u32,
        data: &[u8],
        entry_len: usize,
        count: usize,
    ) -> Result<InvalidateOutcome, Error> {
        let not_nested = Error::Incompatible {
            what: "user invalidation needs a nested domain",
        };
        if id.is_static() {
            return Err(not_nested);
        }
        let d = domain_ref(self.slots.as_ref(), id)?;
        let (instance, Data::Nested { parent }) = (d.instance, &d.data) else {
            return Err(not_nested);
        };
        let guest = GuestIds {
            devices: &self.devices,
            instance,
            parent: *parent,
        };
        let desc = describe(self.slots.as_ref(), id)?;
        let array = UserArray {
            data_type,
            data,
            entry_len,
            count,
        };
        let tags = d.tags.view();
        let mut outcome = self.driver.invalidate_user(&desc, tags, &array, &guest);
        if outcome.handled > 0 {
            if let Err(e) = self.driver.wait(instance) {
                if outcome.error.is_none() {
                    outcome.error = Some((outcome.handled, e));
                }
            }
        }
        Ok(outcome)
    }
}

/// The virtual IDs of one guest: devices of `instance` given an ID under the
/// nest parent `parent`.
pub(super) struct GuestIds<'a, C: Capacities> {
    devices: &'a [Device<C>],
    instance: u16,
    parent: DomainId,
}

impl<C: Capacities> VirtualIds for GuestIds<'_, C> {
    fn resolve(&self, virtual_id: u32) -> Option<u32> {
        self.devices
            .iter()
            .find(|d| {
                d.info.dev.instance == self.instance && d.virt == Some((self.parent, virtual_id))
            })
            .map(|d| d.info.dev.id)
    }
}
