//! The VT-d model checked on its own, without the driver: its walker on
//! tables written here by hand from the specification, its descriptor
//! decoder on hand-encoded descriptors, its register rules, and that its
//! caches keep a stale translation when a flush is skipped (so the driver
//! tests can fail).

#[path = "common/vtd_model.rs"]
mod vtd_model;

use std::sync::atomic::Ordering;

use iommu::core::PagingFlags;
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};
use vtd_model::inv::{decode, dev_range};
use vtd_model::spec::{fsts, gcmd, reg};
use vtd_model::walk::Stage;
use vtd_model::*;

/// Second-level entry bits.
const R: u64 = 1;
const W: u64 = 2;
const PS: u64 = 1 << 7;
/// x86-64 entry bits.
const P: u64 = 1;
const RWB: u64 = 2;
const US: u64 = 4;

/// Map one leaf in hand-built 4-level tables (second level: `table_bits`
/// R|W; first level: P|RW|US), at `level` (1: 4 KiB, 2: 2 MiB).
fn map(hal: &ModelHal, root: u64, iova: u64, leaf: u64, level: u32, table_bits: u64) {
    let mut t = root;
    for l in (level + 1..=4).rev() {
        let slot = t + ((iova >> (12 + 9 * (l - 1))) & 511) * 8;
        let e = hal.read_u64(slot).unwrap();
        t = if e & 3 != 0 {
            e & 0x000f_ffff_ffff_f000
        } else {
            let n = hal.page();
            hal.write_u64(slot, n | table_bits);
            n
        };
    }
    hal.write_u64(t + ((iova >> (12 + 9 * (level - 1))) & 511) * 8, leaf);
}

/// Latch `rtaddr` and turn translation on, as a driver would.
fn start(u: &FakeUnit, rtaddr: u64) {
    u.reg64(reg::RTADDR).store(rtaddr, Ordering::SeqCst);
    u.reg32(reg::GCMD).store(gcmd::SRTP, Ordering::SeqCst);
    u.settle();
    u.reg32(reg::GCMD).store(gcmd::TE, Ordering::SeqCst);
    u.settle();
    assert_eq!(u.gsts() & gcmd::TE, gcmd::TE);
}

#[test]
fn walker_on_hand_built_legacy_tables() {
    let hal = ModelHal::new();
    let u = FakeUnit::new(&hal, UnitConfig::legacy());
    let (root, ctx, sl) = (hal.page(), hal.page(), hal.page());
    hal.write_u64(root, ctx | 1);
    let e = ctx + 0x10 * 16;
    hal.write_u64(e, sl | 1);
    hal.write_u64(e + 8, 2 | (5 << 8));
    map(&hal, sl, 0x4020_3000, 0x1234_5000 | R, 1, R | W);
    map(&hal, sl, 0x4040_0000, 0x8000_0000 | PS | R | W, 2, R | W);
    assert_eq!(
        u.walk(Req::read(0x10, 0)).unwrap().kind,
        Kind::Untranslated,
        "TE off"
    );
    start(&u, root);

    let t = u.walk(Req::read(0x10, 0x4020_3abc)).unwrap();
    assert_eq!(
        (t.pa, t.did, t.page, t.kind),
        (0x1234_5abc, Some(5), 4096, Kind::SecondLevel)
    );
    assert_eq!(
        u.walk(Req::write(0x10, 0x4020_3000)),
        Err(WalkFault::Denied {
            stage: Stage::Second,
            write: true
        })
    );
    let t = u.walk(Req::write(0x10, 0x405f_1234)).unwrap();
    assert_eq!((t.pa, t.page), (0x801f_1234, 1 << 21));
    assert_eq!(
        u.walk(Req::read(0x10, 0x4060_0000)),
        Err(WalkFault::NotPresent {
            stage: Stage::Second,
            level: 2
        })
    );
    assert_eq!(
        u.walk(Req::read(0x10, 1 << 48)),
        Err(WalkFault::AddressBeyond)
    );
    assert_eq!(
        u.walk(Req::read(0x18, 0)),
        Err(WalkFault::ContextNotPresent)
    );
    assert_eq!(u.walk(Req::read(0x100, 0)), Err(WalkFault::RootNotPresent));
    // AW 3 (57 bits) is not in QEMU's SAGAW.
    hal.write_u64(e + 8, 3 | (5 << 8));
    assert!(matches!(
        u.walk(Req::read(0x10, 0)),
        Err(WalkFault::ContextInvalid(_))
    ));
    // Pass-through must name the largest width (48 here).
    hal.write_u64(e, (2 << 2) | 1);
    hal.write_u64(e + 8, 2 | (1 << 8));
    assert_eq!(
        u.walk(Req::write(0x10, 0x9000)).unwrap().kind,
        Kind::PassThrough
    );
    hal.write_u64(e + 8, 1 | (1 << 8));
    assert!(matches!(
        u.walk(Req::read(0x10, 0)),
        Err(WalkFault::ContextInvalid(_))
    ));
    // A table pointer outside the driver's memory is reported, not read.
    hal.write_u64(e, 0x1000 | 1);
    hal.write_u64(e + 8, 2 | (5 << 8));
    assert_eq!(
        u.walk(Req::read(0x10, 0)),
        Err(WalkFault::BadPointer { addr: 0x1000 })
    );
}

#[test]
fn walker_on_hand_built_scalable_tables() {
    let hal = ModelHal::new();
    let u = FakeUnit::new(&hal, UnitConfig::scalable());
    let (root, upper, dir, table) = (hal.page(), hal.page(), hal.page(), hal.page());
    let (sl, fl, guest_sl) = (hal.page(), hal.page(), hal.page());
    hal.write_u64(root + 8, upper | 1); // bus 0, upper half only
    let c = upper + 0x10 * 32; // devfn 0x90
    hal.write_u64(c, dir | (1 << 3) | 1); // PASIDE, PDTS 0
    hal.write_u64(dir, table | 1);
    // PASID 0: second level, DID 7.
    hal.write_u64(table + 8, 7);
    hal.write_u64(table, sl | (2 << 6) | (2 << 2) | 1);
    map(&hal, sl, 0x10_0000, 0x8000_0000 | R | W, 1, R | W);
    // PASID 3: first level, DID 8.
    hal.write_u64(table + 3 * 64 + 8, 8);
    hal.write_u64(table + 3 * 64 + 16, fl);
    hal.write_u64(table + 3 * 64, (1 << 6) | 1);
    map(&hal, fl, 0x20_0000, 0x9000_0000 | P | US, 1, P | RWB | US);
    // PASID 4: pass-through.
    hal.write_u64(table + 4 * 64 + 8, 1);
    hal.write_u64(table + 4 * 64, (4 << 6) | 1);
    // PASID 5: nested; the guest's table at guest-physical 0x1000_0000.
    let gfl = hal.page();
    map(&hal, guest_sl, 0x1000_0000, gfl | R, 1, R | W);
    let before = hal.allocations();
    map(
        &hal,
        gfl,
        0x30_0000,
        0x2000_0000 | P | RWB | US,
        1,
        P | RWB | US,
    );
    // The guest's intermediate tables sit at guest-physical == host.
    for (a, _) in hal
        .allocations()
        .into_iter()
        .filter(|x| !before.contains(x))
    {
        map(&hal, guest_sl, a, a | R, 1, R | W);
    }
    map(&hal, guest_sl, 0x2000_0000, 0xa000_0000 | R | W, 1, R | W);
    // The guest's root is named by its guest-physical address.
    hal.write_u64(table + 5 * 64 + 8, 9);
    hal.write_u64(table + 5 * 64 + 16, 0x1000_0000);
    hal.write_u64(table + 5 * 64, guest_sl | (3 << 6) | (2 << 2) | 1);
    start(&u, root | (1 << 10));

    let sid = 0x90;
    let t = u.walk(Req::write(sid, 0x10_0008)).unwrap();
    assert_eq!(
        (t.pa, t.did, t.kind),
        (0x8000_0008, Some(7), Kind::SecondLevel)
    );
    let t = u.walk(Req::read(sid, 0x20_0010).pasid(3)).unwrap();
    assert_eq!(
        (t.pa, t.did, t.kind),
        (0x9000_0010, Some(8), Kind::FirstLevel)
    );
    assert!(matches!(
        u.walk(Req::write(sid, 0x20_0000).pasid(3)),
        Err(WalkFault::Denied {
            stage: Stage::First,
            write: true
        })
    ));
    assert_eq!(
        u.walk(Req::read(sid, 0x20_0000).pasid(3).privileged()),
        Err(WalkFault::SupervisorDenied)
    );
    let t = u.walk(Req::write(sid, 0x7777_7000).pasid(4)).unwrap();
    assert_eq!(
        (t.pa, t.kind, t.did),
        (0x7777_7000, Kind::PassThrough, Some(1))
    );
    let t = u.walk(Req::write(sid, 0x30_0044).pasid(5)).unwrap();
    assert_eq!((t.pa, t.kind, t.did), (0xa000_0044, Kind::Nested, Some(9)));
    assert_eq!(
        u.walk(Req::read(sid, 0).pasid(6)),
        Err(WalkFault::PasidEntryNotPresent)
    );
    assert_eq!(
        u.walk(Req::read(sid, 0).pasid(64)),
        Err(WalkFault::PasidDirNotPresent)
    );
    assert_eq!(
        u.walk(Req::read(sid, 0).pasid(128 * 64)),
        Err(WalkFault::PasidBeyondDirectory)
    );
    assert_eq!(
        u.walk(Req::read(0x10, 0)),
        Err(WalkFault::RootNotPresent),
        "lower half"
    );
    // PASIDs disabled in the context entry.
    hal.write_u64(c, dir | 1);
    assert_eq!(
        u.walk(Req::read(sid, 0).pasid(3)),
        Err(WalkFault::PasidBlocked)
    );
    assert!(u.walk(Req::read(sid, 0x10_0000)).is_ok());
}

#[test]
fn descriptors_decode_from_the_specification() {
    let legacy = UnitConfig::legacy();
    let sm = UnitConfig::scalable();
    let d = |w: [u64; 4], wide, scalable, id: &UnitConfig| decode(w, wide, scalable, id);
    let cc = 1 | (3 << 4) | (0x42 << 16) | (0x1234 << 32) | (1 << 48);
    assert_eq!(
        d([cc, 0, 0, 0], false, false, &legacy),
        Ok(Inv::Context(CcScope::Device {
            did: 0x42,
            sid: 0x1234,
            fm: 1
        }))
    );
    assert!(
        d([cc | (1 << 7), 0, 0, 0], false, false, &legacy).is_err(),
        "reserved bit"
    );
    assert!(
        d([cc, 0, 0, 1], true, true, &sm).is_err(),
        "upper half of a 256-bit slot"
    );
    assert!(
        d([1, 0, 0, 0], false, false, &legacy).is_err(),
        "granularity 0"
    );
    let iotlb = 2 | (3 << 4) | (3 << 6) | (9 << 16);
    assert_eq!(
        d(
            [iotlb, 0x40_0000 | (1 << 6) | 3, 0, 0],
            false,
            false,
            &legacy
        ),
        Ok(Inv::Iotlb {
            scope: IotlbScope::Pages {
                did: 9,
                addr: 0x40_0000,
                am: 3,
                ih: true
            },
            drain_reads: true,
            drain_writes: true
        })
    );
    let wait = 5 | (1 << 5) | (1 << 6) | (0xabcd << 32);
    assert_eq!(
        d([wait, 0x1000, 0, 0], false, false, &legacy),
        Ok(Inv::Wait {
            data: 0xabcd,
            addr: 0x1000,
            status_write: true,
            interrupt: false,
            fence: true,
            page_drain: false
        })
    );
    assert!(
        d([wait | (1 << 7), 0x1000, 0, 0], false, false, &legacy).is_err(),
        "PD without PDS"
    );
    let piotlb = 6 | (2 << 4) | (3 << 16) | (77 << 32);
    assert!(
        d([piotlb, 0, 0, 0], false, false, &legacy).is_err(),
        "not in legacy mode"
    );
    assert_eq!(
        d([piotlb, 0, 0, 0], true, true, &sm),
        Ok(Inv::PasidIotlb {
            did: 3,
            pasid: 77,
            scope: PiotlbScope::Pasid
        })
    );
    assert!(
        d([3 | (0x10 << 32), 0, 0, 0], false, false, &legacy).is_err(),
        "no ECAP.DT"
    );
    assert!(d([0xf, 0, 0, 0], false, false, &legacy).is_err());
    assert!(
        d([1 | (1 << 4) | (1 << 9), 0, 0, 0], false, false, &legacy).is_err(),
        "type 0x11"
    );
    let pgr = 9 | (1 << 4) | (0xf << 12) | (0x10 << 16) | (5 << 32);
    assert_eq!(
        d([pgr, (7 << 3) | (1 << 2), 0, 0], true, true, &sm),
        Ok(Inv::PageResponse {
            rid: 0x10,
            pasid: Some(5),
            code: 0xf,
            prgi: 7,
            lpig: true
        })
    );
    assert_eq!(
        dev_range(0x5000, false),
        DevRange::Range {
            addr: 0x5000,
            len: 0x1000
        }
    );
    assert_eq!(
        dev_range(0x4000, true),
        DevRange::Range {
            addr: 0x4000,
            len: 0x2000
        }
    );
    assert_eq!(
        dev_range(0x5000, true),
        DevRange::Range {
            addr: 0x4000,
            len: 0x4000
        }
    );
    assert_eq!(dev_range((u64::MAX >> 1) & !0xfff, true), DevRange::All);
}

/// One GCMD operation at a time; the rest is a violation the tests see.
#[test]
fn gcmd_asks_for_one_operation_at_a_time() {
    let hal = ModelHal::new();
    let mut u = FakeUnit::new(&hal, UnitConfig::legacy());
    u.reg32(reg::GCMD)
        .store(gcmd::SRTP | gcmd::TE, Ordering::SeqCst);
    u.settle();
    let v = u.violations();
    assert!(v.iter().any(|s| s.contains("2 operations")), "{v:?}");
    assert!(v.iter().any(|s| s.contains("TE set before")), "{v:?}");
    u.allow_violations();
}

/// A write-1-to-clear of the only pending FSTS bit is seen although the
/// driver writes the very bit the register shows (FRI reads 0xff while
/// PPF is clear).
#[test]
fn fsts_write_one_to_clear() {
    let hal = ModelHal::new();
    let u = FakeUnit::new(&hal, UnitConfig::legacy());
    {
        let mut st = u.lock();
        st.fsts |= fsts::ITE;
        st.publish_fsts();
    }
    let shown = u.fsts_register();
    assert_eq!(shown, fsts::ITE | (0xff << 8));
    u.reg32(reg::FSTS).store(fsts::ITE, Ordering::SeqCst);
    assert_eq!(u.fsts_errors(), 0);
    assert_eq!(u.fsts_register(), 0xff << 8);
}

/// Without the flush of a replaced context entry, the unit keeps
/// translating through the old domain: the caches are real enough for the
/// driver tests to catch a missing or wrong invalidation.
#[test]
fn the_caches_keep_what_was_not_invalidated() {
    let mut rig = Rig::legacy();
    let dev = rig.device(0, 0x10, 0, false);
    let a = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let b = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let rw = Prot::READ | Prot::WRITE;
    rig.core
        .map(a, Iova(0), PhysAddr(0x8000_0000), 0x1000, rw)
        .unwrap();
    rig.core
        .map(b, Iova(0), PhysAddr(0x9000_0000), 0x1000, rw)
        .unwrap();
    rig.core.attach(dev, a).unwrap();
    assert_eq!(
        rig.units[0].dma(Req::read(0x10, 0)).unwrap().pa,
        0x8000_0000
    );
    rig.core
        .driver_mut()
        .unit_mut(0)
        .unwrap()
        .set_skip_flush(true);
    rig.core.attach(dev, b).unwrap();
    let u = &rig.units[0];
    assert_eq!(u.walk(Req::read(0x10, 0)).unwrap().pa, 0x9000_0000);
    assert_eq!(u.dma(Req::read(0x10, 0)).unwrap().pa, 0x8000_0000, "stale");
    let stats = u.lock().caches.stats;
    assert!(stats.context_hits > 0 && stats.iotlb_hits > 0, "{stats:?}");
    u.clear_caches();
    assert_eq!(u.dma(Req::read(0x10, 0)).unwrap().pa, 0x9000_0000);
}
