//! Several units under one driver, and long runs of the real VT-d driver
//! against the model: attach / replace / detach cycles and map / unmap /
//! sync loops leave no table page and no domain ID behind, and the unit's
//! caches never disagree with its tables.

#[path = "common/vtd_model.rs"]
mod vtd_model;

use iommu::core::{DeviceId, DomainId, PagingFlags};
use iommu::pgtable::Prot;
use iommu::{Error, Iova, PhysAddr};
use vtd_model::spec::ecap;
use vtd_model::*;

const RW: Prot = Prot::READ.union(Prot::WRITE);

fn did(rig: &Rig, d: DomainId) -> u16 {
    rig.core.domain_hw(d).unwrap().tag as u16
}

fn root_of(log: &[Event]) -> u64 {
    log.iter()
        .find_map(|e| match e {
            Event::RootLatched { rtaddr } => Some(*rtaddr & !0xfff),
            _ => None,
        })
        .unwrap()
}

/// Two DRHDs served by one driver (instances 0 and 1, one legacy, one
/// scalable): each device translates through its own unit's tables, and
/// every invalidation goes to the queue of the unit that cached it.
#[test]
fn two_units_under_one_driver() {
    let mut rig = Rig::new(&[UnitConfig::legacy(), UnitConfig::scalable()]);
    // The same source-id behind each unit (two PCI segments).
    let a = rig.device(0, 0x0010, 0, false);
    let b = rig.device(1, 0x0010, 8, false);
    assert_ne!(root_of(&rig.units[0].log()), root_of(&rig.units[1].log()));
    let da = rig.core.alloc_paging(a, PagingFlags::empty()).unwrap();
    let db = rig.core.alloc_paging(b, PagingFlags::empty()).unwrap();
    assert_eq!((did(&rig, da), did(&rig, db)), (2, 2), "DIDs are per unit");
    rig.core
        .map(da, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x2000, RW)
        .unwrap();
    rig.core
        .map(db, Iova(0x10_0000), PhysAddr(0x9000_0000), 0x2000, RW)
        .unwrap();
    assert!(matches!(
        rig.core.attach(b, da),
        Err(Error::Incompatible { .. })
    ));
    rig.core.attach(a, da).unwrap();
    rig.core.attach(b, db).unwrap();
    let req = Req::read(0x0010, 0x10_0000);
    assert_eq!(rig.units[0].dma(req).unwrap().pa, 0x8000_0000);
    assert_eq!(rig.units[1].dma(req).unwrap().pa, 0x9000_0000);
    assert_eq!(rig.units[1].dma(req).unwrap().kind, Kind::SecondLevel);
    rig.clear_logs();

    rig.core.unmap_sync(db, Iova(0x10_0000), 0x1000).unwrap();
    assert_eq!(rig.units[0].take_invs(), [], "nothing for the other unit");
    let got = invs_no_waits(&rig.units[1].take_log());
    assert!(matches!(
        got[..],
        [Inv::Iotlb {
            scope: IotlbScope::Pages {
                did: 2,
                addr: 0x10_0000,
                am: 0,
                ..
            },
            ..
        }]
    ));
    assert!(rig.units[1].dma(req).is_err());
    assert_eq!(
        rig.units[0].dma(req).unwrap().pa,
        0x8000_0000,
        "unit 0 untouched"
    );

    rig.core.detach(a).unwrap();
    assert!(!rig.units[0].take_invs().is_empty());
    assert_eq!(rig.units[1].take_invs(), []);
    assert!(rig.units[0].walk(req).is_err());
    assert_eq!(
        rig.units[1].walk(Req::read(0x0010, 0x10_1000)).unwrap().pa,
        0x9000_1000
    );
}

/// A fresh walk and a DMA through the caches agree on every address of
/// interest, for every device.
fn caches_agree(rig: &Rig, sids: &[u16], pasid: Option<u32>, addrs: &[u64]) {
    for u in &rig.units {
        for &sid in sids {
            for &a in addrs {
                for p in [None, pasid] {
                    let mut req = Req::read(sid, a);
                    req.pasid = p;
                    assert_eq!(u.dma(req), u.walk(req), "{req:?}");
                }
            }
        }
        u.take_log();
    }
}

/// One round: two domains, mapped, attached, replaced, attached at a
/// PASID where the unit has PASIDs, unmapped in pieces, detached, freed.
fn round(rig: &mut Rig, a: DeviceId, b: DeviceId, pasids: bool) {
    let x = rig.core.alloc_paging(a, PagingFlags::empty()).unwrap();
    let y = rig.core.alloc_paging(a, PagingFlags::empty()).unwrap();
    rig.core
        .map(x, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x3000, RW)
        .unwrap();
    rig.core
        .map(x, Iova(0x4000_0000), PhysAddr(0x1_0000_0000), 0x40_0000, RW)
        .unwrap();
    rig.core
        .map(
            y,
            Iova(0x10_0000),
            PhysAddr(0x9000_0000),
            0x1000,
            Prot::READ,
        )
        .unwrap();
    rig.core.attach(a, x).unwrap();
    rig.core.attach(b, x).unwrap();
    let pasid = pasids.then(|| rig.core.alloc_pasid(a).unwrap());
    if let Some(p) = pasid {
        rig.core.attach_pasid(a, p, y).unwrap();
    }
    let addrs = [0x10_0000, 0x10_2000, 0x4000_0000, 0x403f_f000];
    let sids = [a.id as u16, b.id as u16];
    caches_agree(rig, &sids, pasid, &addrs);
    rig.core.attach(a, y).unwrap();
    caches_agree(rig, &sids, pasid, &addrs);
    rig.core.unmap_sync(x, Iova(0x10_1000), 0x1000).unwrap();
    rig.core
        .unmap_sync(x, Iova(0x4000_0000), 0x20_0000)
        .unwrap();
    caches_agree(rig, &sids, pasid, &addrs);
    rig.core.attach(a, DomainId::IDENTITY).unwrap();
    caches_agree(rig, &sids, pasid, &addrs);
    if let Some(p) = pasid {
        rig.core.detach_pasid(a, p).unwrap();
        rig.core.free_pasid(p).unwrap();
    }
    rig.core.detach(a).unwrap();
    rig.core.detach(b).unwrap();
    caches_agree(rig, &sids, pasid, &addrs);
    rig.core.free_domain(x).unwrap();
    rig.core.free_domain(y).unwrap();
}

/// Attach / replace / detach cycles leave no table page (beyond the
/// context tables and PASID tables a device keeps) and no DID behind.
#[test]
fn attach_cycles_leak_nothing() {
    for config in [
        UnitConfig::legacy(),
        UnitConfig::legacy().ecap_off(ecap::PT),
        UnitConfig::scalable(),
        UnitConfig::scalable().ecap_off(ecap::SLTS),
    ] {
        let mut rig = Rig::new(&[config]);
        let a = rig.device(0, 0x0010, 8, false);
        let b = rig.device(0, 0x0390, 8, false);
        let pasids = config.has_ecap(ecap::SMTS);
        // The first round makes the structures the devices keep.
        round(&mut rig, a, b, pasids);
        let (pages, dids) = (rig.hal.live_pages(), rig.dids(0));
        assert_eq!(dids, 2, "only the reserved DIDs");
        for _ in 0..10 {
            round(&mut rig, a, b, pasids);
            assert_eq!(rig.hal.live_pages(), pages, "{config:?}");
            assert_eq!(rig.dids(0), dids);
        }
    }
}

/// A deterministic stream of map / unmap / sync over a window: at the end
/// the table is back to its root, and nothing of it is still cached.
#[test]
fn map_unmap_loops_leak_nothing() {
    for config in [
        UnitConfig::legacy(),
        UnitConfig::scalable().ecap_off(ecap::SLTS),
    ] {
        let mut rig = Rig::new(&[config]);
        let dev = rig.device(0, 0x0010, 0, false);
        let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        rig.core.attach(dev, d).unwrap();
        let base = rig.hal.live_pages();
        let mut seed = 0x1234_5678u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let window = 1u64 << 31;
        let mut mapped = Vec::new();
        for i in 0..300 {
            if mapped.len() < 8 && (i % 3 != 2 || mapped.is_empty()) {
                let pages = 1 + next() % 700;
                let iova = (next() % (window >> 12)) << 12;
                let len = (pages << 12).min(window - iova);
                if rig
                    .core
                    .map(d, Iova(iova), PhysAddr(0x1_0000_0000 + iova), len, RW)
                    .is_ok()
                {
                    assert!(rig.units[0].dma(Req::read(0x0010, iova)).is_ok());
                    mapped.push((iova, len));
                }
            } else {
                let (iova, len) = mapped.swap_remove((next() as usize) % mapped.len());
                rig.core.unmap_sync(d, Iova(iova), len).unwrap();
                for a in [iova, iova + len - 0x1000] {
                    assert!(rig.units[0].dma(Req::read(0x0010, a)).is_err(), "{a:#x}");
                }
            }
            rig.units[0].take_log();
        }
        for (iova, len) in mapped.drain(..) {
            rig.core.unmap_sync(d, Iova(iova), len).unwrap();
        }
        assert_eq!(rig.hal.live_pages(), base, "{config:?}");
        rig.units[0].take_log();
        rig.core.detach(dev).unwrap();
        rig.core.free_domain(d).unwrap();
        assert_eq!(rig.dids(0), 2);
    }
}
