//! Legacy mode (root and context tables, second-level translation) of the
//! real VT-d driver against the model: context entries decoded from the
//! specification, translation through them, the flushes of every entry
//! change, Identity with and without pass-through, caching mode, and
//! domain IDs.

#[path = "common/vtd_model.rs"]
mod vtd_model;

use iommu::core::{DomainId, PagingFlags};
use iommu::pgtable::Prot;
use iommu::{Error, Iova, Object, PhysAddr};
use vtd_model::spec::{cap, ecap};
use vtd_model::walk::{LegacyCtx, Stage, tt};
use vtd_model::*;

const RW: Prot = Prot::READ.union(Prot::WRITE);
/// Bus 0, device 2, function 0.
const SID: u16 = 0x0010;

fn legacy_ctx(u: &FakeUnit, sid: u16) -> LegacyCtx {
    match u.context(sid) {
        Some(Ctx::Legacy(c)) => c,
        other => panic!("no legacy context entry for {sid:#x}: {other:?}"),
    }
}

fn did(rig: &Rig, d: DomainId) -> u16 {
    rig.core.domain_hw(d).unwrap().tag as u16
}

fn ok(pa: u64, did: u16) -> impl Fn(Result<Translated, WalkFault>) {
    move |r| {
        let t = r.unwrap_or_else(|e| panic!("expected {pa:#x}: {e:?}"));
        assert_eq!((t.pa, t.kind, t.did), (pa, Kind::SecondLevel, Some(did)));
    }
}

/// Attach a paging domain, replace it with another, detach: entry fields,
/// translation, and the flush after every change of a present entry.
#[test]
fn attach_replace_detach() {
    let mut rig = Rig::legacy();
    let dev = rig.device(0, SID, 0, false);
    let a = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let b = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let (da, db) = (did(&rig, a), did(&rig, b));
    assert_ne!(da, db);
    assert!(da > 1 && db > 1, "DIDs 0 and 1 are reserved");
    rig.core
        .map(a, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x2000, RW)
        .unwrap();
    rig.core
        .map(
            b,
            Iova(0x10_0000),
            PhysAddr(0x9000_0000),
            0x1000,
            Prot::READ,
        )
        .unwrap();
    rig.clear_logs();

    rig.core.attach(dev, a).unwrap();
    let u = &rig.units[0];
    let c = legacy_ctx(u, SID);
    assert!(c.present && !c.fpd);
    assert_eq!(c.tt, tt::SL, "untranslated requests through second level");
    assert_eq!(c.aw, 2, "48-bit AGAW: QEMU's MGAW 48, SAGAW 39/48");
    assert_eq!(c.did, da);
    assert!(rig.hal.contains(c.slptptr, 4096), "table root in memory");
    assert_eq!(u.take_invs(), [], "not present → present needs no flush");
    ok(0x8000_0000, da)(u.walk(Req::read(SID, 0x10_0000)));
    ok(0x8000_1234, da)(u.walk(Req::write(SID, 0x10_1234)));
    assert_eq!(
        u.walk(Req::read(SID, 0x10_2000)),
        Err(WalkFault::NotPresent {
            stage: Stage::Second,
            level: 1
        })
    );
    assert_eq!(
        u.walk(Req::read(SID + 8, 0x10_0000)),
        Err(WalkFault::ContextNotPresent)
    );
    assert_eq!(
        u.walk(Req::read(SID, 0x10_0000).pasid(1)),
        Err(WalkFault::PasidBlocked),
        "no PASIDs in legacy mode"
    );
    // The device uses the translation: the unit caches it.
    ok(0x8000_0000, da)(u.dma(Req::read(SID, 0x10_0000)));

    rig.core.attach(dev, b).unwrap();
    assert_eq!(
        u.take_invs().iter().map(strip_wait).collect::<Vec<_>>(),
        [
            Inv::Context(CcScope::Device {
                did: da,
                sid: SID,
                fm: 0
            }),
            Inv::Iotlb {
                scope: IotlbScope::Domain { did: da },
                drain_reads: true,
                drain_writes: true
            },
            WAIT,
        ],
        "replace: context cache (device, old DID), IOTLB (old DID), wait"
    );
    assert_eq!(legacy_ctx(u, SID).did, db);
    ok(0x9000_0000, db)(u.dma(Req::read(SID, 0x10_0000)));
    assert!(
        matches!(
            u.dma(Req::write(SID, 0x10_0000)),
            Err(WalkFault::Denied { write: true, .. })
        ),
        "read-only in the new domain"
    );

    rig.core.detach(dev).unwrap();
    assert_eq!(
        u.take_invs().iter().map(strip_wait).collect::<Vec<_>>(),
        [
            Inv::Context(CcScope::Device {
                did: db,
                sid: SID,
                fm: 0
            }),
            Inv::Iotlb {
                scope: IotlbScope::Domain { did: db },
                drain_reads: true,
                drain_writes: true
            },
            WAIT,
        ]
    );
    assert!(!legacy_ctx(u, SID).present);
    assert_eq!(
        u.dma(Req::read(SID, 0x10_0000)),
        Err(WalkFault::ContextNotPresent)
    );
}

/// Any wait, for comparisons that do not care about its status data.
const WAIT: Inv = Inv::Wait {
    data: 0,
    addr: 0,
    status_write: true,
    interrupt: false,
    fence: true,
    page_drain: false,
};

fn strip_wait(i: &Inv) -> Inv {
    match *i {
        Inv::Wait {
            status_write,
            interrupt,
            fence,
            page_drain,
            ..
        } => Inv::Wait {
            data: 0,
            addr: 0,
            status_write,
            interrupt,
            fence,
            page_drain,
        },
        other => other,
    }
}

/// Identity on a unit with pass-through: TT 10b, AW the largest width the
/// unit walks (9.3), the identity DID; addresses pass untranslated.
#[test]
fn identity_is_pass_through_where_the_unit_has_it() {
    for config in [
        UnitConfig::legacy(),
        // SAGAW 39/48/57 with MGAW 48: the driver walks 48-bit tables, but
        // a pass-through entry names the largest width.
        UnitConfig::legacy().cap_set(cap::SAGAW, 0b1110),
    ] {
        let mut rig = Rig::new(&[config]);
        let dev = rig.device(0, SID, 0, false);
        rig.core.attach(dev, DomainId::IDENTITY).unwrap();
        let u = &rig.units[0];
        let c = legacy_ctx(u, SID);
        assert!(c.present);
        assert_eq!(c.tt, tt::PASS_THROUGH);
        let largest = *config.sagaw_widths().iter().max().unwrap();
        assert_eq!(
            30 + 9 * u32::from(c.aw),
            largest,
            "AW of a pass-through entry"
        );
        assert_eq!(c.did, 1);
        for addr in [0, 0x1234_5000, 0xfee0_0000, 1 << 40] {
            let t = u.dma(Req::write(SID, addr)).unwrap();
            assert_eq!((t.pa, t.kind), (addr, Kind::PassThrough));
        }
        assert_eq!(rig.dids(0), 2, "Identity takes no DID of its own");
    }
}

/// Identity on a unit without pass-through: a second-level table mapping
/// every address below the identity limit to itself.
#[test]
fn identity_without_pass_through_is_an_identity_table() {
    let mut rig = Rig::new(&[UnitConfig::legacy().ecap_off(ecap::PT)]);
    let limit = 3 << 30;
    rig.core.driver_mut().set_identity_limit(limit);
    let dev = rig.device(0, SID, 0, false);
    let other = rig.device(0, 0x0300, 0, false);
    rig.core.attach(dev, DomainId::IDENTITY).unwrap();
    rig.core.attach(other, DomainId::IDENTITY).unwrap();
    let u = &rig.units[0];
    let c = legacy_ctx(u, SID);
    assert_eq!((c.tt, c.did, c.aw), (tt::SL, 1, 2));
    assert_eq!(legacy_ctx(u, 0x0300).slptptr, c.slptptr, "one shared table");
    for addr in [
        0u64,
        0x1000,
        0x1234_5678,
        (2 << 30) + 0x20_1000,
        limit - 0x1000,
    ] {
        let t = u.walk(Req::write(SID, addr)).unwrap();
        assert_eq!((t.pa, t.kind, t.did), (addr, Kind::SecondLevel, Some(1)));
        assert!(t.read && t.write);
    }
    assert!(matches!(
        u.walk(Req::read(SID, limit)),
        Err(WalkFault::NotPresent { .. })
    ));
}

/// Caching mode (CAP.CM = 1): the unit may cache what is not present, so
/// a not-present → present change is flushed, and so is every new mapping.
#[test]
fn caching_mode_flushes_new_entries_and_mappings() {
    let mut rig = Rig::new(&[UnitConfig::legacy().cap_on(cap::CM)]);
    let dev = rig.device(0, SID, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let dd = did(&rig, d);
    rig.core
        .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x1000, RW)
        .unwrap();
    let u = &rig.units[0];
    // The device tried before it was attached: the unit cached the absent
    // context entry (under DID 0).
    assert!(u.dma(Req::read(SID, 0x10_0000)).is_err());
    rig.clear_logs();

    rig.core.attach(dev, d).unwrap();
    let invs = u.take_invs();
    assert_eq!(
        invs.first(),
        Some(&Inv::Context(CcScope::Device {
            did: 0,
            sid: SID,
            fm: 0
        })),
        "the cached absence (DID 0) is invalidated: {invs:?}"
    );
    assert_eq!(invs.iter().filter(|i| i.is_wait()).count(), 1);
    ok(0x8000_0000, dd)(u.dma(Req::read(SID, 0x10_0000)));

    // An access to an unmapped page is cached as not present too; mapping
    // it invalidates that page.
    assert!(u.dma(Req::read(SID, 0x20_0000)).is_err());
    rig.core
        .map(d, Iova(0x20_0000), PhysAddr(0x8800_0000), 0x1000, RW)
        .unwrap();
    let invs = u.take_invs();
    assert_eq!(invs.len(), 2, "{invs:?}");
    assert!(
        matches!(
            invs[0],
            Inv::Iotlb {
                scope: IotlbScope::Pages {
                    did,
                    addr: 0x20_0000,
                    am: 0,
                    ..
                },
                ..
            } if did == dd
        ),
        "{invs:?}"
    );
    assert!(invs[1].is_wait());
    ok(0x8800_0000, dd)(u.dma(Req::read(SID, 0x20_0000)));
}

/// Without caching mode, mapping sends nothing.
#[test]
fn without_caching_mode_mapping_sends_nothing() {
    let mut rig = Rig::legacy();
    let dev = rig.device(0, SID, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.core.attach(dev, d).unwrap();
    rig.clear_logs();
    rig.core
        .map(d, Iova(0x20_0000), PhysAddr(0x8800_0000), 0x1000, RW)
        .unwrap();
    assert_eq!(rig.unit(0).take_invs(), []);
}

/// The second-level width follows CAP.SAGAW and CAP.MGAW: the smallest
/// width the unit walks that covers MGAW (3, 4 or 5 levels); the top of
/// that range translates.
#[test]
fn table_width_follows_sagaw_and_mgaw() {
    for (sagaw, mgaw, aw) in [
        (0b0010u64, 39u64, 1u8),
        (0b0110, 39, 1),
        (0b0110, 48, 2),
        (0b1110, 48, 2),
        (0b1000, 57, 3),
        (0b1100, 57, 3),
    ] {
        let config = UnitConfig::legacy()
            .cap_set(cap::SAGAW, sagaw)
            .cap_set(cap::MGAW, mgaw - 1);
        let mut rig = Rig::new(&[config]);
        let dev = rig.device(0, SID, 0, false);
        let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        let top = (1u64 << mgaw) - 0x1000;
        for iova in [0, top] {
            rig.core
                .map(
                    d,
                    Iova(iova),
                    PhysAddr(0x8000_0000 + (iova & 0xffff_f000)),
                    0x1000,
                    RW,
                )
                .unwrap();
        }
        rig.core.attach(dev, d).unwrap();
        let u = &rig.units[0];
        assert_eq!(legacy_ctx(u, SID).aw, aw, "SAGAW {sagaw:#b} MGAW {mgaw}");
        for iova in [0, top + 0x123] {
            let t = u.walk(Req::read(SID, iova)).unwrap();
            assert_eq!(t.pa, 0x8000_0000 + (iova & 0xffff_ffff));
        }
    }
}

/// CAP.ND bounds the domain IDs: once they are used up, allocation fails
/// with `Exhausted`; a freed domain gives its DID back.
#[test]
fn domain_ids_run_out_and_come_back() {
    // ND 0: 16 DIDs, of which 0 and 1 are reserved.
    let mut rig = Rig::new(&[UnitConfig::legacy().cap_set(cap::ND, 0)]);
    let dev = rig.device(0, SID, 0, false);
    assert_eq!(rig.dids(0), 2);
    let mut doms = Vec::new();
    for _ in 0..14 {
        doms.push(rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap());
    }
    let mut seen: Vec<u16> = doms.iter().map(|d| did(&rig, *d)).collect();
    seen.sort();
    assert_eq!(seen, (2..16).collect::<Vec<u16>>());
    assert_eq!(rig.dids(0), 16);
    let pages = rig.hal.live_pages();
    assert_eq!(
        rig.core.alloc_paging(dev, PagingFlags::empty()),
        Err(Error::Exhausted {
            what: Object::Domain
        })
    );
    assert_eq!(rig.hal.live_pages(), pages, "nothing kept on failure");
    // The last DID works in an entry the unit accepts.
    let last = *doms.last().unwrap();
    rig.core
        .map(last, Iova(0), PhysAddr(0x4000_0000), 0x1000, RW)
        .unwrap();
    rig.core.attach(dev, last).unwrap();
    assert!(rig.unit(0).walk(Req::read(SID, 0)).is_ok());
    rig.core.detach(dev).unwrap();

    let freed = did(&rig, doms[3]);
    rig.core.free_domain(doms[3]).unwrap();
    assert_eq!(rig.dids(0), 15);
    let again = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    assert_eq!(did(&rig, again), freed);
    assert_eq!(rig.dids(0), 16);
}
