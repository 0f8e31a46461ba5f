//! A mock IOMMU driver for the core's host tests: records every call it
//! receives, models which domain each (device, PASID) translates through,
//! and can be told to fail.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use iommu::core::{
    CacheTag, Caps, DeviceId, DeviceInfo, DirectRegion, DomainDesc, DomainHw, DomainRequest, Fault,
    FaultResponder, HW_INFO_TYPE_NONE, HwInfo, InvalidateOutcome, Iommu, IommuDriver, Response,
    TagInvalidate, TagView, UserArray, UserData, VirtualIds,
};
use iommu::drivers::smmuv3::user::{
    self as smmu_user, HWPT_DATA_ARM_SMMUV3, INVALIDATE_DATA_ARM_SMMUV3, SmmuV3Inv, SmmuV3Ste,
    SmmuV3SteCaps,
};
use iommu::drivers::vtd::regs::LargePages;
use iommu::drivers::vtd::user::{
    self as vtd_user, HWPT_DATA_VTD_S1, INVALIDATE_DATA_VTD_S1, VtdS1, VtdS1Caps, VtdS1Inv,
};
use iommu::pgtable::{AnyFormat, VtdSl};
use iommu::{Error, Object};

use super::TestHal;

/// Allocation data type of a VT-d stage 1 (`IOMMU_HWPT_DATA_VTD_S1`).
pub const VTD_S1: u32 = HWPT_DATA_VTD_S1;
/// Invalidation data type of VT-d stage-1 ranges.
pub const VTD_INV: u32 = INVALIDATE_DATA_VTD_S1;
/// Allocation data type of an SMMUv3 virtual STE.
pub const SMMU_STE: u32 = HWPT_DATA_ARM_SMMUV3;
/// Invalidation data type of SMMUv3 commands.
pub const SMMU_CMD: u32 = INVALIDATE_DATA_ARM_SMMUV3;

/// Which nesting the mock offers, with the driver's own limits: the mock
/// validates user data with the real drivers' parsers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedCaps {
    VtdS1(VtdS1Caps),
    SmmuV3(SmmuV3SteCaps),
}

/// A validated nested configuration, as the mock keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedConfig {
    VtdS1(VtdS1),
    SmmuV3Ste(SmmuV3Ste),
}

/// One validated user invalidation, as the mock received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserInv {
    Vtd(VtdS1Inv),
    SmmuV3(SmmuV3Inv),
}

/// What the mock keeps per domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockDomain {
    /// A value derived from the tag, to check the core hands it back.
    pub private: u64,
    /// A nested domain's configuration.
    pub nested: Option<NestedConfig>,
}

/// A domain as the mock saw it in an attach / detach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Blocked,
    Identity,
    Paging {
        tag: u32,
        root: u64,
    },
    Sva {
        tag: u32,
        root: u64,
    },
    Nested {
        tag: u32,
        parent_tag: u32,
        parent_root: u64,
    },
}

impl Seen {
    pub fn of(d: &DomainDesc<'_, MockDomain, AnyFormat>) -> Self {
        match *d {
            DomainDesc::Blocked => Seen::Blocked,
            DomainDesc::Identity => Seen::Identity,
            DomainDesc::Paging { hw, root, .. } => Seen::Paging {
                tag: hw.tag,
                root: root.0,
            },
            DomainDesc::Sva { hw, space } => Seen::Sva {
                tag: hw.tag,
                root: space.root.0,
            },
            DomainDesc::Nested {
                hw,
                parent_hw,
                parent_root,
                ..
            } => Seen::Nested {
                tag: hw.tag,
                parent_tag: parent_hw.tag,
                parent_root: parent_root.0,
            },
        }
    }

    pub fn tag(&self) -> Option<u32> {
        match *self {
            Seen::Paging { tag, .. } | Seen::Sva { tag, .. } | Seen::Nested { tag, .. } => {
                Some(tag)
            }
            _ => None,
        }
    }
}

/// Every call the core made, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Probe(u16),
    Enable(u16),
    Alloc {
        instance: u16,
        device: u32,
        kind: &'static str,
        tag: u32,
    },
    Free {
        instance: u16,
        tag: u32,
    },
    Attach {
        instance: u16,
        device: u32,
        pasid: Option<u32>,
        new: Seen,
        old: Seen,
    },
    DetachPasid {
        instance: u16,
        device: u32,
        pasid: u32,
        old: Seen,
    },
    Invalidate {
        tag: CacheTag,
        range: Option<(u64, u64)>,
        page_size: u64,
        tables: bool,
    },
    /// A completion wait, with the Hal's live page count at that moment.
    Wait {
        instance: u16,
        live_pages: u64,
    },
    InvalidateUser {
        tag: u32,
        inv: UserInv,
    },
    Respond {
        instance: u16,
        device: u32,
        pasid: Option<u32>,
        group: u16,
        response: Response,
    },
    Drain(u16),
    /// The core asked for the device's faults to be made visible.
    FlushFaults {
        instance: u16,
        device: u32,
    },
}

/// The mock. Instances `0..instances` exist.
pub struct Mock<'a> {
    pub calls: Vec<Call>,
    pub instances: u16,
    /// The Hal whose live pages each `Wait` records.
    pub pool: Option<&'a TestHal>,
    next_tag: u32,
    /// Tags of allocated domains (instance, tag): what `domain_free` must
    /// give back.
    pub live: BTreeSet<(u16, u32)>,
    /// What each (instance, device, pasid) translates through.
    pub hw: BTreeMap<(u16, u32, Option<u32>), Seen>,
    /// Count of `domain_alloc` calls.
    pub allocs: usize,
    /// Fail the Nth `domain_alloc` (1-based, absolute) with `NoMemory`.
    pub fail_alloc_at: Option<usize>,
    /// Domains (by tag) whose attach is refused `Incompatible`.
    pub incompatible: BTreeSet<u32>,
    /// The next attach / detach fails with this error.
    pub fail_attach: Option<Error>,
    /// Waits on this instance time out.
    pub fail_wait: Option<u16>,
    /// Fail the Nth invalidate call (1-based, absolute count).
    pub fail_invalidate_at: Option<usize>,
    invalidates: usize,
    /// User invalidations with this index (in a batch, 0-based) fail.
    pub fail_user_inv_at: Option<usize>,
    user_invs: usize,
    /// The next response fails with `Timeout`.
    pub fail_respond: bool,
    /// Fault flushes (`flush_faults`) fail with `Timeout` while set.
    pub fail_flush: bool,
    /// Drains fail with `Hardware` while set.
    pub fail_drain: bool,
    /// Record the fault flush of each attachment change: `flush_faults` and
    /// the drains that follow it. Off by default, so that tests of attach
    /// sequences see only the attach calls; the life-cycle tests turn it on.
    pub record_flushes: bool,
    /// Inside a fault flush: from `flush_faults` to the drain that finds the
    /// queue empty (returns less than its buffer), as the core drains.
    flushing: bool,
    /// Fault records waiting to be drained, per instance.
    pub pending: BTreeMap<u16, VecDeque<Fault>>,
    /// Nesting capabilities offered.
    pub nested: Option<NestedCaps>,
    /// Table format given to paging domains.
    pub format: AnyFormat,
    /// Caching mode.
    pub flush_on_map: bool,
    /// Direct-mapped regions, by device ID.
    pub direct: Vec<(u32, DirectRegion)>,
}

impl<'a> Mock<'a> {
    pub fn new(instances: u16) -> Self {
        Mock {
            calls: Vec::new(),
            instances,
            pool: None,
            next_tag: 1,
            live: BTreeSet::new(),
            hw: BTreeMap::new(),
            allocs: 0,
            fail_alloc_at: None,
            incompatible: BTreeSet::new(),
            fail_attach: None,
            fail_wait: None,
            fail_invalidate_at: None,
            invalidates: 0,
            fail_user_inv_at: None,
            user_invs: 0,
            fail_respond: false,
            fail_flush: false,
            fail_drain: false,
            record_flushes: false,
            flushing: false,
            pending: BTreeMap::new(),
            nested: None,
            format: AnyFormat::VtdSl(VtdSl::new(48, LargePages::all()).unwrap()),
            flush_on_map: false,
            direct: Vec::new(),
        }
    }

    pub fn with_pool(mut self, pool: &'a TestHal) -> Self {
        self.pool = Some(pool);
        self
    }

    fn known(&self, instance: u16) -> Result<(), Error> {
        if instance < self.instances {
            Ok(())
        } else {
            Err(Error::NotFound {
                what: Object::Instance,
            })
        }
    }

    /// Queue a fault record for the core to drain.
    pub fn inject(&mut self, f: Fault) {
        self.pending.entry(f.instance).or_default().push_back(f);
    }

    /// Calls of one shape, for counting.
    pub fn waits(&self) -> Vec<u16> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Wait { instance, .. } => Some(*instance),
                _ => None,
            })
            .collect()
    }

    pub fn invalidations(&self) -> Vec<CacheTag> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Invalidate { tag, .. } => Some(*tag),
                _ => None,
            })
            .collect()
    }

    pub fn responses(&self) -> Vec<(u32, Option<u32>, u16, Response)> {
        self.calls
            .iter()
            .filter_map(|c| match *c {
                Call::Respond {
                    device,
                    pasid,
                    group,
                    response,
                    ..
                } => Some((device, pasid, group, response)),
                _ => None,
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.calls.clear();
    }

    /// Record a call, unless it belongs to a fault flush nobody asked to see.
    fn record(&mut self, call: Call) {
        let flush_call = match call {
            Call::FlushFaults { .. } => {
                self.flushing = true;
                true
            }
            Call::Drain(_) => self.flushing,
            _ => false,
        };
        if self.record_flushes || !flush_call {
            self.calls.push(call);
        }
    }
}

impl TagInvalidate for Mock<'_> {
    fn invalidate(
        &mut self,
        tag: &CacheTag,
        range: Option<(u64, u64)>,
        page_size: u64,
        tables_freed: bool,
    ) -> Result<(), Error> {
        self.known(tag.instance)?;
        self.record(Call::Invalidate {
            tag: *tag,
            range,
            page_size,
            tables: tables_freed,
        });
        self.invalidates += 1;
        if self.fail_invalidate_at == Some(self.invalidates) {
            return Err(Error::Hardware {
                register: "mock IQERR",
                value: 1,
            });
        }
        Ok(())
    }

    fn wait(&mut self, instance: u16) -> Result<(), Error> {
        self.known(instance)?;
        let live_pages = self.pool.map_or(0, |p| p.counts().live_pages());
        self.record(Call::Wait {
            instance,
            live_pages,
        });
        self.user_invs = 0;
        if self.fail_wait == Some(instance) {
            return Err(Error::Timeout {
                what: "mock completion",
            });
        }
        Ok(())
    }
}

impl FaultResponder for Mock<'_> {
    fn respond(
        &mut self,
        instance: u16,
        device: u32,
        pasid: Option<u32>,
        group: u16,
        response: Response,
    ) -> Result<(), Error> {
        self.known(instance)?;
        self.record(Call::Respond {
            instance,
            device,
            pasid,
            group,
            response,
        });
        if std::mem::take(&mut self.fail_respond) {
            return Err(Error::Timeout {
                what: "mock page response",
            });
        }
        Ok(())
    }
}

impl IommuDriver for Mock<'_> {
    type DomainData = MockDomain;
    type Format = AnyFormat;

    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error> {
        self.known(instance)?;
        self.record(Call::Probe(instance));
        self.hw_info(instance)
    }

    fn enable(&mut self, instance: u16) -> Result<(), Error> {
        self.known(instance)?;
        self.record(Call::Enable(instance));
        Ok(())
    }

    fn hw_info(&self, instance: u16) -> Result<HwInfo, Error> {
        self.known(instance)?;
        let mut regs = [0; 8];
        regs[0] = 0x1000 + instance as u64;
        regs[1] = 0xabcd;
        Ok(HwInfo {
            ty: HW_INFO_TYPE_NONE,
            regs,
            len: 2,
        })
    }

    fn domain_alloc(
        &mut self,
        dev: &DeviceInfo,
        req: &DomainRequest<'_, MockDomain, AnyFormat>,
    ) -> Result<DomainHw<MockDomain, AnyFormat>, Error> {
        let instance = dev.dev.instance;
        self.known(instance)?;
        // What a real driver checks before it takes anything.
        let nested = match req {
            DomainRequest::Nested { data, .. } => Some(self.parse_nested(data)?),
            _ => None,
        };
        self.allocs += 1;
        if self.fail_alloc_at == Some(self.allocs) {
            return Err(Error::NoMemory);
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        let (kind, format) = match req {
            DomainRequest::Paging { .. } => ("paging", Some(self.format)),
            DomainRequest::Sva { .. } => ("sva", None),
            DomainRequest::Nested { .. } => ("nested", None),
        };
        self.record(Call::Alloc {
            instance,
            device: dev.dev.id,
            kind,
            tag,
        });
        self.live.insert((instance, tag));
        let mut hw = DomainHw::new(
            tag,
            format,
            MockDomain {
                private: tag as u64 * 10,
                nested,
            },
        );
        hw.user_pasids = matches!(nested, Some(NestedConfig::SmmuV3Ste(s)) if s.has_substreams());
        Ok(hw)
    }

    fn domain_free(&mut self, instance: u16, hw: &DomainHw<MockDomain, AnyFormat>) {
        self.record(Call::Free {
            instance,
            tag: hw.tag,
        });
        assert!(
            self.live.remove(&(instance, hw.tag)),
            "domain_free of a domain the mock never allocated: {instance}/{}",
            hw.tag
        );
    }

    fn attach(
        &mut self,
        dev: &DeviceInfo,
        pasid: Option<u32>,
        new: &DomainDesc<'_, MockDomain, AnyFormat>,
        old: &DomainDesc<'_, MockDomain, AnyFormat>,
    ) -> Result<(), Error> {
        let instance = dev.dev.instance;
        self.known(instance)?;
        let (new, old) = (Seen::of(new), Seen::of(old));
        self.record(Call::Attach {
            instance,
            device: dev.dev.id,
            pasid,
            new,
            old,
        });
        let key = (instance, dev.dev.id, pasid);
        let current = self.hw.get(&key).copied().unwrap_or(Seen::Blocked);
        assert_eq!(current, old, "core passed the wrong old domain");
        if let Some(e) = self.fail_attach.take() {
            return Err(e);
        }
        if new.tag().is_some_and(|t| self.incompatible.contains(&t)) {
            return Err(Error::Incompatible {
                what: "mock: told to refuse this domain",
            });
        }
        self.hw.insert(key, new);
        Ok(())
    }

    fn detach_pasid(
        &mut self,
        dev: &DeviceInfo,
        pasid: u32,
        old: &DomainDesc<'_, MockDomain, AnyFormat>,
    ) -> Result<(), Error> {
        let instance = dev.dev.instance;
        self.known(instance)?;
        let old = Seen::of(old);
        self.record(Call::DetachPasid {
            instance,
            device: dev.dev.id,
            pasid,
            old,
        });
        let key = (instance, dev.dev.id, Some(pasid));
        assert_eq!(
            self.hw.get(&key).copied(),
            Some(old),
            "core detached the wrong domain"
        );
        if let Some(e) = self.fail_attach.take() {
            return Err(e);
        }
        self.hw.remove(&key);
        Ok(())
    }

    fn invalidate_user(
        &mut self,
        domain: &DomainDesc<'_, MockDomain, AnyFormat>,
        _tags: TagView<'_>,
        array: &UserArray<'_>,
        ids: &dyn VirtualIds,
    ) -> InvalidateOutcome {
        let seen = Seen::of(domain);
        let Seen::Nested { tag, .. } = seen else {
            panic!("user invalidation for a non-nested domain: {seen:?}");
        };
        let fail_at = self.fail_user_inv_at;
        let queue = |calls: &mut Vec<Call>, index: &mut usize, inv: UserInv| {
            calls.push(Call::InvalidateUser { tag, inv });
            let i = *index;
            *index += 1;
            if fail_at == Some(i) {
                return Err(Error::Hardware {
                    register: "mock CMDQ_CONS.ERR",
                    value: 2,
                });
            }
            Ok(())
        };
        let (calls, index) = (&mut self.calls, &mut self.user_invs);
        match self.nested {
            Some(NestedCaps::SmmuV3(_)) => smmu_user::for_each_command(array, ids, |inv| {
                queue(calls, index, UserInv::SmmuV3(inv))
            }),
            _ => {
                vtd_user::for_each_invalidation(array, |inv| queue(calls, index, UserInv::Vtd(inv)))
            }
        }
    }

    fn drain_faults(&mut self, instance: u16, out: &mut [Fault]) -> Result<usize, Error> {
        self.known(instance)?;
        self.record(Call::Drain(instance));
        if self.fail_drain {
            self.flushing = false;
            return Err(Error::Hardware {
                register: "mock FSTS",
                value: 1,
            });
        }
        let q = self.pending.entry(instance).or_default();
        let mut n = 0;
        while n < out.len() {
            let Some(f) = q.pop_front() else { break };
            out[n] = f;
            n += 1;
        }
        if n < out.len() {
            self.flushing = false;
        }
        Ok(n)
    }

    fn flush_faults(&mut self, dev: &DeviceInfo) -> Result<(), Error> {
        self.known(dev.dev.instance)?;
        self.record(Call::FlushFaults {
            instance: dev.dev.instance,
            device: dev.dev.id,
        });
        if self.fail_flush {
            self.flushing = false;
            return Err(Error::Timeout {
                what: "mock fault flush",
            });
        }
        Ok(())
    }

    fn flush_on_map(&self, _instance: u16) -> bool {
        self.flush_on_map
    }

    fn direct_regions(&self, dev: &DeviceInfo, out: &mut [DirectRegion]) -> usize {
        let mine = self.direct.iter().filter(|(d, _)| *d == dev.dev.id);
        let mut n = 0;
        for (slot, (_, r)) in out.iter_mut().zip(mine) {
            *slot = *r;
            n += 1;
        }
        n
    }
}

impl Mock<'_> {
    /// Validate nested user data as the driver of the offered nesting would.
    fn parse_nested(&self, data: &UserData<'_>) -> Result<NestedConfig, Error> {
        match (self.nested, data.data_type) {
            (None, _) => Err(Error::Unsupported {
                what: "nested translation",
            }),
            (Some(NestedCaps::VtdS1(c)), HWPT_DATA_VTD_S1) => {
                VtdS1::parse(data.bytes, &c).map(NestedConfig::VtdS1)
            }
            (Some(NestedCaps::SmmuV3(c)), HWPT_DATA_ARM_SMMUV3) => {
                SmmuV3Ste::parse(data.bytes, &c).map(NestedConfig::SmmuV3Ste)
            }
            (Some(_), t) => Err(Error::InvalidField {
                field: "data_type",
                value: t.into(),
            }),
        }
    }
}

// ----- fixtures shared by the core tests

/// The capacities the core tests were written for: `D` domains, `V`
/// devices, the whole PASID space, and the rest as below.
pub type TestCaps<const D: usize, const V: usize> = Caps<
    D,
    V,
    16384,
    INSTANCES,
    SPACES,
    BONDS,
    TAGS_PER_DOMAIN,
    PASIDS_PER_DEVICE,
    FAULTS,
    FAULT_OBJECTS,
    OBJECT_GROUPS,
    GROUP_FAULTS,
    SPACE_DOMAINS,
    UNFLUSHED,
>;
/// IOMMU instances.
pub const INSTANCES: usize = 8;
/// Address spaces.
pub const SPACES: usize = 16;
/// Bonds.
pub const BONDS: usize = 64;
/// Cache tags per domain.
pub const TAGS_PER_DOMAIN: usize = 16;
/// PASID attachments per device.
pub const PASIDS_PER_DEVICE: usize = 16;
/// Queued faults.
pub const FAULTS: usize = 64;
/// Fault objects.
pub const FAULT_OBJECTS: usize = 4;
/// Groups per fault object.
pub const OBJECT_GROUPS: usize = 16;
/// Faults per group in a fault object.
pub const GROUP_FAULTS: usize = 8;
/// SVA domains per address space.
pub const SPACE_DOMAINS: usize = 4;
/// Unflushed attachments.
pub const UNFLUSHED: usize = 8;

/// A boxed core over `mock` with every instance of the mock added and
/// `devices` (device, PASID bits, ATS) registered; the setup calls stay
/// recorded.
pub fn core_over<'a, const D: usize, const V: usize>(
    pool: &'a TestHal,
    mock: Mock<'a>,
    devices: &[(DeviceId, u8, bool)],
) -> Box<Iommu<Mock<'a>, &'a TestHal, TestCaps<D, V>>> {
    let instances = mock.instances;
    let mut c = Box::new(Iommu::new(mock, pool));
    for i in 0..instances {
        c.add_instance(i).unwrap();
    }
    for &(dev, pasid_bits, ats) in devices {
        c.register_device(DeviceInfo {
            dev,
            pasid_bits,
            ats,
        })
        .unwrap();
    }
    c
}

/// Nesting caps of a plain VT-d unit: 4-level first stage, 48-bit parent,
/// no supervisor requests, no extended accessed flag.
pub fn vtd_nested_caps() -> NestedCaps {
    NestedCaps::VtdS1(VtdS1Caps {
        five_level: false,
        max_pa_bits: 48,
        sre: false,
        eafe: false,
    })
}

/// `struct iommu_hwpt_vtd_s1`: flags, pgtbl_addr, addr_width, __reserved.
pub fn vtd_s1(flags: u64, pgtbl: u64, addr_width: u32, reserved: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&pgtbl.to_le_bytes());
    b.extend_from_slice(&addr_width.to_le_bytes());
    b.extend_from_slice(&reserved.to_le_bytes());
    b
}

/// `struct iommu_hwpt_vtd_s1_invalidate`: addr, npages, flags, __reserved.
pub fn vtd_inv(addr: u64, npages: u64, flags: u32, reserved: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(&addr.to_le_bytes());
    b.extend_from_slice(&npages.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&reserved.to_le_bytes());
    b
}

/// A PASID bond's (domain, PASID, users), for tests written before
/// whole-device bonds (whose PASID is `None`).
pub trait BondTuple {
    fn t(self) -> (iommu::core::DomainId, u32, u32);
}

impl BondTuple for iommu::core::BondInfo {
    fn t(self) -> (iommu::core::DomainId, u32, u32) {
        (self.domain, self.pasid.expect("a PASID bond"), self.users)
    }
}
