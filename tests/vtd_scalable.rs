//! Scalable mode of the real VT-d driver against the model: scalable
//! context entries, PASID directories and tables decoded from the
//! specification; second-level, first-level, pass-through and nested PASID
//! entries; attach and detach at a PASID with their flushes; user
//! invalidations of a nested domain.

#[path = "common/vtd_model.rs"]
mod vtd_model;

use iommu::core::{DomainDesc, DomainId, IommuDriver, PagingFlags};
use iommu::drivers::vtd::user::{HWPT_DATA_VTD_S1, INVALIDATE_DATA_VTD_S1, VtdS1Inv};
use iommu::pgtable::{PageTable, Prot, X86_64};
use iommu::{Error, Iova, PhysAddr};
use vtd_model::spec::ecap;
use vtd_model::walk::{ScalableCtx, pgtt};
use vtd_model::*;

const RW: Prot = Prot::READ.union(Prot::WRITE);
/// Bus 0, devfn 0x10 (lower context table).
const SID: u16 = 0x0010;
/// Bus 1, devfn 0x90 (upper context table).
const UPPER: u16 = 0x0190;

fn sm_ctx(u: &FakeUnit, sid: u16) -> ScalableCtx {
    match u.context(sid) {
        Some(Ctx::Scalable(c)) => c,
        other => panic!("no scalable context entry for {sid:#x}: {other:?}"),
    }
}

fn entry(u: &FakeUnit, sid: u16, pasid: u32) -> PasidEnt {
    u.pasid_entry(sid, pasid)
        .unwrap_or_else(|| panic!("no PASID table for {sid:#x}/{pasid}"))
}

fn did(rig: &Rig, d: DomainId) -> u16 {
    rig.core.domain_hw(d).unwrap().tag as u16
}

fn strip(i: &Inv) -> Inv {
    match *i {
        Inv::Wait { page_drain, .. } => Inv::Wait {
            data: 0,
            addr: 0,
            status_write: true,
            interrupt: false,
            fence: true,
            page_drain,
        },
        other => other,
    }
}

const WAIT: Inv = Inv::Wait {
    data: 0,
    addr: 0,
    status_write: true,
    interrupt: false,
    fence: true,
    page_drain: false,
};

fn waitless(invs: Vec<Inv>) -> Vec<Inv> {
    invs.iter().map(strip).filter(|i| *i != WAIT).collect()
}

/// A paging domain attached at the requester ID: the scalable context
/// entry points at a PASID directory sized for the device, and PASID 0
/// (RID_PASID) holds a second-level entry.
#[test]
fn rid_attach_writes_context_and_rid_pasid_entry() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 8, false);
    let up = rig.device(0, UPPER, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let dd = did(&rig, d);
    rig.core
        .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x1000, RW)
        .unwrap();
    rig.core.attach(dev, d).unwrap();
    rig.core.attach(up, d).unwrap();
    let u = &rig.units[0];

    let c = sm_ctx(u, SID);
    assert!(c.present && !c.fpd);
    assert!(c.paside, "the device has PASIDs and the unit ECAP.PASID");
    assert!(!c.dte, "no ATS");
    assert_eq!(c.rid_pasid, 0);
    assert_eq!(c.dir_entries(), 128, "8 PASID bits: the smallest directory");
    assert!(rig.hal.contains(c.dir, 128 * 8));
    let e = entry(u, SID, 0);
    assert!(e.present && !e.fpd);
    assert_eq!(e.pgtt, pgtt::SECOND);
    assert_eq!(e.aw, 2);
    assert_eq!(e.did, dd);
    assert!(rig.hal.contains(e.slptptr, 4096));

    let cu = sm_ctx(u, UPPER);
    assert!(cu.present && !cu.paside, "no PASIDs on this device");
    assert_ne!(cu.dir, c.dir, "a directory per device");
    assert_eq!(
        entry(u, UPPER, 0).slptptr,
        e.slptptr,
        "same domain, same table"
    );

    for sid in [SID, UPPER] {
        let t = u.walk(Req::write(sid, 0x10_0123)).unwrap();
        assert_eq!(
            (t.pa, t.kind, t.did),
            (0x8000_0123, Kind::SecondLevel, Some(dd))
        );
    }
    assert_eq!(
        u.walk(Req::read(SID, 0x10_0000).pasid(5)),
        Err(WalkFault::PasidEntryNotPresent)
    );
    assert_eq!(
        u.walk(Req::read(UPPER, 0x10_0000).pasid(5)),
        Err(WalkFault::PasidBlocked)
    );
    // Bus 1's lower half and bus 0's upper half stay empty.
    assert!(u.walk(Req::read(0x0110, 0)).is_err());
    assert!(u.walk(Req::read(0x0090, 0)).is_err());
}

/// Identity is a pass-through PASID entry under the identity DID.
#[test]
fn identity_is_a_pass_through_pasid_entry() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 0, false);
    rig.core.attach(dev, DomainId::IDENTITY).unwrap();
    let u = &rig.units[0];
    let e = entry(u, SID, 0);
    assert_eq!((e.pgtt, e.did), (pgtt::PASS_THROUGH, 1));
    let t = u.dma(Req::write(SID, 0x1234_5000)).unwrap();
    assert_eq!((t.pa, t.kind), (0x1234_5000, Kind::PassThrough));
}

/// On a unit that walks only first-level tables, paging domains are
/// x86-64 tables in first-level PASID entries.
#[test]
fn first_level_only_unit_uses_first_level_entries() {
    let mut rig = Rig::new(&[UnitConfig::scalable().ecap_off(ecap::SLTS)]);
    let dev = rig.device(0, SID, 8, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let dd = did(&rig, d);
    rig.core
        .map(d, Iova(0x40_0000), PhysAddr(0x8000_0000), 0x20_0000, RW)
        .unwrap();
    rig.core.attach(dev, d).unwrap();
    let u = &rig.units[0];
    let e = entry(u, SID, 0);
    assert_eq!((e.pgtt, e.did, e.flpm), (pgtt::FIRST, dd, 0));
    assert!(!e.sre, "DMA without privilege");
    assert!(rig.hal.contains(e.flptr, 4096));
    let t = u.walk(Req::write(SID, 0x41_2345)).unwrap();
    assert_eq!(
        (t.pa, t.kind, t.did),
        (0x8001_2345, Kind::FirstLevel, Some(dd))
    );
    assert_eq!(
        u.walk(Req::read(SID, 0x40_0000).privileged()),
        Err(WalkFault::SupervisorDenied)
    );
    // Nesting needs second-level tables.
    assert!(matches!(
        rig.core.alloc_paging(dev, PagingFlags::NEST_PARENT),
        Err(Error::Unsupported { .. })
    ));
}

/// Attach at a PASID writes that PASID's entry; detach clears it with
/// PASID-cache, IOTLB (by how the domain is cached) and a wait.
#[test]
fn attach_and_detach_at_a_pasid() {
    for first_level in [false, true] {
        let config = if first_level {
            UnitConfig::scalable().ecap_off(ecap::SLTS)
        } else {
            UnitConfig::scalable()
        };
        let mut rig = Rig::new(&[config]);
        let dev = rig.device(0, SID, 8, false);
        let rid = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        let dd = did(&rig, d);
        rig.core
            .map(rid, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x1000, RW)
            .unwrap();
        rig.core
            .map(d, Iova(0x10_0000), PhysAddr(0x9000_0000), 0x1000, RW)
            .unwrap();
        rig.core.attach(dev, rid).unwrap();
        let pasid = rig.core.alloc_pasid(dev).unwrap();
        rig.core.attach_pasid(dev, pasid, d).unwrap();
        let u = &rig.units[0];
        let e = entry(u, SID, pasid);
        assert!(e.present);
        assert_eq!(e.did, dd);
        assert_eq!(
            e.pgtt,
            if first_level {
                pgtt::FIRST
            } else {
                pgtt::SECOND
            }
        );
        assert_eq!(
            u.dma(Req::read(SID, 0x10_0000).pasid(pasid)).unwrap().pa,
            0x9000_0000
        );
        assert_eq!(u.dma(Req::read(SID, 0x10_0000)).unwrap().pa, 0x8000_0000);
        rig.clear_logs();

        rig.core.detach_pasid(dev, pasid).unwrap();
        let iotlb = if first_level {
            Inv::PasidIotlb {
                did: dd,
                pasid,
                scope: PiotlbScope::Pasid,
            }
        } else {
            Inv::Iotlb {
                scope: IotlbScope::Domain { did: dd },
                drain_reads: true,
                drain_writes: true,
            }
        };
        let invs: Vec<Inv> = u.take_invs().iter().map(strip).collect();
        assert_eq!(
            invs[..3],
            [
                Inv::PasidCache {
                    did: dd,
                    pasid,
                    scope: PcScope::Pasid
                },
                iotlb,
                WAIT
            ],
            "first level: {first_level}"
        );
        assert!(!entry(u, SID, pasid).present);
        assert_eq!(
            u.dma(Req::read(SID, 0x10_0000).pasid(pasid)),
            Err(WalkFault::PasidEntryNotPresent),
            "nothing cached survives the detach"
        );
        assert_eq!(u.dma(Req::read(SID, 0x10_0000)).unwrap().pa, 0x8000_0000);
    }
}

/// A PASID the device's directory does not reach is refused, writing
/// nothing.
#[test]
fn a_pasid_beyond_the_directory_is_refused() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 8, false);
    rig.core.attach(dev, DomainId::IDENTITY).unwrap();
    let info = rig.core.device(dev).unwrap();
    // 8 PASID bits: a 128-entry directory, PASIDs below 8192.
    let before = rig.hal.live_pages();
    let r = rig.core.driver_mut().attach(
        &info,
        Some(8192),
        &DomainDesc::Identity,
        &DomainDesc::Blocked,
    );
    assert_eq!(r, Err(Error::BadPasid { pasid: 8192 }));
    assert_eq!(rig.hal.live_pages(), before);
    // 20 PASID bits: the directory stops at 2^19.
    let wide = rig.device(0, SID + 1, 20, false);
    let info = rig.core.device(wide).unwrap();
    let d = rig.core.driver_mut();
    d.attach(
        &info,
        Some((1 << 19) - 1),
        &DomainDesc::Identity,
        &DomainDesc::Blocked,
    )
    .unwrap();
    assert_eq!(
        d.attach(
            &info,
            Some(1 << 19),
            &DomainDesc::Identity,
            &DomainDesc::Blocked
        ),
        Err(Error::BadPasid { pasid: 1 << 19 })
    );
    let u = &rig.units[0];
    assert_eq!(sm_ctx(u, SID + 1).dir_entries(), 8192);
    assert_eq!(entry(u, SID + 1, (1 << 19) - 1).pgtt, pgtt::PASS_THROUGH);
}

/// `struct iommu_hwpt_vtd_s1`.
fn s1_bytes(pgtbl: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&pgtbl.to_le_bytes());
    b.extend_from_slice(&48u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// A guest's stage 1: an x86-64 table in model memory (guest physical ==
/// host physical for its own pages), and the pages it uses.
struct Guest {
    table: PageTable<X86_64, ModelHal>,
    pages: Vec<u64>,
}

impl Guest {
    fn new(hal: &ModelHal) -> Self {
        let before: Vec<_> = hal.allocations();
        let table = PageTable::new(X86_64::new(false), hal.clone()).unwrap();
        Guest {
            table,
            pages: new_pages(hal, &before),
        }
    }

    fn map(&mut self, hal: &ModelHal, iova: u64, gpa: u64) {
        let before = hal.allocations();
        self.table
            .map(Iova(iova), PhysAddr(gpa), 0x1000, RW)
            .unwrap();
        self.pages.extend(new_pages(hal, &before));
    }
}

fn new_pages(hal: &ModelHal, before: &[(u64, usize)]) -> Vec<u64> {
    hal.allocations()
        .into_iter()
        .filter(|a| !before.contains(a))
        .map(|(a, _)| a)
        .collect()
}

/// A nested domain (guest stage 1 on a nest-parent paging domain): a
/// nested PASID entry with both pointers; translation goes through both
/// stages; user invalidations become PASID-based IOTLB invalidations at
/// every PASID the domain is attached at.
#[test]
fn nested_domain_entry_translation_and_user_invalidation() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 8, false);
    let parent = rig
        .core
        .alloc_paging(dev, PagingFlags::NEST_PARENT)
        .unwrap();
    let hal = rig.hal.clone();
    let mut guest = Guest::new(&hal);
    guest.map(&hal, 0x40_0000, 0x7000_0000);
    guest.map(&hal, 0x40_1000, 0x7000_1000);
    // The parent maps the guest's table pages to themselves and its
    // memory somewhere else.
    for p in guest.pages.clone() {
        rig.core
            .map(parent, Iova(p), PhysAddr(p), 0x1000, RW)
            .unwrap();
    }
    rig.core
        .map(
            parent,
            Iova(0x7000_0000),
            PhysAddr(0x5_0000_0000),
            0x2000,
            RW,
        )
        .unwrap();
    let root = guest.table.root_phys().0;
    let n = rig
        .core
        .alloc_nested(dev, parent, HWPT_DATA_VTD_S1, &s1_bytes(root))
        .unwrap();
    let dn = did(&rig, n);
    assert_ne!(dn, did(&rig, parent));
    rig.core.attach(dev, n).unwrap();
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, n).unwrap();

    let u = &rig.units[0];
    for p in [0, pasid] {
        let e = entry(u, SID, p);
        assert_eq!((e.pgtt, e.did, e.aw, e.flpm), (pgtt::NESTED, dn, 2, 0));
        assert_eq!(e.flptr, root, "the guest's table (guest physical)");
        assert!(rig.hal.contains(e.slptptr, 4096), "the parent's table");
    }
    let t = u.dma(Req::read(SID, 0x40_0000)).unwrap();
    assert_eq!(
        (t.pa, t.kind, t.did),
        (0x5_0000_0000, Kind::Nested, Some(dn))
    );
    assert_eq!(
        u.dma(Req::write(SID, 0x40_1008).pasid(pasid)).unwrap().pa,
        0x5_0000_1008
    );

    // The guest moves a page and invalidates it.
    let mut g = iommu::pgtable::Gather::new();
    guest.table.unmap(Iova(0x40_0000), 0x1000, &mut g).unwrap();
    g.release(&hal);
    guest.map(&hal, 0x40_0000, 0x7000_1000);
    assert_eq!(
        u.dma(Req::read(SID, 0x40_0000)).unwrap().pa,
        0x5_0000_0000,
        "the unit still caches the old translation"
    );
    rig.clear_logs();
    let inv = VtdS1Inv::Range {
        addr: 0x40_0000,
        npages: 1,
        leaf: true,
    }
    .to_bytes();
    let out = rig
        .core
        .invalidate_user(n, INVALIDATE_DATA_VTD_S1, &inv, inv.len(), 1)
        .unwrap();
    assert_eq!((out.handled, out.error), (1, None));
    let u = &rig.units[0];
    let log = u.take_log();
    let mut got = invs_no_waits(&log);
    got.sort_by_key(|i| match i {
        Inv::PasidIotlb { pasid, .. } => *pasid,
        _ => u32::MAX,
    });
    let page = |p| Inv::PasidIotlb {
        did: dn,
        pasid: p,
        scope: PiotlbScope::Pages {
            addr: 0x40_0000,
            am: 0,
            ih: true,
        },
    };
    assert_eq!(got, [page(0), page(pasid)]);
    assert_eq!(waits(&log), 1);
    assert_eq!(u.dma(Req::read(SID, 0x40_0000)).unwrap().pa, 0x5_0000_1000);

    // Everything of the stage 1.
    let all = VtdS1Inv::All.to_bytes();
    rig.core
        .invalidate_user(n, INVALIDATE_DATA_VTD_S1, &all, all.len(), 1)
        .unwrap();
    let mut got = rig.units[0].take_invs();
    got.retain(|i| !i.is_wait());
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|i| matches!(
        i,
        Inv::PasidIotlb { did, scope: PiotlbScope::Pasid, .. } if *did == dn
    )));

    // The parent's unmap reaches the nested translations: IOTLB by the
    // nested domain's DID.
    rig.core
        .unmap_sync(parent, Iova(0x7000_0000), 0x2000)
        .unwrap();
    let got = waitless(rig.units[0].take_invs());
    assert!(
        got.iter().any(|i| matches!(
            i,
            Inv::Iotlb { scope: IotlbScope::Pages { did, addr: 0x7000_0000, .. }, .. } if *did == dn
        )),
        "{got:?}"
    );
    assert!(rig.units[0].dma(Req::read(SID, 0x40_0000)).is_err());

    rig.core.detach_pasid(dev, pasid).unwrap();
    rig.core.detach(dev).unwrap();
    rig.core.free_domain(n).unwrap();
    rig.core.free_domain(parent).unwrap();
}

/// Every change of what a PASID entry holds (Identity, paging domains,
/// Blocked, in any order) is flushed so that a DMA through the unit's
/// caches sees what a fresh walk sees.
#[test]
fn no_translation_survives_a_change_of_entry() {
    for config in [
        UnitConfig::scalable(),
        UnitConfig::scalable().ecap_off(ecap::SLTS),
    ] {
        let mut rig = Rig::new(&[config]);
        let dev = rig.device(0, SID, 8, false);
        let a = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        let b = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        for (d, pa) in [(a, 0x8000_0000u64), (b, 0x9000_0000)] {
            rig.core
                .map(d, Iova(0x10_0000), PhysAddr(pa), 0x1000, RW)
                .unwrap();
        }
        let pasid = rig.core.alloc_pasid(dev).unwrap();
        let steps = [
            DomainId::IDENTITY,
            a,
            DomainId::IDENTITY,
            b,
            a,
            DomainId::BLOCKED,
            DomainId::IDENTITY,
            DomainId::BLOCKED,
        ];
        for (i, &d) in steps.iter().enumerate() {
            for at in [None, Some(pasid)] {
                match (at, d) {
                    (None, d) => rig.core.attach(dev, d).unwrap(),
                    (Some(p), DomainId::BLOCKED) => {
                        if rig.core.attached(dev, Some(p)).unwrap().is_some() {
                            rig.core.detach_pasid(dev, p).unwrap();
                        }
                    }
                    (Some(p), d) => rig.core.attach_pasid(dev, p, d).unwrap(),
                }
                let u = &rig.units[0];
                for req in [
                    Req::read(SID, 0x10_0000),
                    Req::read(SID, 0x10_0000).pasid(pasid),
                ] {
                    let walked = u.walk(req);
                    let seen = u.dma(req);
                    assert_eq!(
                        seen,
                        walked,
                        "step {i} ({d:?} at {at:?}), {req:?}, first-level unit: {}",
                        !config.has_ecap(ecap::SLTS)
                    );
                }
            }
        }
    }
}

/// Caching mode in scalable mode: an absent context entry, an absent
/// PASID entry and an absent mapping the unit cached are all invalidated
/// when they appear.
#[test]
fn caching_mode_in_scalable_mode() {
    for config in [
        UnitConfig::scalable(),
        UnitConfig::scalable().ecap_off(ecap::SLTS),
    ] {
        let mut rig = Rig::new(&[config.cap_on(vtd_model::spec::cap::CM)]);
        let dev = rig.device(0, SID, 8, false);
        let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        let e = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        rig.core
            .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x1000, RW)
            .unwrap();
        rig.core
            .map(e, Iova(0x10_0000), PhysAddr(0x9000_0000), 0x1000, RW)
            .unwrap();
        let req = Req::read(SID, 0x10_0000);
        assert!(rig.units[0].dma(req).is_err());
        rig.core.attach(dev, d).unwrap();
        assert_eq!(rig.units[0].dma(req).unwrap().pa, 0x8000_0000);

        let p = rig.core.alloc_pasid(dev).unwrap();
        assert!(rig.units[0].dma(req.pasid(p)).is_err());
        rig.core.attach_pasid(dev, p, e).unwrap();
        assert_eq!(rig.units[0].dma(req.pasid(p)).unwrap().pa, 0x9000_0000);

        let later = Req::read(SID, 0x20_0000);
        assert!(rig.units[0].dma(later).is_err());
        rig.core
            .map(d, Iova(0x20_0000), PhysAddr(0x8800_0000), 0x1000, RW)
            .unwrap();
        assert_eq!(rig.units[0].dma(later).unwrap().pa, 0x8800_0000);
    }
}

/// An SVA bond: the device's PASID translates through the CPU's x86-64
/// table (a first-level entry naming its root); a CPU-side change is
/// invalidated with PASID-based invalidations; unbind clears the entry.
#[test]
fn sva_bond_translates_through_the_cpu_table() {
    use iommu::core::{AddressSpace, CpuFormat, FaultTarget};
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 8, false);
    let hal = rig.hal.clone();
    let mut cpu = Guest::new(&hal);
    cpu.map(&hal, 0x7000_0000, 0x5_0000_0000);
    cpu.map(&hal, 0x7000_1000, 0x5_0000_1000);
    let space = rig
        .core
        .register_space(
            AddressSpace {
                root: cpu.table.root_phys(),
                format: CpuFormat::X86_64 { five_level: false },
                asid: 0,
            },
            FaultTarget::None,
        )
        .unwrap();
    let bond = rig.core.bind(dev, space).unwrap();
    let pasid = rig.core.space_pasid(space).unwrap().unwrap();
    let sva = rig.core.bond_info(bond).unwrap().domain;
    let ds = did(&rig, sva);
    let u = &rig.units[0];
    let e = entry(u, SID, pasid);
    assert_eq!(
        (e.pgtt, e.did, e.flptr),
        (pgtt::FIRST, ds, cpu.table.root_phys().0)
    );
    let t = u.dma(Req::write(SID, 0x7000_1010).pasid(pasid)).unwrap();
    assert_eq!((t.pa, t.kind), (0x5_0000_1010, Kind::FirstLevel));
    assert!(
        u.dma(Req::read(SID, 0x7000_0000)).is_err(),
        "not at the RID"
    );

    let mut g = iommu::pgtable::Gather::new();
    cpu.table.unmap(Iova(0x7000_1000), 0x1000, &mut g).unwrap();
    g.release(&hal);
    rig.clear_logs();
    rig.core
        .invalidate_range(space, 0x7000_1000, 0x7000_2000)
        .unwrap();
    let got = waitless(rig.units[0].take_invs());
    assert_eq!(
        got,
        [Inv::PasidIotlb {
            did: ds,
            pasid,
            scope: PiotlbScope::Pages {
                addr: 0x7000_1000,
                am: 0,
                ih: false
            }
        }]
    );
    let u = &rig.units[0];
    assert!(u.dma(Req::read(SID, 0x7000_1000).pasid(pasid)).is_err());
    assert!(u.dma(Req::read(SID, 0x7000_0000).pasid(pasid)).is_ok());

    rig.core.unbind(bond).unwrap();
    let u = &rig.units[0];
    assert!(!entry(u, SID, pasid).present);
    assert!(u.dma(Req::read(SID, 0x7000_0000).pasid(pasid)).is_err());
}

/// Tearing down a nested entry must reach what the unit cached of its
/// second stage under its DID (the specification's guidance: an IOTLB
/// invalidation of the DID for a nested entry, as for second-level ones;
/// PASID-based invalidation leaves second-stage paging-structure caches).
/// The next domain given that DID must not walk the old parent's tables.
#[test]
fn a_nested_domain_s_did_comes_back_clean() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 8, false);
    let parent = rig
        .core
        .alloc_paging(dev, PagingFlags::NEST_PARENT)
        .unwrap();
    let hal = rig.hal.clone();
    let mut guest = Guest::new(&hal);
    guest.map(&hal, 0x40_0000, 0x7000_0000);
    for p in guest.pages.clone() {
        rig.core
            .map(parent, Iova(p), PhysAddr(p), 0x1000, RW)
            .unwrap();
    }
    rig.core
        .map(
            parent,
            Iova(0x7000_0000),
            PhysAddr(0x5_0000_0000),
            0x1000,
            RW,
        )
        .unwrap();
    let n = rig
        .core
        .alloc_nested(
            dev,
            parent,
            HWPT_DATA_VTD_S1,
            &s1_bytes(guest.table.root_phys().0),
        )
        .unwrap();
    let dn = did(&rig, n);
    rig.core.attach(dev, n).unwrap();
    assert_eq!(
        rig.units[0].dma(Req::read(SID, 0x40_0000)).unwrap().pa,
        0x5_0000_0000
    );
    rig.core.detach(dev).unwrap();
    rig.core.free_domain(n).unwrap();

    let x = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    assert_eq!(did(&rig, x), dn, "the DID comes back");
    rig.core
        .map(x, Iova(0x7000_0000), PhysAddr(0x9999_0000), 0x1000, RW)
        .unwrap();
    rig.core.attach(dev, x).unwrap();
    let req = Req::read(SID, 0x7000_0000);
    let u = &rig.units[0];
    assert_eq!(u.walk(req).unwrap().pa, 0x9999_0000);
    assert_eq!(u.dma(req), u.walk(req), "nothing of the old parent is used");
}
