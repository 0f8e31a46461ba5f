//! The core object: domains, attach handles, PASIDs, SVA bonds and fault
//! routing over one [`IommuDriver`].

use heapless::Vec;

use crate::error::Error;
use crate::hal::Hal;
use crate::pgtable::{ArmS1, ArmS2, Gather, PageTable, Prot, VtdSl, X86_64};

use super::driver::{
    DeviceId, DeviceInfo, DomainDesc, DomainHw, DomainRequest, HwInfo, IommuDriver, PagingFlags,
    PagingFormat,
};
use super::iopf::{Fault, FaultKind, FaultQueue, FaultResponder, Response};
use super::pasid::{Pasid, PasidAllocator};
use super::slots::{self, Slot};
use super::sva::{AddressSpace, BondId, SpaceId};
use super::tags::{self, CacheTag, CacheTags, TagKind};
use super::user::{InvalidateOutcome, UserArray, UserData, VirtualIds};

/// Cache tags one domain can carry (distinct (instance, tag, PASID, device,
/// kind) tuples).
pub const TAGS_PER_DOMAIN: usize = 16;
/// PASIDs one device can have something attached at.
pub const PASIDS_PER_DEVICE: usize = 16;
/// IOMMU instances.
pub const INSTANCES: usize = 8;
/// Registered address spaces.
pub const SPACES: usize = 16;
/// SVA domains per address space (one per IOMMU instance it is used on).
pub const DOMAINS_PER_SPACE: usize = 4;
/// Device-to-address-space bonds.
pub const BONDS: usize = 64;
/// Faults held between drain and handling.
pub const FAULTS: usize = 64;
/// iommufd-style fault objects.
pub const FAULT_OBJECTS: usize = 4;
/// Groups one fault object holds until the user answers them.
pub const DEFERRED_GROUPS: usize = 16;
/// Faults in one group a fault object can hold.
pub const GROUP_FAULTS: usize = 8;

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

/// A paging domain's table, in the format its driver chose.
enum Table<H: Hal> {
    VtdSl(PageTable<VtdSl, H>),
    X86_64(PageTable<X86_64, H>),
    ArmS1(PageTable<ArmS1, H>),
    ArmS2(PageTable<ArmS2, H>),
}

macro_rules! with_table {
    ($table:expr, $t:ident => $body:expr) => {
        match $table {
            Table::VtdSl($t) => $body,
            Table::X86_64($t) => $body,
            Table::ArmS1($t) => $body,
            Table::ArmS2($t) => $body,
        }
    };
}

impl<H: Hal> Table<H> {
    fn new(format: PagingFormat, hal: H) -> Result<Self, Error> {
        Ok(match format {
            PagingFormat::VtdSl(f) => Table::VtdSl(PageTable::new(f, hal)?),
            PagingFormat::X86_64(f) => Table::X86_64(PageTable::new(f, hal)?),
            PagingFormat::ArmS1(f) => Table::ArmS1(PageTable::new(f, hal)?),
            PagingFormat::ArmS2(f) => Table::ArmS2(PageTable::new(f, hal)?),
        })
    }

    fn root(&self) -> u64 {
        with_table!(self, t => t.root_phys())
    }
}

enum Data<H: Hal> {
    Paging { table: Table<H>, flags: PagingFlags },
    Sva { space: SpaceId, desc: AddressSpace },
    Nested { parent: DomainId },
}

struct Domain<H: Hal, P> {
    instance: u16,
    hw: DomainHw<P>,
    data: Data<H>,
    tags: CacheTags<TAGS_PER_DOMAIN>,
    /// Attachments (RID or PASID) using it.
    attached: u32,
    /// Nested domains using it as parent.
    children: u32,
    fault: FaultTarget,
}

struct Device {
    info: DeviceInfo,
    rid: DomainId,
    pasids: Vec<(u32, DomainId), PASIDS_PER_DEVICE>,
    /// The ID a guest knows the device by, under a nest parent (the guest's
    /// stage 2): user invalidations naming a device use it.
    virt: Option<(DomainId, u32)>,
}

impl Device {
    /// What is attached at the requester ID (`None`) or at a PASID.
    fn domain_at(&self, pasid: Option<u32>) -> Option<DomainId> {
        match pasid {
            None => Some(self.rid),
            Some(p) => self.pasids.iter().find(|(q, _)| *q == p).map(|(_, id)| *id),
        }
    }
}

struct SpaceState {
    desc: AddressSpace,
    pasid: Option<Pasid>,
    domains: Vec<DomainId, DOMAINS_PER_SPACE>,
    fault: FaultTarget,
}

#[derive(Clone, Copy)]
struct Bond {
    dev: DeviceId,
    space: SpaceId,
    domain: DomainId,
    pasid: u32,
    users: u32,
}

struct Pending {
    cookie: u32,
    faults: Vec<Fault, GROUP_FAULTS>,
    read: bool,
}

impl Pending {
    /// The group's last fault: what its response is addressed by (never
    /// empty: a group is stored with all its faults).
    fn last(&self) -> Fault {
        self.faults[self.faults.len() - 1]
    }

    /// Send the group its one response (an event gets none).
    fn answer<R: FaultResponder>(
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

struct FaultObject {
    /// Domains routing to it.
    users: u32,
    pending: Vec<Pending, DEFERRED_GROUPS>,
}

/// The hardware-agnostic IOMMU layer over one driver.
///
/// `DOMAINS` and `DEVICES` are capacities; the other limits are the
/// constants of this module. Every call either succeeds or returns a typed
/// error and changes nothing (the exceptions, where hardware failed after
/// state moved, are documented on the call). The object is large (the PASID
/// allocator alone is 130 KiB): place it in a `static` or on the heap.
pub struct Iommu<
    D: IommuDriver,
    H: Hal + Clone,
    const DOMAINS: usize = 64,
    const DEVICES: usize = 64,
> {
    driver: D,
    hal: H,
    instances: Vec<u16, INSTANCES>,
    pasids: PasidAllocator,
    devices: Vec<Device, DEVICES>,
    slots: [Slot<Domain<H, D::DomainData>>; DOMAINS],
    spaces: [Slot<SpaceState>; SPACES],
    bonds: [Slot<Bond>; BONDS],
    faults: FaultQueue<FAULTS>,
    objects: [Slot<FaultObject>; FAULT_OBJECTS],
    next_cookie: u32,
    dropped_events: u64,
}

type Domains<H, P> = [Slot<Domain<H, P>>];

fn domain_ref<H: Hal, P>(slots: &Domains<H, P>, id: DomainId) -> Result<&Domain<H, P>, Error> {
    slots::get(slots, id)
}

fn domain_mut<H: Hal, P>(
    slots: &mut Domains<H, P>,
    id: DomainId,
) -> Result<&mut Domain<H, P>, Error> {
    slots::get_mut(slots, id)
}

/// `parent`, checked to be a nest-parent paging domain of `instance`.
fn nest_parent<H: Hal, P>(
    slots: &Domains<H, P>,
    parent: DomainId,
    instance: u16,
) -> Result<&Domain<H, P>, Error> {
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
fn describe<H: Hal, P>(slots: &Domains<H, P>, id: DomainId) -> Result<DomainDesc<'_, P>, Error> {
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
            root: table.root(),
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
                    what: "nested domain's parent",
                });
            };
            DomainDesc::Nested {
                hw: &d.hw,
                parent_hw: &p.hw,
                parent_root: table.root(),
            }
        }
    })
}

/// Tags an attachment of `id` at (`info`, `pasid`) records, and on which
/// domain: the domain's IOTLB (and device TLB with ATS); for a nested
/// domain also its parent, whose unmaps reach the nested translations.
type TagList = Vec<(DomainId, CacheTag), 4>;

fn tags_for<H: Hal, P>(
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

fn add_tags<H: Hal, P>(slots: &mut Domains<H, P>, list: &TagList) -> Result<(), Error> {
    for (i, (id, tag)) in list.iter().enumerate() {
        let r = domain_mut(slots, *id).and_then(|d| d.tags.add(*tag));
        if let Err(e) = r {
            remove_tags(slots, &list[..i]);
            return Err(e);
        }
    }
    Ok(())
}

fn remove_tags<H: Hal, P>(slots: &mut Domains<H, P>, list: &[(DomainId, CacheTag)]) {
    for (id, tag) in list {
        if let Ok(d) = domain_mut(slots, *id) {
            // Recorded by the matching add: cannot be missing.
            let _ = d.tags.remove(tag);
        }
    }
}

fn count_attach<H: Hal, P>(slots: &mut Domains<H, P>, id: DomainId, up: bool) {
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
    /// A core over `driver`, allocating table pages through `hal`. No
    /// instance is enabled yet ([`add_instance`](Self::add_instance)).
    pub const fn new(driver: D, hal: H) -> Self {
        Iommu {
            driver,
            hal,
            instances: Vec::new(),
            pasids: PasidAllocator::new(),
            devices: Vec::new(),
            slots: [Slot::EMPTY; DOMAINS],
            spaces: [Slot::EMPTY; SPACES],
            bonds: [Slot::EMPTY; BONDS],
            faults: FaultQueue::new(),
            objects: [Slot::EMPTY; FAULT_OBJECTS],
            next_cookie: 1,
            dropped_events: 0,
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
    pub fn pasids(&self) -> &PasidAllocator {
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
                what: "IOMMU instance slots",
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

    fn device_index(&self, dev: DeviceId) -> Result<usize, Error> {
        self.devices
            .iter()
            .position(|d| d.info.dev == dev)
            .ok_or(Error::NotFound { what: "device" })
    }

    /// Make a device known (from the firmware tables). It starts Blocked.
    pub fn register_device(&mut self, info: DeviceInfo) -> Result<(), Error> {
        if !self.instances.contains(&info.dev.instance) {
            return Err(Error::NotFound {
                what: "IOMMU instance",
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
                pasids: Vec::new(),
                virt: None,
            })
            .map_err(|_| Error::Exhausted {
                what: "device slots",
            })
    }

    /// Forget a device that has nothing attached (RID Blocked, no PASID
    /// attachments, no bonds). Its pending page requests are answered
    /// `Invalid` and its queued events dropped.
    pub fn remove_device(&mut self, dev: DeviceId) -> Result<(), Error> {
        let di = self.device_index(dev)?;
        let d = &self.devices[di];
        if d.rid != DomainId::BLOCKED || !d.pasids.is_empty() {
            return Err(Error::Busy {
                what: "device still has domains attached",
            });
        }
        self.faults
            .remove_device(dev.instance, dev.id, &mut self.driver)?;
        for obj in slots::live_mut(&mut self.objects) {
            while let Some(i) = obj.pending.iter().position(|p| {
                let f = p.last();
                f.instance == dev.instance && f.device == dev.id
            }) {
                obj.pending
                    .remove(i)
                    .answer(&mut self.driver, Response::Invalid)?;
            }
        }
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
    /// (`Busy`) while anything is attached at it or an address space owns it.
    pub fn free_pasid(&mut self, pasid: u32) -> Result<(), Error> {
        if !self.pasids.is_used(pasid) {
            return Err(Error::BadPasid { pasid });
        }
        let attached = self
            .devices
            .iter()
            .any(|d| d.pasids.iter().any(|(p, _)| *p == pasid));
        let owned = slots::live::<_, SpaceId>(&self.spaces)
            .any(|(_, s)| s.pasid.is_some_and(|p| p.get() == pasid));
        if attached || owned {
            return Err(Error::Busy {
                what: "PASID in use",
            });
        }
        self.pasids.free(Pasid::new(pasid)?)
    }

    fn check_pasid(&self, info: &DeviceInfo, pasid: u32) -> Result<(), Error> {
        let below_width = info.pasid_bits != 0 && (pasid as u64) < (1u64 << info.pasid_bits);
        if pasid == 0 || !below_width || !self.pasids.is_used(pasid) {
            return Err(Error::BadPasid { pasid });
        }
        Ok(())
    }

    // ----- domains ---------------------------------------------------------

    fn free_slot(&self) -> Result<usize, Error> {
        slots::vacant(&self.slots, "domain slots")
    }

    fn install(&mut self, index: usize, domain: Domain<H, D::DomainData>) -> DomainId {
        slots::fill(&mut self.slots, index, domain)
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
            Some(format) => Table::new(format, self.hal.clone()),
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

    /// Allocate a nested domain on `parent` (a paging domain allocated with
    /// [`PagingFlags::NEST_PARENT`]) from untrusted user data in the
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
        let p = nest_parent(&self.slots, parent, info.dev.instance)?;
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
        if let Ok(p) = domain_mut(&mut self.slots, parent) {
            p.children += 1;
        }
        Ok(id)
    }

    fn alloc_sva(&mut self, info: &DeviceInfo, space: SpaceId) -> Result<DomainId, Error> {
        let s = self.space_ref(space)?;
        let (desc, fault) = (s.desc, s.fault);
        if s.domains.is_full() {
            return Err(Error::Exhausted {
                what: "SVA domains of this address space",
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
        let d = domain_ref(&self.slots, id)?;
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
        let d = slots::take(&mut self.slots, id)?;
        if let FaultTarget::Object(o) = d.fault {
            if let Ok(obj) = self.object_mut(o) {
                obj.users -= 1;
            }
        }
        match &d.data {
            Data::Nested { parent, .. } => {
                if let Ok(p) = domain_mut(&mut self.slots, *parent) {
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
        Ok(match domain_ref(&self.slots, id)?.data {
            Data::Paging { .. } => DomainKind::Paging,
            Data::Sva { .. } => DomainKind::Sva,
            Data::Nested { .. } => DomainKind::Nested,
        })
    }

    /// The driver's state of a domain.
    pub fn domain_hw(&self, id: DomainId) -> Result<&DomainHw<D::DomainData>, Error> {
        Ok(&domain_ref(&self.slots, id)?.hw)
    }

    /// The IOMMU instance a domain belongs to.
    pub fn domain_instance(&self, id: DomainId) -> Result<u16, Error> {
        Ok(domain_ref(&self.slots, id)?.instance)
    }

    /// The cache tags recorded on a domain (one per distinct tag).
    pub fn domain_tags(&self, id: DomainId) -> Result<impl Iterator<Item = &CacheTag>, Error> {
        Ok(domain_ref(&self.slots, id)?.tags.iter())
    }

    /// How many attachments (RID or PASID) use a domain.
    pub fn domain_users(&self, id: DomainId) -> Result<u32, Error> {
        Ok(domain_ref(&self.slots, id)?.attached)
    }

    /// Where a domain's faults go.
    pub fn set_fault_target(&mut self, id: DomainId, target: FaultTarget) -> Result<(), Error> {
        if let FaultTarget::Object(o) = target {
            self.object_ref(o)?;
        }
        let d = domain_mut(&mut self.slots, id)?;
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

    // ----- mapping ---------------------------------------------------------

    fn table_mut(&mut self, id: DomainId) -> Result<(&mut Table<H>, u16), Error> {
        let unsupported = Error::Unsupported {
            what: "mapping into a domain without an I/O page table",
        };
        // Blocked / Identity exist (they are not "not found") but have no table.
        if id.is_static() {
            return Err(unsupported);
        }
        let d = domain_mut(&mut self.slots, id)?;
        match &mut d.data {
            Data::Paging { table, .. } => Ok((table, d.instance)),
            _ => Err(unsupported),
        }
    }

    /// Map `[iova, iova + len)` to `paddr` in a paging domain. Under caching
    /// mode the new range is invalidated too; if that invalidation fails the
    /// mapping stays and the hardware error is returned.
    pub fn map(
        &mut self,
        id: DomainId,
        iova: u64,
        paddr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<(), Error> {
        let (table, instance) = self.table_mut(id)?;
        with_table!(table, t => t.map(iova, paddr, len, prot))?;
        if self.driver.flush_on_map(instance) {
            let d = domain_ref(&self.slots, id)?;
            tags::flush(
                d.tags.iter(),
                Some((iova, iova + len)),
                crate::hal::PAGE_SIZE,
                false,
                &mut self.driver,
            )?;
        }
        Ok(())
    }

    /// Unmap `[iova, iova + len)` from a paging domain into `gather`; the
    /// IOTLB may still hold the range until [`sync`](Self::sync).
    pub fn unmap(
        &mut self,
        id: DomainId,
        iova: u64,
        len: u64,
        gather: &mut Gather,
    ) -> Result<(), Error> {
        let (table, _) = self.table_mut(id)?;
        with_table!(table, t => t.unmap(iova, len, gather))
    }

    /// Invalidate what `gather` covers through every cache tag of the domain
    /// (one batch and one wait per instance; a nested parent's tags reach its
    /// nested domains), then free the gathered table pages. On error nothing
    /// is freed and the gather can be synced again.
    pub fn sync(&mut self, id: DomainId, gather: &mut Gather) -> Result<(), Error> {
        let d = domain_ref(&self.slots, id)?;
        tags::sync(&d.tags, gather, &mut self.driver, &self.hal)
    }

    /// [`unmap`](Self::unmap) then [`sync`](Self::sync). If the sync fails
    /// the range is unmapped but its freed table pages are leaked (never
    /// freed while the IOMMU might walk them) and the error returned.
    pub fn unmap_sync(&mut self, id: DomainId, iova: u64, len: u64) -> Result<(), Error> {
        let mut gather = Gather::new();
        self.unmap(id, iova, len, &mut gather)?;
        self.sync(id, &mut gather)
    }

    /// What `iova` translates to in a paging domain.
    pub fn iova_to_phys(&self, id: DomainId, iova: u64) -> Result<Option<u64>, Error> {
        let unsupported = Error::Unsupported {
            what: "lookups in a domain without an I/O page table",
        };
        if id.is_static() {
            return Err(unsupported);
        }
        match &domain_ref(&self.slots, id)?.data {
            Data::Paging { table, .. } => Ok(with_table!(table, t => t.iova_to_phys(iova))),
            _ => Err(unsupported),
        }
    }

    // ----- attach ----------------------------------------------------------

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

    fn check_attachable(
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

    fn attach_at(&mut self, dev: DeviceId, pasid: Option<u32>, new: DomainId) -> Result<(), Error> {
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
                what: "PASID attachments of this device",
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
                what: "attachment at this PASID",
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

    // ----- SVA -------------------------------------------------------------

    fn space_ref(&self, id: SpaceId) -> Result<&SpaceState, Error> {
        slots::get(&self.spaces, id)
    }

    fn space_mut(&mut self, id: SpaceId) -> Result<&mut SpaceState, Error> {
        slots::get_mut(&mut self.spaces, id)
    }

    /// Make a CPU address space known. `fault` receives the page requests
    /// of every device bound to it (the embedder's memory manager makes the
    /// page present and answers `Success`).
    pub fn register_space(
        &mut self,
        desc: AddressSpace,
        fault: FaultTarget,
    ) -> Result<SpaceId, Error> {
        if !desc.root.is_multiple_of(crate::hal::PAGE_SIZE) {
            return Err(Error::Unaligned {
                value: desc.root,
                align: crate::hal::PAGE_SIZE,
            });
        }
        if let FaultTarget::Object(_) = fault {
            return Err(Error::Unsupported {
                what: "fault objects for address spaces (use a handler)",
            });
        }
        let index = slots::vacant(&self.spaces, "address-space slots")?;
        let state = SpaceState {
            desc,
            pasid: None,
            domains: Vec::new(),
            fault,
        };
        Ok(slots::fill(&mut self.spaces, index, state))
    }

    /// The PASID of an address space (`None` until its first bind).
    pub fn space_pasid(&self, id: SpaceId) -> Result<Option<u32>, Error> {
        Ok(self.space_ref(id)?.pasid.map(Pasid::get))
    }

    /// The SVA domains an address space has (one per instance it is bound on).
    pub fn space_domains(&self, id: SpaceId) -> Result<&[DomainId], Error> {
        Ok(&self.space_ref(id)?.domains)
    }

    /// The domain and PASID a bond uses, and its user count.
    pub fn bond_info(&self, id: BondId) -> Result<(DomainId, u32, u32), Error> {
        let b = slots::get(&self.bonds, id)?;
        Ok((b.domain, b.pasid, b.users))
    }

    /// Give `dev` access to an address space at the space's PASID (taken
    /// from the global allocator at its first bind, below the device's
    /// width). Binding the same pair again returns the same bond with one
    /// more user. An existing SVA domain of the space on the device's
    /// instance is reused unless the driver answers `Incompatible`; only
    /// then is a new one allocated.
    pub fn bind(&mut self, dev: DeviceId, space: SpaceId) -> Result<BondId, Error> {
        let info = self.device(dev)?;
        let s = self.space_ref(space)?;
        let bound = slots::live::<_, BondId>(&self.bonds)
            .find(|(_, b)| b.dev == dev && b.space == space)
            .map(|(id, _)| id);
        if let Some(id) = bound {
            let b = slots::get_mut(&mut self.bonds, id)?;
            b.users = b.users.checked_add(1).ok_or(Error::Exhausted {
                what: "users of this bond",
            })?;
            return Ok(id);
        }
        if info.pasid_bits == 0 {
            return Err(Error::Unsupported {
                what: "PASIDs on this device",
            });
        }
        let bond_index = slots::vacant(&self.bonds, "bond slots")?;
        let (pasid, fresh) = match s.pasid {
            Some(p) => {
                if (p.get() as u64) >= (1u64 << info.pasid_bits) {
                    return Err(Error::BadPasid { pasid: p.get() });
                }
                (p.get(), false)
            }
            None => (self.pasids.alloc(info.pasid_bits as u32)?.get(), true),
        };
        let result = self.bind_at(&info, space, pasid);
        let domain = match result {
            Ok(d) => d,
            Err(e) => {
                if fresh {
                    if let Ok(p) = Pasid::new(pasid) {
                        let _ = self.pasids.free(p);
                    }
                }
                return Err(e);
            }
        };
        if fresh {
            if let Ok(s) = self.space_mut(space) {
                s.pasid = Pasid::new(pasid).ok();
            }
        }
        let bond = Bond {
            dev,
            space,
            domain,
            pasid,
            users: 1,
        };
        Ok(slots::fill(&mut self.bonds, bond_index, bond))
    }

    /// Attach an SVA domain of `space` at `pasid` of the device: an existing
    /// compatible one, else a new one.
    fn bind_at(
        &mut self,
        info: &DeviceInfo,
        space: SpaceId,
        pasid: u32,
    ) -> Result<DomainId, Error> {
        if self.attached(info.dev, Some(pasid))?.is_some() {
            return Err(Error::Busy {
                what: "the address space's PASID is in use on this device",
            });
        }
        let di = self.device_index(info.dev)?;
        if self.devices[di].pasids.is_full() {
            return Err(Error::Exhausted {
                what: "PASID attachments of this device",
            });
        }
        let existing = self.space_ref(space)?.domains.clone();
        for d in existing {
            if self.domain_instance(d)? != info.dev.instance {
                continue;
            }
            match self.attach_at(info.dev, Some(pasid), d) {
                Ok(()) => return Ok(d),
                // Another domain of the space (a new one if need be) may
                // serve the device: the driver refused this one, or its
                // cache-tag slots are full.
                Err(Error::Incompatible { .. } | Error::Exhausted { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let d = self.alloc_sva(info, space)?;
        if let Err(e) = self.attach_at(info.dev, Some(pasid), d) {
            // Attached nowhere: freeing cannot be refused.
            let _ = self.free_domain(d);
            return Err(e);
        }
        Ok(d)
    }

    /// Drop one user of a bond. At zero users the device's PASID is
    /// detached, and the SVA domain freed when no other device uses it. The
    /// space keeps its PASID until [`teardown_space`](Self::teardown_space).
    pub fn unbind(&mut self, id: BondId) -> Result<(), Error> {
        let b = *slots::get(&self.bonds, id)?;
        if b.users > 1 {
            slots::get_mut(&mut self.bonds, id)?.users -= 1;
            return Ok(());
        }
        self.detach_pasid(b.dev, b.pasid)?;
        slots::take(&mut self.bonds, id)?;
        if self.domain_users(b.domain)? == 0 {
            self.free_domain(b.domain)?;
        }
        Ok(())
    }

    /// The address space is going away: unbind every device from it, free
    /// its SVA domains and its PASID, and forget it. Stops at the first
    /// hardware error (what was unbound stays unbound; call again).
    pub fn teardown_space(&mut self, id: SpaceId) -> Result<(), Error> {
        self.space_ref(id)?;
        while let Some(bond) = self.bond_of_space(id) {
            slots::get_mut(&mut self.bonds, bond)?.users = 1;
            self.unbind(bond)?;
        }
        // Domains the embedder attached itself keep the space alive.
        let domains = self.space_ref(id)?.domains.clone();
        for d in domains {
            self.free_domain(d)?;
        }
        if let Some(p) = slots::take(&mut self.spaces, id)?.pasid {
            // Taken at the space's first bind and never freed since.
            let _ = self.pasids.free(p);
        }
        Ok(())
    }

    fn bond_of_space(&self, space: SpaceId) -> Option<BondId> {
        slots::live(&self.bonds)
            .find(|(_, b): &(BondId, &Bond)| b.space == space)
            .map(|(id, _)| id)
    }

    /// The CPU side changed mappings in `[start, end)` of an address space:
    /// invalidate the range in every cache that may hold it, through the
    /// cache tags of every SVA domain of the space (one wait per instance).
    pub fn invalidate_range(&mut self, id: SpaceId, start: u64, end: u64) -> Result<(), Error> {
        if end <= start {
            return Err(Error::OutOfRange {
                what: "range end",
                value: end,
            });
        }
        let s = slots::get(&self.spaces, id)?;
        let slots = &self.slots;
        let tags = s
            .domains
            .iter()
            .filter_map(|d| domain_ref(slots, *d).ok())
            .flat_map(|d| d.tags.iter());
        tags::flush(
            tags,
            Some((start, end)),
            crate::hal::PAGE_SIZE,
            true,
            &mut self.driver,
        )
    }

    // ----- nested ----------------------------------------------------------

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
        nest_parent(&self.slots, parent, dev.instance)?;
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
                what: "virtual ID of this device",
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
        let d = domain_ref(&self.slots, id)?;
        let (instance, Data::Nested { parent }) = (d.instance, &d.data) else {
            return Err(not_nested);
        };
        let guest = GuestIds {
            devices: &self.devices,
            instance,
            parent: *parent,
        };
        let desc = describe(&self.slots, id)?;
        let array = UserArray {
            data_type,
            data,
            entry_len,
            count,
        };
        let mut outcome = self.driver.invalidate_user(&desc, &array, &guest);
        if outcome.handled > 0 {
            if let Err(e) = self.driver.wait(instance) {
                if outcome.error.is_none() {
                    outcome.error = Some((outcome.handled, e));
                }
            }
        }
        Ok(outcome)
    }

    // ----- faults ----------------------------------------------------------

    /// Unrecoverable events that reached a domain without a fault target,
    /// or found the queue full, since the core was made.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// Drain every instance's fault records (16 at a time) and, after each
    /// batch, hand every complete group to the fault target of the domain
    /// attached where it came from (its PASID, else the requester ID), with
    /// one response per group. Handling between batches keeps a burst from
    /// overflowing the queue with complete groups. Returns the number of
    /// groups and events handled.
    pub fn process_faults(&mut self) -> Result<usize, Error> {
        let blank = Fault {
            instance: 0,
            device: 0,
            pasid: None,
            addr: 0,
            access: super::iopf::Access::empty(),
            group: 0,
            last: true,
            kind: FaultKind::Unrecoverable,
        };
        let mut handled = 0;
        for k in 0..self.instances.len() {
            let instance = self.instances[k];
            loop {
                let mut buf = [blank; 16];
                let n = self.driver.drain_faults(instance, &mut buf)?;
                for f in &buf[..n.min(buf.len())] {
                    if let Err(Error::Exhausted { .. }) = self.faults.report(*f, &mut self.driver) {
                        self.dropped_events += 1;
                    }
                }
                // Handle what is complete before draining more, so a burst
                // only overflows the queue with partial groups.
                handled += self.handle_queued()?;
                if n < buf.len() {
                    break;
                }
            }
        }
        Ok(handled)
    }

    /// Route every complete group in the queue (see `process_faults`).
    fn handle_queued(&mut self) -> Result<usize, Error> {
        let devices = &self.devices;
        let slots = &self.slots;
        let objects = &mut self.objects;
        let next_cookie = &mut self.next_cookie;
        let dropped = &mut self.dropped_events;
        self.faults.handle_deferrable(
            |group| {
                let f = group[group.len() - 1];
                let recoverable = f.kind != FaultKind::Unrecoverable;
                let dev = DeviceId {
                    instance: f.instance,
                    id: f.device,
                };
                let target = devices
                    .iter()
                    .find(|d| d.info.dev == dev)
                    .and_then(|d| d.domain_at(f.pasid))
                    .and_then(|id| domain_ref(slots, id).ok().map(|d| (id, d.fault)));
                match target {
                    Some((id, FaultTarget::Handler(h))) => Some((h.func)(h.cookie, id, group)),
                    Some((_, FaultTarget::Object(o))) => {
                        let Ok(obj) = slots::get_mut(objects, o) else {
                            return Some(Response::Invalid);
                        };
                        let mut faults = Vec::new();
                        for g in group {
                            if faults.push(*g).is_err() {
                                return Some(Response::Failure);
                            }
                        }
                        let cookie = *next_cookie;
                        let pending = Pending {
                            cookie,
                            faults,
                            read: false,
                        };
                        if obj.pending.push(pending).is_err() {
                            if !recoverable {
                                *dropped += 1;
                            }
                            return Some(Response::Failure);
                        }
                        *next_cookie = next_cookie.wrapping_add(1).max(1);
                        // Events are queued for reading too; they are never answered.
                        if recoverable {
                            None
                        } else {
                            Some(Response::Invalid)
                        }
                    }
                    _ => {
                        if !recoverable {
                            *dropped += 1;
                        }
                        Some(Response::Invalid)
                    }
                }
            },
            &mut self.driver,
        )
    }

    fn object_ref(&self, id: FaultObjectId) -> Result<&FaultObject, Error> {
        slots::get(&self.objects, id)
    }

    fn object_mut(&mut self, id: FaultObjectId) -> Result<&mut FaultObject, Error> {
        slots::get_mut(&mut self.objects, id)
    }

    /// A fault object: route a domain's faults to it with
    /// [`set_fault_target`](Self::set_fault_target), read them with
    /// [`fault_read`](Self::fault_read), answer with
    /// [`fault_respond`](Self::fault_respond).
    pub fn alloc_fault_object(&mut self) -> Result<FaultObjectId, Error> {
        let i = slots::vacant(&self.objects, "fault objects")?;
        let object = FaultObject {
            users: 0,
            pending: Vec::new(),
        };
        Ok(slots::fill(&mut self.objects, i, object))
    }

    /// Free a fault object no domain routes to; its unanswered page requests
    /// are answered `Invalid`.
    pub fn free_fault_object(&mut self, id: FaultObjectId) -> Result<(), Error> {
        if self.object_ref(id)?.users != 0 {
            return Err(Error::Busy {
                what: "domains still route faults to this object",
            });
        }
        let o = slots::get_mut(&mut self.objects, id)?;
        while let Some(p) = o.pending.pop() {
            p.answer(&mut self.driver, Response::Invalid)?;
        }
        slots::take(&mut self.objects, id)?;
        Ok(())
    }

    /// Hand out the faults of groups not read yet, whole groups only, as many
    /// as fit in `out`; returns how many were written. Events are handed out
    /// once and forgotten; page-request groups wait for their response.
    pub fn fault_read(&mut self, id: FaultObjectId, out: &mut [UserFault]) -> Result<usize, Error> {
        let o = self.object_mut(id)?;
        let mut n = 0;
        for p in o.pending.iter_mut().filter(|p| !p.read) {
            if n + p.faults.len() > out.len() {
                break;
            }
            for f in &p.faults {
                out[n] = UserFault {
                    cookie: p.cookie,
                    fault: *f,
                };
                n += 1;
            }
            p.read = true;
        }
        o.pending
            .retain(|p| !(p.read && p.last().kind == FaultKind::Unrecoverable));
        Ok(n)
    }

    /// Answer the group a read fault belonged to. Unknown or unread cookies
    /// are refused (`NotFound`); if the driver fails to send, the group
    /// stays pending.
    pub fn fault_respond(
        &mut self,
        id: FaultObjectId,
        cookie: u32,
        response: Response,
    ) -> Result<(), Error> {
        let o = slots::get(&self.objects, id)?;
        let i = o
            .pending
            .iter()
            .position(|p| p.read && p.cookie == cookie)
            .ok_or(Error::NotFound {
                what: "fault cookie",
            })?;
        o.pending[i].answer(&mut self.driver, response)?;
        self.object_mut(id)?.pending.remove(i);
        Ok(())
    }
}

/// The virtual IDs of one guest: devices of `instance` given an ID under the
/// nest parent `parent`.
struct GuestIds<'a> {
    devices: &'a [Device],
    instance: u16,
    parent: DomainId,
}

impl VirtualIds for GuestIds<'_> {
    fn resolve(&self, virtual_id: u32) -> Option<u32> {
        self.devices
            .iter()
            .find(|d| {
                d.info.dev.instance == self.instance && d.virt == Some((self.parent, virtual_id))
            })
            .map(|d| d.info.dev.id)
    }
}
