//! The core object and its state: instances, devices, the global PASID
//! allocator and the tables of domains, address spaces, bonds and fault
//! objects. What it does with them is split by concern: `domain` (allocation
//! and mapping), `attach`, `sva` (bonds), `nested`, `fault` (routing and
//! fault objects).

use crate::error::{Error, Object};
use crate::hal::Hal;
use crate::pgtable::TableFormat;

use super::config::{ArrayStore, Capacities, Caps, VecStore};
use super::driver::{DeviceId, DeviceInfo, DomainHw, HwInfo, IommuDriver, PagingFlags};
use super::fault::Retired;
use super::iopf::{Fault, FaultKind, FaultQueue, FaultResponder, GroupKey, Response};
use super::pasid::{Pasid, PasidAllocator};
use super::slots::{self, Cell, Slot};
use super::sva::{AddressSpace, SpaceId};
use super::tags::{CacheTag, CacheTags};

/// Names a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DomainId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

impl DomainId {
    /// The Blocked domain: DMA is refused. Shared by every instance; never
    /// allocated or freed. A device starts (and ends, after detach) here.
    pub const BLOCKED: DomainId = DomainId {
        index: u16::MAX,
        generation: 0,
    };
    /// The Identity domain: DMA addresses are physical. Shared by every
    /// instance; never allocated or freed.
    pub const IDENTITY: DomainId = DomainId {
        index: u16::MAX - 1,
        generation: 0,
    };

    /// Whether this is `BLOCKED` or `IDENTITY`: shared by every instance,
    /// with no table and no driver state.
    pub fn is_static(self) -> bool {
        self == DomainId::BLOCKED || self == DomainId::IDENTITY
    }
}

/// Which kind a domain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// DMA refused.
    Blocked,
    /// DMA untranslated.
    Identity,
    /// An I/O page table owned by the core.
    Paging,
    /// A CPU page table (shared virtual addressing).
    Sva,
    /// A user stage-1 on a paging parent.
    Nested,
}

/// A fault handler: a function and the value it is called with.
#[derive(Clone, Copy, Debug)]
pub struct FaultHandler {
    /// Called with `cookie`, the domain, and one complete group (or one
    /// unrecoverable event). Its answer is sent once for the group (never
    /// for events).
    pub func: fn(cookie: usize, domain: DomainId, group: &[Fault]) -> Response,
    /// Passed back to `func`.
    pub cookie: usize,
}

/// Where a domain's faults go.
#[derive(Clone, Copy, Debug, Default)]
pub enum FaultTarget {
    /// Nowhere: page requests are answered `Invalid`, events counted and
    /// dropped.
    #[default]
    None,
    /// A handler answering at once.
    Handler(FaultHandler),
    /// A fault object: the user reads the faults and answers later by cookie.
    Object(FaultObjectId),
}

/// Names a fault object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultObjectId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

/// A fault as a fault object hands it out: answer its group with the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserFault {
    /// Names the group in [`Iommu::fault_respond`].
    pub cookie: u32,
    /// The fault.
    pub fault: Fault,
}

/// The driver's state of a domain.
pub(super) type Hw<D> = DomainHw<<D as IommuDriver>::DomainData, <D as IommuDriver>::Format>;

/// A paging domain's table, in the format its driver chose.
pub(super) type TableOf<D, H> = <<D as IommuDriver>::Format as TableFormat>::Table<H>;

/// What a domain translates through.
pub(super) enum Data<D: IommuDriver, H: Hal> {
    Paging {
        table: TableOf<D, H>,
        flags: PagingFlags,
    },
    Sva {
        space: SpaceId,
        desc: AddressSpace,
    },
    Nested {
        parent: DomainId,
    },
}

pub(super) struct Domain<D: IommuDriver, H: Hal, C: Capacities> {
    pub(super) instance: u16,
    pub(super) hw: Hw<D>,
    pub(super) data: Data<D, H>,
    pub(super) tags: CacheTags<C::DomainTags<(CacheTag, u32)>>,
    /// Attachments (RID or PASID) using it.
    pub(super) attached: u32,
    /// Nested domains using it as parent.
    pub(super) children: u32,
    pub(super) fault: FaultTarget,
}

/// A domain attached at one PASID of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Attachment {
    pub(super) pasid: u32,
    pub(super) domain: DomainId,
    /// An SVA bond made it and owns it: only unbind changes it.
    pub(super) bond: bool,
}

pub(super) struct Device<C: Capacities> {
    pub(super) info: DeviceInfo,
    pub(super) rid: DomainId,
    /// A whole-device SVA bond owns the requester ID's attachment.
    pub(super) rid_bond: bool,
    pub(super) pasids: C::DevicePasids<Attachment>,
    /// The ID a guest knows the device by, under a nest parent (the guest's
    /// stage 2): user invalidations naming a device use it.
    pub(super) virt: Option<(DomainId, u32)>,
}

impl<C: Capacities> Device<C> {
    /// What is attached at the requester ID (`None`) or at a PASID.
    pub(super) fn domain_at(&self, pasid: Option<u32>) -> Option<DomainId> {
        match pasid {
            None => Some(self.rid),
            Some(p) => self.attachment(p).map(|a| a.domain),
        }
    }

    /// The attachment at PASID `pasid`.
    pub(super) fn attachment(&self, pasid: u32) -> Option<&Attachment> {
        self.pasids.iter().find(|a| a.pasid == pasid)
    }

    /// Whether a bond owns the attachment at `pasid` (`None`: the RID).
    pub(super) fn bonded(&self, pasid: Option<u32>) -> bool {
        match pasid {
            None => self.rid_bond,
            Some(p) => self.attachment(p).is_some_and(|a| a.bond),
        }
    }
}

pub(super) struct SpaceState<C: Capacities> {
    pub(super) desc: AddressSpace,
    pub(super) pasid: Option<Pasid>,
    pub(super) domains: C::SpaceDomains<DomainId>,
    pub(super) fault: FaultTarget,
}

#[derive(Clone, Copy)]
pub(super) struct Bond {
    pub(super) dev: DeviceId,
    pub(super) space: SpaceId,
    pub(super) domain: DomainId,
    /// Where it is attached: the space's PASID, or the requester ID for a
    /// whole-device bond.
    pub(super) pasid: Option<u32>,
    pub(super) users: u32,
}

pub(super) struct Pending<C: Capacities> {
    pub(super) cookie: u32,
    pub(super) faults: C::GroupFaults<Fault>,
    pub(super) read: bool,
}

impl<C: Capacities> Pending<C> {
    /// The group's last fault: what its response is addressed by (never
    /// empty: a group is stored with all its faults).
    pub(super) fn last(&self) -> Fault {
        self.faults[self.faults.len() - 1]
    }

    /// Send the group its one response (an event gets none).
    pub(super) fn answer<R: FaultResponder>(
        &self,
        responder: &mut R,
        response: Response,
    ) -> Result<(), Error> {
        let f = self.last();
        if f.kind == FaultKind::Unrecoverable {
            return Ok(());
        }
        responder.respond(f.instance, f.device, f.pasid, f.group, response)
    }
}

pub(super) struct FaultObject<C: Capacities> {
    /// Domains routing to it.
    pub(super) users: u32,
    pub(super) pending: C::ObjectGroups<Pending<C>>,
}

/// The hardware-agnostic IOMMU layer over one driver.
///
/// `C` sizes every table ([`Caps`] with its defaults unless the embedder
/// chooses; see [`Capacities`]). Every call either succeeds or returns a
/// typed error and changes nothing (the exceptions, where hardware failed
/// after state moved, are documented on the call). [`new`](Self::new) is a
/// `const fn` whose tables are all zero: a core in a `static` lands in
/// `.bss` and is built by no code at all (the driver and the Hal are the
/// embedder's: make them zero-sized or all-zero too to keep it there).
///
/// # Life cycle of an attachment
///
/// An attachment (a domain at a device's requester ID or at one of its
/// PASIDs) ends when `attach`, `detach`, `attach_pasid`, `detach_pasid`,
/// `unbind`, `teardown_space` or `remove_device` changes it. Before such a
/// call returns, the faults raised under it are settled: the driver flushes
/// the device's faults ([`IommuDriver::flush_faults`]), the instance's queue
/// is drained, every page-request group still pending under the old
/// attachment (in the hardware, the core's queue or a fault object, read or
/// not) is answered `Invalid` exactly once, its partial groups are
/// discarded, its events reach the old domain's target or are counted as
/// dropped, and nothing raised before the call reaches a handler afterwards
/// (nor the domain the call attached). A teardown settles all of its space's
/// attachments as one. If the hardware change was made but the flush
/// failed, the change stands and the error is returned; the attachment stays
/// unflushed (its requests are answered on sight, further changes at the
/// device wait for a successful retry, and a PASID freed meanwhile is not
/// handed out) until [`process_faults`](Self::process_faults) or the next
/// change at the device flushes it.
///
/// A bond owns its attachment: the embedder's attach and detach calls over
/// it are refused `Busy`. An SVA domain attaches only at its address
/// space's PASID, or at the requester ID through
/// [`bind_device`](Self::bind_device).
pub struct Iommu<D: IommuDriver, H: Hal + Clone, C: Capacities = Caps> {
    pub(super) driver: D,
    pub(super) hal: H,
    pub(super) instances: C::Instances,
    pub(super) pasids: PasidAllocator<C::PasidWords>,
    pub(super) devices: C::Devices<Device<C>>,
    pub(super) slots: C::Domains<Slot<Domain<D, H, C>>>,
    pub(super) spaces: C::Spaces<Slot<SpaceState<C>>>,
    pub(super) bonds: C::Bonds<Slot<Bond>>,
    pub(super) faults: FaultQueue<C::Faults<Fault>, C::Faults<GroupKey>>,
    pub(super) objects: C::FaultObjects<Slot<FaultObject<C>>>,
    /// The last cookie a fault object handed out (0: none yet).
    pub(super) last_cookie: u32,
    pub(super) dropped_events: u64,
    /// Attachments changed in hardware whose earlier faults could not be
    /// flushed: their faults are answered `Invalid` (or dropped) until a
    /// flush succeeds.
    pub(super) unflushed: C::Unflushed<Retired<C>>,
    /// PASIDs freed while faults for them may still be in flight (an
    /// unflushed attachment names them): kept taken in the allocator until
    /// those faults are flushed.
    pub(super) deferred: C::Unflushed<u32>,
    /// The address space [`teardown_space`](Self::teardown_space) is ending
    /// the attachments of, while it runs.
    pub(super) tearing: Cell<SpaceId>,
}

pub(super) type Domains<D, H, C> = [Slot<Domain<D, H, C>>];

pub(super) fn domain_ref<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &Domains<D, H, C>,
    id: DomainId,
) -> Result<&Domain<D, H, C>, Error> {
    slots::get(slots, id)
}

pub(super) fn domain_mut<D: IommuDriver, H: Hal, C: Capacities>(
    slots: &mut Domains<D, H, C>,
    id: DomainId,
) -> Result<&mut Domain<D, H, C>, Error> {
    slots::get_mut(slots, id)
}

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    /// A core over `driver`, allocating table pages through `hal`. No
    /// instance is enabled yet ([`add_instance`](Self::add_instance)).
    pub const fn new(driver: D, hal: H) -> Self {
        Iommu {
            driver,
            hal,
            instances: VecStore::EMPTY,
            pasids: PasidAllocator::new(),
            devices: VecStore::EMPTY,
            slots: ArrayStore::EMPTY,
            spaces: ArrayStore::EMPTY,
            bonds: ArrayStore::EMPTY,
            faults: FaultQueue::new(),
            objects: ArrayStore::EMPTY,
            last_cookie: 0,
            dropped_events: 0,
            unflushed: VecStore::EMPTY,
            deferred: VecStore::EMPTY,
            tearing: Cell::Empty,
        }
    }

    /// Build a core in place, in memory the embedder provides (a heap block,
    /// a region it reserved), field by field: unlike `Box::new(Iommu::new(..))`,
    /// no stack frame holds the whole object, whatever its capacities. Returns
    /// the initialised core; whatever `slot` held is overwritten. (A core in a
    /// `static` needs none of this: [`new`](Self::new) is evaluated at compile
    /// time.)
    pub fn init(slot: &mut core::mem::MaybeUninit<Self>, driver: D, hal: H) -> &mut Self {
        use core::ptr::addr_of_mut;
        let p = slot.as_mut_ptr();
        // SAFETY: `p` points to `slot`, valid for writes and aligned for
        // `Self`; every field is written once below (the tables element by
        // element), so the value is fully initialised before `assume_init_mut`.
        unsafe {
            addr_of_mut!((*p).driver).write(driver);
            addr_of_mut!((*p).hal).write(hal);
            VecStore::init_at(addr_of_mut!((*p).instances));
            PasidAllocator::init_at(addr_of_mut!((*p).pasids));
            VecStore::init_at(addr_of_mut!((*p).devices));
            ArrayStore::init_at(addr_of_mut!((*p).slots));
            ArrayStore::init_at(addr_of_mut!((*p).spaces));
            ArrayStore::init_at(addr_of_mut!((*p).bonds));
            FaultQueue::init_at(addr_of_mut!((*p).faults));
            ArrayStore::init_at(addr_of_mut!((*p).objects));
            addr_of_mut!((*p).last_cookie).write(0);
            addr_of_mut!((*p).dropped_events).write(0);
            VecStore::init_at(addr_of_mut!((*p).unflushed));
            VecStore::init_at(addr_of_mut!((*p).deferred));
            addr_of_mut!((*p).tearing).write(Cell::Empty);
            slot.assume_init_mut()
        }
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The driver, for driver-specific calls. Changing hardware state the
    /// core tracks (attachments) behind its back breaks its bookkeeping.
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    /// The embedder services.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// The global PASID allocator.
    pub fn pasids(&self) -> &PasidAllocator<C::PasidWords> {
        &self.pasids
    }

    // ----- instances and devices -------------------------------------------

    /// Probe and enable an IOMMU instance; its devices can then be
    /// registered. Returns its capability registers.
    pub fn add_instance(&mut self, instance: u16) -> Result<HwInfo, Error> {
        if self.instances.contains(&instance) {
            return Err(Error::Busy {
                what: "IOMMU instance already added",
            });
        }
        if self.instances.is_full() {
            return Err(Error::Exhausted {
                what: Object::Instance,
            });
        }
        let info = self.driver.probe(instance)?;
        self.driver.enable(instance)?;
        // Room was checked above.
        let _ = self.instances.push(instance);
        Ok(info)
    }

    /// The raw capability registers of the IOMMU translating `dev`.
    pub fn hw_info(&self, dev: DeviceId) -> Result<HwInfo, Error> {
        self.device_index(dev)?;
        self.driver.hw_info(dev.instance)
    }

    pub(super) fn device_index(&self, dev: DeviceId) -> Result<usize, Error> {
        self.devices
            .iter()
            .position(|d| d.info.dev == dev)
            .ok_or(Error::NotFound {
                what: Object::Device,
            })
    }

    /// Make a device known (from the firmware tables). It starts Blocked.
    pub fn register_device(&mut self, info: DeviceInfo) -> Result<(), Error> {
        if !self.instances.contains(&info.dev.instance) {
            return Err(Error::NotFound {
                what: Object::Instance,
            });
        }
        if info.pasid_bits > 20 {
            return Err(Error::OutOfRange {
                what: "PASID width",
                value: info.pasid_bits as u64,
            });
        }
        if self.device_index(info.dev).is_ok() {
            return Err(Error::Busy {
                what: "device already registered",
            });
        }
        self.devices
            .push(Device {
                info,
                rid: DomainId::BLOCKED,
                rid_bond: false,
                pasids: VecStore::EMPTY,
                virt: None,
            })
            .map_err(|_| Error::Exhausted {
                what: Object::Device,
            })
    }

    /// Forget a device that has nothing attached (RID Blocked, no PASID
    /// attachments, no bonds). Its faults are flushed first, as at a detach:
    /// the driver's fault queue is drained, every pending page-request group
    /// of the device is answered `Invalid` once, partial groups and events
    /// are dropped, and none reaches a handler afterwards. If that flush
    /// fails the device stays registered and the error is returned.
    pub fn remove_device(&mut self, dev: DeviceId) -> Result<(), Error> {
        let di = self.device_index(dev)?;
        let d = &self.devices[di];
        if d.rid != DomainId::BLOCKED || !d.pasids.is_empty() {
            return Err(Error::Busy {
                what: "device still has domains attached",
            });
        }
        self.settle(&Retired::device(dev))?;
        // The device's own flush covered whatever its changes left unflushed.
        self.unflushed.retain(|r| r.dev != dev);
        self.release_deferred();
        self.devices.swap_remove(di);
        Ok(())
    }

    /// The device's registration.
    pub fn device(&self, dev: DeviceId) -> Result<DeviceInfo, Error> {
        Ok(self.devices[self.device_index(dev)?].info)
    }

    // ----- PASIDs ----------------------------------------------------------

    /// Take the lowest free PASID `dev` can issue, from the global space.
    pub fn alloc_pasid(&mut self, dev: DeviceId) -> Result<u32, Error> {
        let info = self.device(dev)?;
        if info.pasid_bits == 0 {
            return Err(Error::Unsupported {
                what: "PASIDs on this device",
            });
        }
        Ok(self.pasids.alloc(info.pasid_bits as u32)?.get())
    }

    /// Give a PASID from [`alloc_pasid`](Self::alloc_pasid) back. Refused
    /// (`Busy`) while anything is attached at it or an address space owns
    /// it. A PASID whose faults could not be flushed when it was detached is
    /// freed but not handed out again until they are.
    pub fn free_pasid(&mut self, pasid: u32) -> Result<(), Error> {
        if !self.pasids.is_used(pasid) || self.deferred.contains(&pasid) {
            return Err(Error::BadPasid { pasid });
        }
        let attached = self.devices.iter().any(|d| d.attachment(pasid).is_some());
        let owned = slots::live::<_, SpaceId>(self.spaces.as_ref())
            .any(|(_, s)| s.pasid.is_some_and(|p| p.get() == pasid));
        if attached || owned {
            return Err(Error::Busy {
                what: "PASID in use",
            });
        }
        self.release_pasid(Pasid::new(pasid)?)
    }

    /// Give `pasid` back to the allocator, or, while an unflushed attachment
    /// names it, once that attachment's faults are flushed.
    pub(super) fn release_pasid(&mut self, pasid: Pasid) -> Result<(), Error> {
        if self.unflushed.iter().any(|r| r.names_pasid(pasid.get())) {
            return self
                .deferred
                .push(pasid.get())
                .map_err(|_| Error::Exhausted {
                    what: Object::UnflushedAttachment,
                });
        }
        self.pasids.free(pasid)
    }

    /// Free the deferred PASIDs no unflushed attachment names any more.
    pub(super) fn release_deferred(&mut self) {
        let mut i = 0;
        while i < self.deferred.len() {
            let p = self.deferred[i];
            if self.unflushed.iter().any(|r| r.names_pasid(p)) {
                i += 1;
                continue;
            }
            self.deferred.swap_remove(i);
            if let Ok(p) = Pasid::new(p) {
                // Taken until now: cannot be refused.
                let _ = self.pasids.free(p);
            }
        }
    }

    pub(super) fn check_pasid(&self, info: &DeviceInfo, pasid: u32) -> Result<(), Error> {
        let below_width = info.pasid_bits != 0 && (pasid as u64) < (1u64 << info.pasid_bits);
        if pasid == 0
            || !below_width
            || !self.pasids.is_used(pasid)
            || self.deferred.contains(&pasid)
        {
            return Err(Error::BadPasid { pasid });
        }
        Ok(())
    }
}
