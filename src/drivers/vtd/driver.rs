//! The VT-d driver: the core's [`IommuDriver`] over one or more remapping
//! units (DRHDs).
//!
//! Each unit runs in legacy mode (root and context tables, second-level
//! translation) or, where ECAP.SMTS offers it, scalable mode (a PASID
//! directory and PASID tables per device; second-level, first-level,
//! pass-through and nested PASID entries). Paging domains get second-level
//! tables at the unit's AGAW where the unit walks them, else first-level
//! (x86-64) tables; SVA domains translate through a CPU page table at first
//! level; Identity is pass-through where ECAP.PT, else an identity-mapped
//! second-level table.

use core::ptr::NonNull;

use crate::addr::{Iova, PhysAddr};
use crate::core::{
    CacheTag, CpuFormat, DeviceInfo, DirectRegion, DomainDesc, DomainHw, DomainRequest, Fault,
    FaultResponder, HwInfo, InvalidateOutcome, IommuDriver, PagingFlags, Response, TagInvalidate,
    TagKind, TagView, UserArray, VirtualIds,
};
use crate::error::{Error, Object, invalid};
use crate::hal::Hal;
use crate::pgtable::{Either, PageTable, Prot, VtdSl, X86_64};

use super::context::{self, aw, tt};
use super::desc::{self, Desc};
use super::pasid_entry::{self, Translation};
use super::psi::{self, Plan};
use super::tables::DevCaps;
use super::unit::{DID_IDENTITY, DidKind, Unit};
use super::user::{self, HW_INFO_TYPE_INTEL_VTD, HWPT_DATA_VTD_S1, VtdS1, VtdS1Flags, VtdS1Inv};

/// The table formats of VT-d paging domains: second level, or first level
/// (x86-64 paging) on units that walk only that.
pub type VtdFormat = Either<VtdSl, X86_64>;

/// The PASID that requests without one use in scalable mode
/// (the context entry's RID_PASID).
pub const RID_PASID: u32 = 0;

/// Bytes an Identity table covers by default where the unit has no
/// pass-through (see [`Vtd::set_identity_limit`]).
pub const DEFAULT_IDENTITY_LIMIT: u64 = 4 << 30;

/// What the driver keeps per domain besides its DID and format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtdDomain {
    /// The validated guest stage 1 of a nested domain.
    pub nested: Option<VtdS1>,
}

/// Reserved memory regions (DMAR RMRRs) a unit keeps at most.
pub const MAX_RMRRS: usize = 8;
/// Devices one RMRR names at most.
pub const MAX_RMRR_DEVICES: usize = 8;

/// A DMAR reserved memory region: devices that must keep reaching
/// `[base, base + len)` at the same address.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rmrr {
    base: u64,
    len: u64,
    sids: heapless::Vec<u16, MAX_RMRR_DEVICES>,
}

/// A unit and what the driver keeps beside it.
struct Served<H: Hal> {
    unit: Unit,
    rmrrs: heapless::Vec<Rmrr, MAX_RMRRS>,
    /// Identity-mapped second-level table (units without ECAP.PT).
    identity: Option<PageTable<VtdSl, H>>,
    probed: bool,
}

/// The VT-d driver, serving up to `N` remapping units.
pub struct Vtd<H: Hal + Clone, const N: usize = 4> {
    hal: H,
    units: heapless::Vec<Served<H>, N>,
    /// `None`: [`DEFAULT_IDENTITY_LIMIT`] (kept as `None` so that a new
    /// driver is all zeroes, and a core over it in a `static` in `.bss`).
    identity_limit: Option<u64>,
}

fn unknown() -> Error {
    Error::NotFound {
        what: Object::Instance,
    }
}

fn source_id(dev: &DeviceInfo) -> Result<u16, Error> {
    u16::try_from(dev.dev.id).map_err(|_| Error::OutOfRange {
        what: "VT-d source-id",
        value: dev.dev.id.into(),
    })
}

impl<H: Hal + Clone, const N: usize> Vtd<H, N> {
    /// A driver serving no unit yet. A `const fn`: a core over it can be
    /// built at compile time and kept in a `static` (in `.bss` when the
    /// `Hal` is all zeroes).
    pub const fn new(hal: H) -> Self {
        Vtd {
            hal,
            units: heapless::Vec::new(),
            identity_limit: None,
        }
    }

    /// Serve the unit whose registers are mapped at `base` as `instance`
    /// (the embedder's index, which the core's calls then name). Nothing
    /// is written to the unit until the core probes and enables it.
    ///
    /// # Safety
    /// `base` maps the unit's whole register block (the DRHD's size, device
    /// memory) for as long as the driver lives, and nothing else drives the
    /// unit meanwhile.
    pub unsafe fn add_unit(&mut self, instance: u16, base: NonNull<u8>) -> Result<(), Error> {
        if self.units.iter().any(|s| s.unit.instance == instance) {
            return Err(Error::Busy {
                what: "VT-d instance already served",
            });
        }
        // SAFETY: the caller's promise.
        let unit = unsafe { Unit::new(instance, base) };
        self.units
            .push(Served {
                unit,
                rmrrs: heapless::Vec::new(),
                identity: None,
                probed: false,
            })
            .map_err(|_| Error::Exhausted {
                what: Object::Instance,
            })
    }

    /// Record a DMAR RMRR of `instance`: the devices `sids` (the embedder
    /// resolved the RMRR's device scopes) must keep reaching `[base, limit]`
    /// (inclusive, as in the table) at the same address. Every paging
    /// domain attached at one of them then maps the range one-to-one (the
    /// core does it, through [`IommuDriver::direct_regions`]). Refused:
    /// an empty or inverted range, one not 4 KiB aligned as the
    /// specification requires (`Unaligned`), more than [`MAX_RMRRS`]
    /// regions or [`MAX_RMRR_DEVICES`] devices (`Exhausted`).
    pub fn add_rmrr(
        &mut self,
        instance: u16,
        base: u64,
        limit: u64,
        sids: &[u16],
    ) -> Result<(), Error> {
        if limit < base || base & 0xfff != 0 {
            return Err(Error::Unaligned {
                value: base,
                align: 4096,
            });
        }
        if (limit + 1) & 0xfff != 0 {
            return Err(Error::Unaligned {
                value: limit.wrapping_add(1),
                align: 4096,
            });
        }
        let exhausted = Error::Exhausted {
            what: Object::DirectRegion,
        };
        let ids = heapless::Vec::from_slice(sids).map_err(|_| exhausted)?;
        let s = self.served_mut(instance)?;
        s.rmrrs
            .push(Rmrr {
                base,
                len: limit - base + 1,
                sids: ids,
            })
            .map_err(|_| exhausted)
    }

    /// Physical addresses an Identity domain covers on units without
    /// pass-through: `[0, limit)` (default [`DEFAULT_IDENTITY_LIMIT`]),
    /// mapped with the largest pages the unit offers. Set it to the top
    /// of the memory devices must reach, before the first Identity attach.
    pub fn set_identity_limit(&mut self, limit: u64) {
        self.identity_limit = Some(limit);
    }

    fn served(&self, instance: u16) -> Result<&Served<H>, Error> {
        self.units
            .iter()
            .find(|s| s.unit.instance == instance)
            .ok_or_else(unknown)
    }

    fn served_mut(&mut self, instance: u16) -> Result<&mut Served<H>, Error> {
        self.units
            .iter_mut()
            .find(|s| s.unit.instance == instance)
            .ok_or_else(unknown)
    }

    /// The unit serving `instance`, for diagnostics, tests and benchmarks.
    pub fn unit(&self, instance: u16) -> Result<&Unit, Error> {
        Ok(&self.served(instance)?.unit)
    }

    /// The unit serving `instance`, mutably (queue statistics, test
    /// hooks).
    pub fn unit_mut(&mut self, instance: u16) -> Result<&mut Unit, Error> {
        Ok(&mut self.served_mut(instance)?.unit)
    }

    /// The embedder services the driver allocates from.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// Submit descriptors to `instance`'s queue (not waited for): for tests
    /// of the queue's error handling.
    #[doc(hidden)]
    pub fn submit_raw(&mut self, instance: u16, ds: &[Desc]) -> Result<(), Error> {
        let hal = self.hal.clone();
        self.served_mut(instance)?.unit.submit(&hal, ds)
    }

    /// The table behind Identity on a unit without pass-through, built on
    /// first use: its root.
    fn identity_root(&mut self, instance: u16) -> Result<u64, Error> {
        let limit = self.identity_limit.unwrap_or(DEFAULT_IDENTITY_LIMIT);
        let hal = self.hal.clone();
        let s = self.served_mut(instance)?;
        if let Some(t) = &s.identity {
            return Ok(t.root_phys().get());
        }
        if !s.unit.second_level() {
            return Err(Error::Unsupported {
                what: "Identity without pass-through (ECAP.PT) or second-level tables",
            });
        }
        let format = VtdSl::new(s.unit.agaw, s.unit.id.cap.sl_large_pages)?;
        let mut t = PageTable::new(format, hal)?;
        let limit = limit.min(1u64 << s.unit.agaw.min(63));
        let prot = Prot::READ | Prot::WRITE;
        t.map(Iova(0), PhysAddr(0), limit & !0xfff, prot)?;
        let root = t.root_phys().get();
        s.identity = Some(t);
        Ok(root)
    }

    /// The legacy context entry for `new` (`None`: not present).
    fn legacy_entry(
        &mut self,
        dev: &DeviceInfo,
        new: &DomainDesc<'_, VtdDomain, VtdFormat>,
    ) -> Result<Option<[u64; 2]>, Error> {
        let instance = dev.dev.instance;
        let unit = &self.served(instance)?.unit;
        let width = aw::of(unit.agaw);
        let translated = if dev.ats && unit.id.ecap.device_tlb {
            tt::SL_ATS
        } else {
            tt::SL
        };
        Ok(match new {
            DomainDesc::Blocked => None,
            DomainDesc::Identity if unit.id.ecap.pass_through => {
                // 9.3: with TT 10b, AW names the largest width the unit
                // supports (SAGAW), not the width its tables are built at.
                let largest = 32 - u32::from(unit.id.cap.sagaw.bits()).leading_zeros();
                let aw = u64::from(largest.saturating_sub(1));
                Some(context::legacy(tt::PASS_THROUGH, 0, aw, DID_IDENTITY))
            }
            DomainDesc::Identity => {
                let root = self.identity_root(instance)?;
                Some(context::legacy(translated, root, width, DID_IDENTITY))
            }
            DomainDesc::Paging { hw, root, .. } => {
                let Some(Either::A(_)) = hw.format else {
                    return Err(Error::Incompatible {
                        what: "a first-level domain on a legacy-mode unit",
                    });
                };
                Some(context::legacy(
                    translated,
                    root.get(),
                    width,
                    hw.tag as u16,
                ))
            }
            DomainDesc::Sva { .. } | DomainDesc::Nested { .. } => {
                return Err(Error::Unsupported {
                    what: "first-level translation (VT-d scalable mode with ECAP.FLTS)",
                });
            }
        })
    }

    /// The PASID-table entry for `new` (`None`: not present).
    fn scalable_entry(
        &mut self,
        instance: u16,
        new: &DomainDesc<'_, VtdDomain, VtdFormat>,
    ) -> Result<Option<[u64; pasid_entry::WORDS]>, Error> {
        let unit = &self.served(instance)?.unit;
        let width = aw::of(unit.agaw);
        let coherent = unit.id.ecap.sm_coherent;
        let first = |root: u64, five_level: bool| Translation::FirstLevel {
            root,
            five_level,
            sre: false,
            wpe: false,
            eafe: false,
        };
        let (t, did) = match new {
            DomainDesc::Blocked => return Ok(None),
            DomainDesc::Identity if unit.id.ecap.pass_through => {
                (Translation::PassThrough, DID_IDENTITY)
            }
            DomainDesc::Identity => {
                let root = self.identity_root(instance)?;
                (Translation::SecondLevel { root, aw: width }, DID_IDENTITY)
            }
            DomainDesc::Paging { hw, root, .. } => {
                let t = match hw.format {
                    Some(Either::A(_)) => Translation::SecondLevel {
                        root: root.get(),
                        aw: width,
                    },
                    Some(Either::B(_)) => first(root.get(), false),
                    None => {
                        return Err(Error::Incompatible {
                            what: "a paging domain without a table",
                        });
                    }
                };
                (t, hw.tag as u16)
            }
            DomainDesc::Sva { hw, space } => {
                let CpuFormat::X86_64 { five_level } = space.format else {
                    return Err(Error::Incompatible {
                        what: "a CPU page table other than x86-64 paging",
                    });
                };
                (first(space.root.get(), five_level), hw.tag as u16)
            }
            DomainDesc::Nested {
                hw, parent_root, ..
            } => {
                let s1 = hw.private.nested.ok_or(Error::Incompatible {
                    what: "a nested domain without a stage 1",
                })?;
                let f = s1.flags();
                let t = Translation::Nested {
                    first: s1.pgtbl_addr(),
                    five_level: s1.levels() == 5,
                    sre: f.contains(VtdS1Flags::SRE),
                    wpe: f.contains(VtdS1Flags::WPE),
                    eafe: f.contains(VtdS1Flags::EAFE),
                    second: parent_root.get(),
                    aw: width,
                };
                (t, hw.tag as u16)
            }
        };
        let mut e = pasid_entry::entry(t, did);
        if !coherent {
            // PWSNP is reserved where page walks cannot snoop (ECAP.SMPWCS
            // clear).
            pasid_entry::PWSNP.set(&mut e, 0);
        }
        Ok(Some(e))
    }

    /// Queue what invalidates `plan` for `tag` on `unit`.
    fn queue_invalidation(
        unit: &mut Unit,
        hal: &H,
        tag: &CacheTag,
        plan: Plan,
        leaf_only: bool,
    ) -> Result<(), Error> {
        let did = tag.id as u16;
        let pasid = tag.pasid.unwrap_or(RID_PASID);
        let sid = tag.device as u16;
        if tag.kind == TagKind::DevTlb && !unit.id.ecap.device_tlb {
            // Without ECAP.DT translation requests are never enabled: the
            // device caches nothing, and the unit refuses the descriptor.
            return Ok(());
        }
        let first_level = tag.kind == TagKind::Iotlb && unit.did_kind(did) == DidKind::FirstLevel;
        let mut out: heapless::Vec<Desc, 2> = heapless::Vec::new();
        if tag.kind != TagKind::DevTlb {
            match plan.pages() {
                Some(n) => unit.stats.pages_invalidated += n,
                None => unit.stats.whole_invalidations += 1,
            }
        }
        match (tag.kind, plan) {
            (TagKind::DevTlb, Plan::All) if tag.pasid.is_some() => {
                let _ = out.push(desc::pasid_device_tlb(sid, sid, 0, pasid, None));
            }
            (TagKind::DevTlb, Plan::All) => {
                let _ = out.push(desc::device_tlb(sid, sid, 0, None));
            }
            (TagKind::DevTlb, p) => {
                for (addr, am) in p.blocks() {
                    let d = match tag.pasid {
                        Some(pasid) => desc::pasid_device_tlb(sid, sid, 0, pasid, Some((addr, am))),
                        None => desc::device_tlb(sid, sid, 0, Some((addr, am))),
                    };
                    let _ = out.push(d);
                }
            }
            (_, Plan::All) if first_level => {
                let _ = out.push(desc::piotlb_pasid(did, pasid));
            }
            (_, Plan::All) => {
                let _ = out.push(desc::iotlb_domain(did));
            }
            (_, p) => {
                for (addr, am) in p.blocks() {
                    let d = if first_level {
                        desc::piotlb_pages(did, pasid, addr, am, leaf_only)
                    } else {
                        desc::iotlb_pages(did, addr, am, leaf_only)
                    };
                    let _ = out.push(d);
                }
            }
        }
        unit.submit(hal, &out)
    }

    /// The domain-ID count in use on `instance` (reserved ones included).
    pub fn dids_in_use(&self, instance: u16) -> Result<u32, Error> {
        Ok(self.served(instance)?.unit.dids_in_use())
    }
}

impl<H: Hal + Clone, const N: usize> TagInvalidate for Vtd<H, N> {
    fn invalidate(
        &mut self,
        tag: &CacheTag,
        range: Option<(u64, u64)>,
        _page_size: u64,
        tables_freed: bool,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        let unit = &mut self.served_mut(tag.instance)?.unit;
        let cap = unit.id.cap;
        let plan = match range {
            Some((start, end)) => psi::plan(
                start,
                end,
                cap.max_address_mask,
                cap.page_selective_invalidation,
            ),
            None => Plan::All,
        };
        if plan.pages() == Some(0) {
            return Ok(());
        }
        Self::queue_invalidation(unit, &hal, tag, plan, !tables_freed)
    }

    fn wait(&mut self, instance: u16) -> Result<(), Error> {
        let hal = self.hal.clone();
        self.served_mut(instance)?.unit.wait(&hal)
    }
}

impl<H: Hal + Clone, const N: usize> FaultResponder for Vtd<H, N> {
    fn respond(
        &mut self,
        instance: u16,
        device: u32,
        pasid: Option<u32>,
        group: u16,
        response: Response,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        let code = match response {
            Response::Success => desc::response::SUCCESS,
            Response::Invalid => desc::response::INVALID,
            Response::Failure => desc::response::FAILURE,
        };
        let rid = u16::try_from(device).map_err(|_| Error::OutOfRange {
            what: "VT-d requester ID",
            value: device.into(),
        })?;
        self.served_mut(instance)?
            .unit
            .page_response(&hal, rid, pasid, group, code)
    }
}

impl<H: Hal + Clone, const N: usize> IommuDriver for Vtd<H, N> {
    type DomainData = VtdDomain;
    type Format = VtdFormat;

    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error> {
        let s = self.served_mut(instance)?;
        s.unit.probe()?;
        s.probed = true;
        self.hw_info(instance)
    }

    fn enable(&mut self, instance: u16) -> Result<(), Error> {
        let hal = self.hal.clone();
        let s = self.served_mut(instance)?;
        if !s.probed {
            return Err(Error::Busy {
                what: "VT-d unit enabled before probe",
            });
        }
        s.unit.enable(&hal)
    }

    fn hw_info(&self, instance: u16) -> Result<HwInfo, Error> {
        let id = self.served(instance)?.unit.id;
        let mut regs = [0; 8];
        regs[0] = id.cap.raw;
        regs[1] = id.ecap.raw;
        Ok(HwInfo {
            ty: HW_INFO_TYPE_INTEL_VTD,
            regs,
            len: 2,
        })
    }

    fn domain_alloc(
        &mut self,
        dev: &DeviceInfo,
        req: &DomainRequest<'_, VtdDomain, VtdFormat>,
    ) -> Result<DomainHw<VtdDomain, VtdFormat>, Error> {
        let unit = &mut self.served_mut(dev.dev.instance)?.unit;
        let cap = unit.id.cap;
        let (kind, format, private) = match req {
            DomainRequest::Paging { flags } => {
                if flags.contains(PagingFlags::DIRTY_TRACKING) {
                    return Err(Error::Unsupported {
                        what: "dirty tracking (second-level A/D bits)",
                    });
                }
                let nest_parent = flags.contains(PagingFlags::NEST_PARENT);
                if unit.second_level() {
                    if nest_parent && !(unit.scalable && unit.id.ecap.nested) {
                        return Err(Error::Unsupported {
                            what: "nested translation (ECAP.NEST)",
                        });
                    }
                    let f = VtdSl::new(unit.agaw, cap.sl_large_pages)?
                        .with_input_bits(u32::from(cap.mgaw).min(unit.agaw))?;
                    (
                        DidKind::SecondLevel,
                        Some(Either::A(f)),
                        VtdDomain::default(),
                    )
                } else {
                    if nest_parent {
                        return Err(Error::Unsupported {
                            what: "a nesting parent (second-level tables, ECAP.SLTS)",
                        });
                    }
                    let f = X86_64::new(false).with_1g_pages(cap.fl_1g_pages);
                    (
                        DidKind::FirstLevel,
                        Some(Either::B(f)),
                        VtdDomain::default(),
                    )
                }
            }
            DomainRequest::Sva { space } => {
                if !unit.first_level() {
                    return Err(Error::Unsupported {
                        what: "first-level translation for SVA (ECAP.FLTS)",
                    });
                }
                match space.format {
                    CpuFormat::X86_64 { five_level } if five_level && !cap.fl_5level => {
                        return Err(Error::Incompatible {
                            what: "5-level paging (CAP.FL5LP)",
                        });
                    }
                    CpuFormat::X86_64 { .. } => {}
                    CpuFormat::Aarch64 { .. } => {
                        return Err(Error::Incompatible {
                            what: "a CPU page table other than x86-64 paging",
                        });
                    }
                }
                (DidKind::FirstLevel, None, VtdDomain::default())
            }
            DomainRequest::Nested { parent, data } => {
                if data.data_type != HWPT_DATA_VTD_S1 {
                    return Err(invalid("data_type", data.data_type.into()));
                }
                if !(unit.scalable && unit.id.ecap.nested) {
                    return Err(Error::Unsupported {
                        what: "nested translation (ECAP.NEST)",
                    });
                }
                let Some(Either::A(_)) = parent.format else {
                    return Err(Error::Incompatible {
                        what: "a nesting parent without second-level tables",
                    });
                };
                let s1 = user::VtdS1::parse(data.bytes, &unit.id.nested_caps(unit.agaw))?;
                (DidKind::FirstLevel, None, VtdDomain { nested: Some(s1) })
            }
        };
        let did = unit.alloc_did(kind)?;
        Ok(DomainHw::new(did.into(), format, private))
    }

    fn domain_free(&mut self, instance: u16, hw: &DomainHw<VtdDomain, VtdFormat>) {
        if let Ok(s) = self.served_mut(instance) {
            s.unit.free_did(hw.tag as u16);
        }
    }

    fn attach(
        &mut self,
        dev: &DeviceInfo,
        pasid: Option<u32>,
        new: &DomainDesc<'_, VtdDomain, VtdFormat>,
        _old: &DomainDesc<'_, VtdDomain, VtdFormat>,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        let instance = dev.dev.instance;
        let sid = source_id(dev)?;
        let unit = &self.served(instance)?.unit;
        if !unit.scalable {
            if pasid.is_some() {
                return Err(Error::Unsupported {
                    what: "PASIDs (VT-d scalable mode, ECAP.SMTS)",
                });
            }
            let entry = self.legacy_entry(dev, new)?;
            let unit = &mut self.served_mut(instance)?.unit;
            let ats = dev.ats && unit.id.ecap.device_tlb;
            return unit.set_legacy_context(&hal, sid, entry, ats);
        }
        if pasid.is_some() && !(unit.id.ecap.pasid && dev.pasid_bits > 0) {
            return Err(Error::Unsupported {
                what: "requests with PASID (ECAP.PASID and the device's PASID capability)",
            });
        }
        let entry = self.scalable_entry(instance, new)?;
        let caps = DevCaps {
            ats: dev.ats && self.served(instance)?.unit.id.ecap.device_tlb,
            pasid_bits: dev.pasid_bits,
        };
        let unit = &mut self.served_mut(instance)?.unit;
        unit.set_pasid_entry(&hal, caps, sid, pasid.unwrap_or(RID_PASID), entry)
    }

    fn detach_pasid(
        &mut self,
        dev: &DeviceInfo,
        pasid: u32,
        _old: &DomainDesc<'_, VtdDomain, VtdFormat>,
    ) -> Result<(), Error> {
        let hal = self.hal.clone();
        let sid = source_id(dev)?;
        let unit = &mut self.served_mut(dev.dev.instance)?.unit;
        let caps = DevCaps {
            ats: dev.ats && unit.id.ecap.device_tlb,
            pasid_bits: dev.pasid_bits,
        };
        if !unit.scalable {
            return Err(Error::Unsupported {
                what: "PASIDs (VT-d scalable mode, ECAP.SMTS)",
            });
        }
        unit.set_pasid_entry(&hal, caps, sid, pasid, None)
    }

    fn invalidate_user(
        &mut self,
        domain: &DomainDesc<'_, VtdDomain, VtdFormat>,
        tags: TagView<'_>,
        array: &UserArray<'_>,
        _ids: &dyn VirtualIds,
    ) -> InvalidateOutcome {
        let hal = self.hal.clone();
        let units = &mut self.units;
        let nested = matches!(domain, DomainDesc::Nested { .. });
        user::for_each_invalidation(array, |inv| {
            if !nested {
                return Err(Error::Incompatible {
                    what: "user invalidation needs a nested domain",
                });
            }
            let (range, leaf) = match inv {
                VtdS1Inv::All => (None, false),
                VtdS1Inv::Range { addr, npages, leaf } => {
                    let end = addr.saturating_add(npages.saturating_mul(4096));
                    (Some((addr, end)), leaf)
                }
            };
            // The guest's stage 1 is cached under the nested domain's DID
            // at each PASID it is attached at, and in device TLBs.
            for kind in [TagKind::Iotlb, TagKind::DevTlb] {
                for tag in tags.iter().filter(|t| t.kind == kind) {
                    let s = units
                        .iter_mut()
                        .find(|s| s.unit.instance == tag.instance)
                        .ok_or_else(unknown)?;
                    let cap = s.unit.id.cap;
                    let plan = match range {
                        Some((a, e)) => {
                            psi::plan(a, e, cap.max_address_mask, cap.page_selective_invalidation)
                        }
                        None => Plan::All,
                    };
                    Self::queue_invalidation(&mut s.unit, &hal, tag, plan, leaf)?;
                }
            }
            Ok(())
        })
    }

    fn drain_faults(&mut self, instance: u16, out: &mut [Fault]) -> Result<usize, Error> {
        let hal = self.hal.clone();
        self.served_mut(instance)?.unit.drain_records(&hal, out)
    }

    fn flush_faults(&mut self, dev: &DeviceInfo) -> Result<(), Error> {
        let hal = self.hal.clone();
        self.served_mut(dev.dev.instance)?
            .unit
            .drain_page_requests(&hal)
    }

    fn direct_regions(&self, dev: &DeviceInfo, out: &mut [DirectRegion]) -> usize {
        let Ok(s) = self.served(dev.dev.instance) else {
            return 0;
        };
        let mut n = 0;
        for r in s
            .rmrrs
            .iter()
            .filter(|r| r.sids.iter().any(|&sid| u32::from(sid) == dev.dev.id))
        {
            if n == out.len() {
                break;
            }
            out[n] = DirectRegion {
                base: r.base,
                len: r.len,
            };
            n += 1;
        }
        n
    }

    fn flush_on_map(&self, instance: u16) -> bool {
        self.served(instance)
            .is_ok_and(|s| s.unit.id.cap.caching_mode)
    }
}
