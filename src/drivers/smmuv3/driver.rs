//! The SMMUv3 driver: the core's [`IommuDriver`] over one or more SMMUs.
//!
//! Paging domains are stage 1 (Arm 4 KiB, 48-bit, through a CD) where the
//! SMMU has it, else stage 2; a nest parent is always stage 2. SVA domains
//! are a CD over the CPU's table. A nested domain is a guest's virtual STE
//! (its CD table, in guest memory) over a stage-2 parent. Identity is a
//! bypass STE, Blocked an aborting one.
//!
//! A domain's cache tag says how its translations are tagged: bits 15:0
//! hold the ASID (stage 1, under [`VMID_S1`]) or the VMID (stage 2, and a
//! nested domain's parent), bits 17:16 which ([`TAG_S2`], [`TAG_NESTED`]).

use core::ptr::NonNull;

use crate::core::{
    CacheTag, CpuFormat, DeviceInfo, DomainDesc, DomainHw, DomainRequest, Fault, FaultResponder,
    HwInfo, InvalidateOutcome, IommuDriver, PagingFlags, Response, TagInvalidate, TagKind, TagView,
    UserArray, VirtualIds,
};
use crate::error::{Error, Object, invalid};
use crate::hal::Hal;
use crate::pgtable::{ArmS1, ArmS2, Either, MairIndices};

use super::cd::{self, Stage1};
use super::cdtab::CdTab;
use super::cmd::{self, Command};
use super::master::Rid;
use super::ste::Stage2;
use super::tlbi::{self, Plan};
use super::unit::{ASID_RESERVED, Unit, VMID_S1};
use super::user::{self, HW_INFO_TYPE_ARM_SMMUV3, HWPT_DATA_ARM_SMMUV3, SmmuV3Ste};

/// The table formats of SMMUv3 paging domains: stage 1, or stage 2.
pub type SmmuFormat = Either<ArmS1, ArmS2>;

/// Tag kind: a stage-2 domain's VMID.
pub const TAG_S2: u32 = 1 << 16;
/// Tag kind: a nested domain, cached under its parent's VMID.
pub const TAG_NESTED: u32 = 2 << 16;
const TAG_KIND: u32 = 3 << 16;

/// What the driver keeps per domain besides its tag and format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuDomain {
    /// The SMMU it belongs to.
    pub instance: u16,
    /// A nested domain's validated virtual STE.
    pub nested: Option<SmmuV3Ste>,
}

/// The SMMUv3 driver, serving up to `N` SMMUs.
pub struct Smmu<H: Hal + Clone, const N: usize = 2> {
    hal: H,
    units: heapless::Vec<Unit, N>,
}

fn unknown() -> Error {
    Error::NotFound {
        what: Object::Instance,
    }
}

impl<H: Hal + Clone, const N: usize> Smmu<H, N> {
    /// A driver serving no SMMU yet. A `const fn`: a core over it can be
    /// built at compile time and kept in a `static` (in `.bss` when the
    /// `Hal` is all zeroes).
    pub const fn new(hal: H) -> Self {
        Smmu {
            hal,
            units: heapless::Vec::new(),
        }
    }

    /// Serve the SMMU whose register pages are mapped at `base` as
    /// `instance`. Nothing is written to it until the core probes and
    /// enables it.
    ///
    /// # Safety
    /// `base` maps both register pages (128 KiB, device memory) for as long
    /// as the driver lives, and nothing else drives the SMMU meanwhile.
    pub unsafe fn add_unit(&mut self, instance: u16, base: NonNull<u8>) -> Result<(), Error> {
        if self.units.iter().any(|u| u.instance == instance) {
            return Err(Error::Busy {
                what: "SMMUv3 instance already served",
            });
        }
        // SAFETY: the caller's promise.
        let unit = unsafe { Unit::new(instance, base) };
        self.units.push(unit).map_err(|_| Error::Exhausted {
            what: Object::Instance,
        })
    }

    /// Use a linear stream table on `instance` even where SIDSIZE asks for
    /// two levels (StreamIDs beyond 2^10 are then refused). Before enable.
    pub fn set_linear_stream_table(&mut self, instance: u16, on: bool) -> Result<(), Error> {
        let u = self.unit_mut(instance)?;
        if u.strtab.is_some() {
            return Err(Error::Busy {
                what: "SMMUv3 already enabled",
            });
        }
        u.force_linear = on;
        Ok(())
    }

    /// The SMMU serving `instance`.
    pub fn unit(&self, instance: u16) -> Result<&Unit, Error> {
        self.units
            .iter()
            .find(|u| u.instance == instance)
            .ok_or_else(unknown)
    }

    /// The SMMU serving `instance`, mutably (statistics, test hooks).
    pub fn unit_mut(&mut self, instance: u16) -> Result<&mut Unit, Error> {
        self.units
            .iter_mut()
            .find(|u| u.instance == instance)
            .ok_or_else(unknown)
    }

    /// The embedder services the driver allocates from.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// Queue raw commands on `instance` (not synchronised): for tests of
    /// the queue's error handling.
    #[doc(hidden)]
    pub fn submit_raw(&mut self, instance: u16, cmds: &[Command]) -> Result<(), Error> {
        let hal = self.hal.clone();
        self.unit_mut(instance)?.submit(&hal, cmds)
    }

    fn stage2_of(
        u: &Unit,
        hw: &DomainHw<SmmuDomain, SmmuFormat>,
        root: u64,
    ) -> Result<Stage2, Error> {
        let Some(Either::B(f)) = hw.format else {
            return Err(Error::Incompatible {
                what: "a nesting parent without a stage-2 table",
            });
        };
        Ok(Stage2 {
            vmid: hw.tag as u16,
            ttb: root,
            t0sz: f.t0sz(),
            sl0: f.sl0(),
            ps: cd::ps(u.oas_bits()),
        })
    }

    /// The CD a stage-1 domain needs, or `None` for one that is not.
    fn stage1_of(
        u: &Unit,
        new: &DomainDesc<'_, SmmuDomain, SmmuFormat>,
    ) -> Result<Option<Stage1>, Error> {
        let stall = u.id.idr0.stall_model == super::regs::StallModel::StallForced;
        Ok(match new {
            DomainDesc::Paging { hw, root, .. } => match hw.format {
                Some(Either::A(f)) => Some(Stage1 {
                    ttb0: root.get(),
                    t0sz: f.t0sz(),
                    oas_bits: u.oas_bits(),
                    mair: f.mair(),
                    asid: hw.tag as u16,
                    stall,
                }),
                _ => None,
            },
            DomainDesc::Sva { hw, space } => {
                let CpuFormat::Aarch64 { tcr, mair } = space.format else {
                    return Err(Error::Incompatible {
                        what: "a CPU page table other than AArch64",
                    });
                };
                if (tcr >> 14) & 3 != 0 {
                    return Err(Error::Incompatible {
                        what: "a CPU page table with another granule than 4 KiB (TCR_EL1.TG0)",
                    });
                }
                Some(Stage1 {
                    ttb0: space.root.get(),
                    t0sz: (tcr & 0x3f) as u8,
                    oas_bits: u.oas_bits(),
                    mair,
                    asid: hw.tag as u16,
                    stall,
                })
            }
            _ => None,
        })
    }

    /// The device's CD table, made if it has none.
    fn cd_table(&mut self, instance: u16, dev: &DeviceInfo) -> Result<CdTab, Error> {
        let hal = self.hal.clone();
        let u = self.unit_mut(instance)?;
        let sid = dev.dev.id;
        let bits = u.id.idr1.ssid_bits.min(dev.pasid_bits);
        let cd2l = u.id.idr0.cd2l;
        let m = u.master(sid, true)?.ok_or(Error::NoMemory)?;
        if let Some(t) = m.cd {
            return Ok(t);
        }
        let t = CdTab::new(&hal, bits, cd2l)?;
        m.cd = Some(t);
        Ok(t)
    }

    fn attach_rid(
        &mut self,
        dev: &DeviceInfo,
        new: &DomainDesc<'_, SmmuDomain, SmmuFormat>,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        let instance = dev.dev.instance;
        let sid = dev.dev.id;
        let u = self.unit(instance)?;
        let stage1 = Self::stage1_of(u, new)?;
        let rid = match new {
            DomainDesc::Blocked => Rid::Abort,
            DomainDesc::Identity => Rid::Bypass,
            DomainDesc::Paging { .. } | DomainDesc::Sva { .. } if stage1.is_some() => Rid::Stage1,
            DomainDesc::Paging { hw, root, .. } => Rid::Stage2(Self::stage2_of(u, hw, root.get())?),
            DomainDesc::Sva { .. } => unreachable_sva(),
            DomainDesc::Nested {
                hw,
                parent_hw,
                parent_root,
            } => {
                let v = hw.private.nested.ok_or(Error::Incompatible {
                    what: "a nested domain without a virtual STE",
                })?;
                Rid::Nested(v.words(), Self::stage2_of(u, parent_hw, parent_root.get())?)
            }
        };
        let ats = dev.ats && u.id.idr0.ats;
        let table = match stage1 {
            Some(_) => Some(self.cd_table(instance, dev)?),
            None => None,
        };
        let u = self.unit_mut(instance)?;
        let mut m = *u.master(sid, true)?.ok_or(Error::NoMemory)?;
        let was_stage1 = m.rid == Rid::Stage1;
        if m.pasids > 0 && matches!(rid, Rid::Stage2(_) | Rid::Nested(..)) {
            return Err(Error::Incompatible {
                what: "a stage-2 domain at the requester ID of a device with PASIDs attached",
            });
        }
        // Into stage 1: the CD first, then the STE that reaches it.
        if let (Some(s1), Some(t)) = (stage1, table) {
            u.install_cd(&hal, sid, &t, 0, &cd::build(&s1))?;
        }
        m.rid = rid;
        m.ats = ats;
        u.install_ste(&hal, &m)?;
        // Out of stage 1: the STE no longer reaches CD 0; clear it.
        if was_stage1 && rid != Rid::Stage1 {
            if let Some(t) = m.cd {
                u.install_cd(&hal, sid, &t, 0, &[0; cd::DWORDS])?;
            }
        }
        u.release_cd_table(&hal, &mut m);
        if ats {
            u.submit(&hal, &[cmd::atc_inv(sid, None, 0, cmd::ATC_SIZE_ALL as u8)])?;
            u.sync(&hal)?;
        }
        if let Some(slot) = u.master(sid, false)? {
            *slot = m;
        }
        Ok(())
    }

    fn attach_ssid(
        &mut self,
        dev: &DeviceInfo,
        pasid: u32,
        new: &DomainDesc<'_, SmmuDomain, SmmuFormat>,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        let instance = dev.dev.instance;
        let sid = dev.dev.id;
        let u = self.unit(instance)?;
        if u.id.idr1.ssid_bits == 0 || dev.pasid_bits == 0 {
            return Err(Error::Unsupported {
                what: "substreams (SMMU_IDR1.SSIDSIZE and the device's PASID capability)",
            });
        }
        let target = match (new, Self::stage1_of(u, new)?) {
            (DomainDesc::Blocked, _) => None,
            (_, Some(s1)) => Some(cd::build(&s1)),
            _ => {
                return Err(Error::Incompatible {
                    what: "only stage-1 and SVA domains attach at a PASID",
                });
            }
        };
        let t = self.cd_table(instance, dev)?;
        let u = self.unit_mut(instance)?;
        let mut m = *u.master(sid, true)?.ok_or(Error::NoMemory)?;
        if matches!(m.rid, Rid::Stage2(_) | Rid::Nested(..)) {
            return Err(Error::Incompatible {
                what: "PASIDs of a device whose requester ID is on a stage-2 domain",
            });
        }
        let was = t
            .slot(&hal, pasid, false)?
            .map(|(p, _)| {
                // SAFETY: a CD in the device's table.
                unsafe {
                    (hal.phys_to_virt(crate::addr::PhysAddr(p)) as *const u64).read_volatile()
                }
            })
            .is_some_and(|w| cd::V.get(&[w]) != 0);
        u.install_cd(&hal, sid, &t, pasid, &target.unwrap_or([0; cd::DWORDS]))?;
        match (was, target.is_some()) {
            (false, true) => m.pasids += 1,
            (true, false) => m.pasids = m.pasids.saturating_sub(1),
            _ => {}
        }
        u.install_ste(&hal, &m)?;
        u.release_cd_table(&hal, &mut m);
        if let Some(slot) = u.master(sid, false)? {
            *slot = m;
        }
        Ok(())
    }

    /// Queue what invalidates `range` for `tag` on `u`.
    fn queue_invalidation(
        u: &mut Unit,
        hal: &H,
        tag: &CacheTag,
        range: Option<(u64, u64)>,
        page_size: u64,
        leaf: bool,
    ) -> Result<(), Error> {
        let id = tag.id as u16;
        let ril = u.id.idr3.ril;
        if tag.kind == TagKind::DevTlb {
            if !u.id.idr0.ats {
                // No ATS on this SMMU: the device has no ATC to invalidate
                // (its STE never enables ATS), and ATC_INV is illegal.
                return Ok(());
            }
            let (addr, size) = match range {
                Some((s, e)) => atc_block(s, e),
                None => (0, cmd::ATC_SIZE_ALL as u8),
            };
            return u.submit(hal, &[cmd::atc_inv(tag.device, tag.pasid, addr, size)]);
        }
        let kind = tag.id & TAG_KIND;
        let mut out: Result<(), Error> = Ok(());
        let mut push = |u: &mut Unit, c: Command| {
            // Pages a TLBI names: a range's blocks, or one leaf.
            match c.opcode() {
                cmd::op::TLBI_NH_VA | cmd::op::TLBI_S2_IPA if c.get(cmd::TG) != 0 => {
                    u.stats.pages_invalidated += (c.get(cmd::NUM) + 1) << c.get(cmd::SCALE);
                }
                cmd::op::TLBI_NH_VA | cmd::op::TLBI_S2_IPA => {
                    u.stats.pages_invalidated += page_size.max(4096) / 4096;
                }
                _ => u.stats.whole_invalidations += 1,
            }
            if out.is_ok() {
                out = u.submit(hal, &[c]);
            }
        };
        let plan = |u: &mut Unit,
                    push: &mut dyn FnMut(&mut Unit, Command),
                    make: &dyn Fn(&cmd::Range) -> Command| match range {
            Some((s, e)) => {
                let mut ranges: heapless::Vec<cmd::Range, 16> = heapless::Vec::new();
                let mut many = false;
                let p = tlbi::plan(s, e, page_size, ril, leaf, |r| {
                    if ranges.push(r).is_err() {
                        many = true;
                    }
                });
                if p == Plan::All {
                    return Plan::All;
                }
                if many {
                    // Hundreds of per-page commands: queue them as planned.
                    tlbi::plan(s, e, page_size, ril, leaf, |r| push(u, make(&r)));
                } else {
                    for r in &ranges {
                        push(u, make(r));
                    }
                }
                Plan::Ranges
            }
            None => Plan::All,
        };
        match kind {
            0 => {
                if plan(u, &mut push, &|r| cmd::tlbi_nh_va(VMID_S1, id, r)) == Plan::All {
                    push(u, cmd::tlbi_nh_asid(VMID_S1, id));
                }
            }
            TAG_S2 => {
                if plan(u, &mut push, &|r| cmd::tlbi_s2_ipa(id, r)) == Plan::All {
                    push(u, cmd::tlbi_s12_vmall(id));
                }
            }
            _ => {
                // A nested domain: its parent's unmaps reach the guest's
                // stage-1 entries combined with them, tagged by the VMID.
                if tag.kind == TagKind::NestedParent
                    && plan(u, &mut push, &|r| cmd::tlbi_s2_ipa(id, r)) == Plan::All
                {
                    push(u, cmd::tlbi_s12_vmall(id));
                }
                push(u, cmd::tlbi_nh_all(id));
            }
        }
        out
    }
}

fn unreachable_sva() -> Rid {
    // `stage1_of` returns a CD for every SVA domain or an error.
    Rid::Abort
}

/// The smallest aligned block of 4 KiB pages covering `[start, end)`, as
/// ATC_INV takes it: (address, log2 pages).
fn atc_block(start: u64, end: u64) -> (u64, u8) {
    let (first, last) = (start >> 12, end.saturating_sub(1) >> 12);
    let size = 64 - (first ^ last).leading_zeros();
    (((first >> size) << size) << 12, size as u8)
}

impl<H: Hal + Clone, const N: usize> TagInvalidate for Smmu<H, N> {
    fn invalidate(
        &mut self,
        tag: &CacheTag,
        range: Option<(u64, u64)>,
        page_size: u64,
        tables_freed: bool,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        let u = self.unit_mut(tag.instance)?;
        Self::queue_invalidation(u, &hal, tag, range, page_size, !tables_freed)
    }

    fn wait(&mut self, instance: u16) -> Result<(), Error> {
        let hal = self.hal.clone();
        self.unit_mut(instance)?.sync(&hal)
    }
}

impl<H: Hal + Clone, const N: usize> FaultResponder for Smmu<H, N> {
    fn respond(
        &mut self,
        instance: u16,
        device: u32,
        pasid: Option<u32>,
        group: u16,
        response: Response,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        self.unit_mut(instance)?
            .respond(&hal, device, pasid, group, response)
    }
}

impl<H: Hal + Clone, const N: usize> IommuDriver for Smmu<H, N> {
    type DomainData = SmmuDomain;
    type Format = SmmuFormat;

    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error> {
        self.unit_mut(instance)?.probe()?;
        self.hw_info(instance)
    }

    fn enable(&mut self, instance: u16) -> Result<(), Error> {
        let hal = self.hal.clone();
        self.unit_mut(instance)?.enable(&hal)
    }

    fn hw_info(&self, instance: u16) -> Result<HwInfo, Error> {
        let id = self.unit(instance)?.id;
        let regs = [
            id.idr0.raw,
            id.idr1.raw,
            id.idr2,
            id.idr3.raw,
            id.idr4,
            id.idr5.raw,
            id.iidr.raw,
            id.aidr.raw,
        ]
        .map(u64::from);
        Ok(HwInfo {
            ty: HW_INFO_TYPE_ARM_SMMUV3,
            regs,
            len: 8,
        })
    }

    fn domain_alloc(
        &mut self,
        dev: &DeviceInfo,
        req: &DomainRequest<'_, SmmuDomain, SmmuFormat>,
    ) -> Result<DomainHw<SmmuDomain, SmmuFormat>, Error> {
        let instance = dev.dev.instance;
        let u = self.unit_mut(instance)?;
        let (s1p, s2p) = (u.id.idr0.stage1, u.id.idr0.stage2);
        let oas = u.oas_bits();
        let private = SmmuDomain {
            instance,
            nested: None,
        };
        match req {
            DomainRequest::Paging { flags } => {
                if flags.contains(PagingFlags::DIRTY_TRACKING) {
                    return Err(Error::Unsupported {
                        what: "dirty tracking (SMMU_IDR0.HTTU with the table format's DBM)",
                    });
                }
                let parent = flags.contains(PagingFlags::NEST_PARENT);
                if parent && !(s1p && s2p) {
                    return Err(Error::Unsupported {
                        what: "nested translation (SMMU_IDR0.S1P and S2P)",
                    });
                }
                if parent || !s1p {
                    let f = ArmS2::new(oas, oas)?;
                    let vmid = u.vmids.alloc(Object::Domain)?;
                    return Ok(DomainHw::new(
                        TAG_S2 | u32::from(vmid),
                        Some(Either::B(f)),
                        private,
                    ));
                }
                let f = ArmS1::new(MairIndices::default(), oas)?;
                let asid = u.asids.alloc(Object::Domain)?;
                Ok(DomainHw::new(asid.into(), Some(Either::A(f)), private))
            }
            DomainRequest::Sva { space } => {
                if !s1p {
                    return Err(Error::Unsupported {
                        what: "stage 1 for SVA (SMMU_IDR0.S1P)",
                    });
                }
                if !matches!(space.format, CpuFormat::Aarch64 { .. }) {
                    return Err(Error::Incompatible {
                        what: "a CPU page table other than AArch64",
                    });
                }
                // The CPU's own ASID where it is free, so that the SMMU's
                // TLB entries carry the tag the CPU's do; a private one
                // otherwise. (The driver sets CR2.PTM: broadcast TLBIs are
                // ignored and `invalidate_range` invalidates either way.)
                let cpu = u16::try_from(space.asid)
                    .ok()
                    .filter(|&a| a != ASID_RESERVED && u.asids.take(a));
                let asid = match cpu {
                    Some(a) => a,
                    None => u.asids.alloc(Object::Domain)?,
                };
                Ok(DomainHw::new(asid.into(), None, private))
            }
            DomainRequest::Nested { parent, data } => {
                if data.data_type != HWPT_DATA_ARM_SMMUV3 {
                    return Err(invalid("data_type", data.data_type.into()));
                }
                if !(s1p && s2p) {
                    return Err(Error::Unsupported {
                        what: "nested translation (SMMU_IDR0.S1P and S2P)",
                    });
                }
                let Some(Either::B(f)) = parent.format else {
                    return Err(Error::Incompatible {
                        what: "a nesting parent without a stage-2 table",
                    });
                };
                let mut caps = u.id.nested_caps();
                caps.oas_bits = caps.oas_bits.min(64 - u32::from(f.t0sz()));
                let v = SmmuV3Ste::parse(data.bytes, &caps)?;
                let vmid = parent.tag & 0xffff;
                let mut hw = DomainHw::new(
                    TAG_NESTED | vmid,
                    None,
                    SmmuDomain {
                        instance,
                        nested: Some(v),
                    },
                );
                hw.user_pasids = v.has_substreams();
                Ok(hw)
            }
        }
    }

    fn domain_free(&mut self, instance: u16, hw: &DomainHw<SmmuDomain, SmmuFormat>) {
        let hal = self.hal.clone();
        let Ok(u) = self.unit_mut(instance) else {
            return;
        };
        let id = hw.tag as u16;
        // What the domain left in the TLBs goes before its tag is reused.
        let (c, free): (Command, fn(&mut Unit, u16)) = match hw.tag & TAG_KIND {
            0 => (cmd::tlbi_nh_asid(VMID_S1, id), |u, id| u.asids.free(id)),
            TAG_S2 => (cmd::tlbi_s12_vmall(id), |u, id| u.vmids.free(id)),
            _ => (cmd::tlbi_nh_all(id), |_, _| {}),
        };
        if u.submit(&hal, &[c]).and_then(|_| u.sync(&hal)).is_ok() {
            free(u, id);
        }
        // Else the ID is leaked rather than reused over stale entries.
    }

    fn attach(
        &mut self,
        dev: &DeviceInfo,
        pasid: Option<u32>,
        new: &DomainDesc<'_, SmmuDomain, SmmuFormat>,
        _old: &DomainDesc<'_, SmmuDomain, SmmuFormat>,
    ) -> Result<(), Error> {
        match pasid {
            None => self.attach_rid(dev, new),
            Some(p) => self.attach_ssid(dev, p, new),
        }
    }

    fn detach_pasid(
        &mut self,
        dev: &DeviceInfo,
        pasid: u32,
        _old: &DomainDesc<'_, SmmuDomain, SmmuFormat>,
    ) -> Result<(), Error> {
        self.attach_ssid(dev, pasid, &DomainDesc::Blocked)
    }

    fn invalidate_user(
        &mut self,
        domain: &DomainDesc<'_, SmmuDomain, SmmuFormat>,
        _tags: TagView<'_>,
        array: &UserArray<'_>,
        ids: &dyn VirtualIds,
    ) -> InvalidateOutcome {
        let hal = self.hal.clone();
        let (instance, vmid) = match domain {
            DomainDesc::Nested { hw, parent_hw, .. } => (hw.private.instance, parent_hw.tag as u16),
            _ => (u16::MAX, 0),
        };
        let unit = self.units.iter_mut().find(|u| u.instance == instance);
        let mut unit = unit;
        user::for_each_command(array, ids, |inv| {
            let u = unit.as_deref_mut().ok_or(Error::Incompatible {
                what: "user invalidation needs a nested domain",
            })?;
            let mut c = inv.to_command();
            if matches!(
                c.opcode(),
                cmd::op::TLBI_NH_ALL
                    | cmd::op::TLBI_NH_ASID
                    | cmd::op::TLBI_NH_VA
                    | cmd::op::TLBI_NH_VAA
            ) {
                // The guest's stage 1 is tagged with its parent's VMID.
                c = c.with(cmd::VMID, vmid.into());
            }
            u.submit(&hal, &[c])
        })
    }

    fn drain_faults(&mut self, instance: u16, out: &mut [Fault]) -> Result<usize, Error> {
        let hal = self.hal.clone();
        self.unit_mut(instance)?.drain_records(&hal, out)
    }

    fn flush_faults(&mut self, dev: &DeviceInfo) -> Result<(), Error> {
        let hal = self.hal.clone();
        let u = self.unit_mut(dev.dev.instance)?;
        let stalls = u.id.idr0.stall_model != super::regs::StallModel::TerminateOnly;
        if u.priq.is_some() || stalls {
            // Every event and page request of the device's traffic before
            // the change is in its queue once a CMD_SYNC after it completed.
            u.sync(&hal)?;
        }
        Ok(())
    }
}
