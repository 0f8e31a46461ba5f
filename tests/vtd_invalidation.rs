//! Invalidation on unmap (`core.unmap_sync`) through the real VT-d driver
//! against the model: page-selective IOTLB invalidations as `psi::plan`
//! lays them out, the invalidation hint, domain-selective fallbacks,
//! PASID-based invalidation of first-level domains, device-TLB
//! invalidations after the IOTLB ones, one wait per sync; and the unit's
//! caches emptied of what was unmapped.

#[path = "common/vtd_model.rs"]
mod vtd_model;

use iommu::core::{DomainId, PagingFlags};
use iommu::drivers::vtd::psi::{self, Plan};
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};
use vtd_model::spec::{cap, ecap};
use vtd_model::*;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const SID: u16 = 0x0010;
const M2: u64 = 0x20_0000;

fn did(rig: &Rig, d: DomainId) -> u16 {
    rig.core.domain_hw(d).unwrap().tag as u16
}

/// A rig with one device attached to a fresh paging domain.
fn attached(config: UnitConfig, ats: bool) -> (Rig, DomainId) {
    let mut rig = Rig::new(&[config]);
    let dev = rig.device(0, SID, 8, ats);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.core.attach(dev, d).unwrap();
    rig.clear_logs();
    (rig, d)
}

fn pages(did: u16, addr: u64, am: u8, ih: bool) -> Inv {
    Inv::Iotlb {
        scope: IotlbScope::Pages { did, addr, am, ih },
        drain_reads: true,
        drain_writes: true,
    }
}

fn domain(did: u16) -> Inv {
    Inv::Iotlb {
        scope: IotlbScope::Domain { did },
        drain_reads: true,
        drain_writes: true,
    }
}

/// Unmap and sync, returning the descriptors (waits left out) after
/// checking there was exactly one wait, last.
fn unmap(rig: &mut Rig, d: DomainId, iova: u64, len: u64) -> Vec<Inv> {
    rig.core.unmap_sync(d, Iova(iova), len).unwrap();
    let log = rig.units[0].take_log();
    let invs = invs(&log);
    assert_eq!(waits(&log), 1, "one wait per sync: {invs:?}");
    assert!(invs.last().unwrap().is_wait(), "the wait comes last");
    invs_no_waits(&log)
}

/// The invalidation hint is set when only leaves changed and clear when a
/// table page was freed; the address and mask are `psi::plan`'s.
#[test]
fn page_selective_invalidation_with_the_hint() {
    let (mut rig, d) = attached(UnitConfig::legacy(), false);
    let dd = did(&rig, d);
    rig.core
        .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x2000, RW)
        .unwrap();
    let u = &rig.units[0];
    assert!(u.dma(Req::read(SID, 0x10_0000)).is_ok());
    // One of two pages in a leaf table: the table stays.
    assert_eq!(
        unmap(&mut rig, d, 0x10_0000, 0x1000),
        [pages(dd, 0x10_0000, 0, true)]
    );
    assert!(
        rig.units[0].dma(Req::read(SID, 0x10_0000)).is_err(),
        "the cached translation is gone"
    );
    // The last page of the table: the table is freed, the hint clear.
    let live = rig.hal.live_pages();
    assert_eq!(
        unmap(&mut rig, d, 0x10_1000, 0x1000),
        [pages(dd, 0x10_1000, 0, false)]
    );
    assert!(rig.hal.live_pages() < live, "a table page was freed");

    // A 2 MiB leaf, and a range across a 1 GiB boundary as the plan
    // splits it.
    rig.core
        .map(d, Iova(0x4000_0000), PhysAddr(0x1_0000_0000), M2, RW)
        .unwrap();
    let got = unmap(&mut rig, d, 0x4000_0000, M2);
    assert_eq!(got.len(), 1);
    assert!(matches!(
        got[0],
        Inv::Iotlb { scope: IotlbScope::Pages { did, addr: 0x4000_0000, am: 9, .. }, .. } if did == dd
    ));
    let (start, len) = ((1u64 << 30) - 0x8_0000, 0x10_0000);
    rig.core
        .map(d, Iova(start), PhysAddr(0x2_0000_0000), len, RW)
        .unwrap();
    let got = unmap(&mut rig, d, start, len);
    let Plan::Blocks(blocks) = psi::plan(start, start + len, 18, true) else {
        panic!("a plan of blocks");
    };
    let want: Vec<(u64, u8)> = blocks.iter().flatten().copied().collect();
    assert_eq!(want.len(), 2);
    let seen: Vec<(u64, u8)> = got
        .iter()
        .map(|i| match i {
            Inv::Iotlb {
                scope: IotlbScope::Pages { addr, am, .. },
                ..
            } => (*addr, *am),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, want);
}

/// Too large for the address mask: the whole domain. No page-selective
/// invalidation on the unit: the whole domain, always.
#[test]
fn domain_selective_when_too_large_or_without_psi() {
    let (mut rig, d) = attached(UnitConfig::legacy().cap_set(cap::MAMV, 2), false);
    let dd = did(&rig, d);
    rig.core
        .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 16 * 0x1000, RW)
        .unwrap();
    assert_eq!(
        unmap(&mut rig, d, 0x10_0000, 4 * 0x1000),
        [pages(dd, 0x10_0000, 2, true)]
    );
    assert_eq!(unmap(&mut rig, d, 0x10_4000, 12 * 0x1000), [domain(dd)]);

    let (mut rig, d) = attached(UnitConfig::legacy().cap_off(cap::PSI), false);
    let dd = did(&rig, d);
    rig.core
        .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x1000, RW)
        .unwrap();
    assert_eq!(unmap(&mut rig, d, 0x10_0000, 0x1000), [domain(dd)]);
}

/// Every device the domain is attached to is invalidated, in one batch
/// with one wait.
#[test]
fn one_wait_for_every_tag() {
    let (mut rig, d) = attached(UnitConfig::legacy(), false);
    let dd = did(&rig, d);
    let other = rig.device(0, 0x0200, 0, false);
    rig.core.attach(other, d).unwrap();
    rig.core
        .map(d, Iova(0), PhysAddr(0x8000_0000), 0x2000, RW)
        .unwrap();
    rig.clear_logs();
    let got = unmap(&mut rig, d, 0, 0x1000);
    assert!(!got.is_empty());
    assert!(got.iter().all(|i| *i == pages(dd, 0, 0, true)), "{got:?}");
}

/// First-level domains are invalidated with PASID-based IOTLB
/// descriptors, at every PASID they are attached at.
#[test]
fn first_level_domains_use_pasid_based_invalidation() {
    let (mut rig, d) = attached(UnitConfig::scalable().ecap_off(ecap::SLTS), false);
    let dd = did(&rig, d);
    let dev = iommu::core::DeviceId {
        instance: 0,
        id: SID.into(),
    };
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, d).unwrap();
    rig.core
        .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x2000, RW)
        .unwrap();
    let u = &rig.units[0];
    assert!(u.dma(Req::read(SID, 0x10_0000).pasid(pasid)).is_ok());
    rig.clear_logs();
    let mut got = unmap(&mut rig, d, 0x10_0000, 0x1000);
    got.sort_by_key(|i| format!("{i:?}"));
    let at = |p| Inv::PasidIotlb {
        did: dd,
        pasid: p,
        scope: PiotlbScope::Pages {
            addr: 0x10_0000,
            am: 0,
            ih: true,
        },
    };
    assert_eq!(got, [at(0), at(pasid)]);
    assert!(
        rig.units[0]
            .dma(Req::read(SID, 0x10_0000).pasid(pasid))
            .is_err()
    );
}

/// A device with ATS on a unit with device TLBs: its TLB is invalidated
/// after the IOTLB, with the same range (size-encoded); at a PASID with the
/// PASID-based form.
#[test]
fn device_tlbs_after_the_iotlb() {
    for config in [
        UnitConfig::legacy().ecap_on(ecap::DT),
        UnitConfig::scalable(),
    ] {
        let (mut rig, d) = attached(config, true);
        let dd = did(&rig, d);
        rig.core
            .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x8000, RW)
            .unwrap();
        rig.clear_logs();
        let got = unmap(&mut rig, d, 0x10_0000, 0x4000);
        assert_eq!(
            got,
            [
                pages(dd, 0x10_0000, 2, true),
                Inv::DevTlb {
                    sid: SID,
                    pfsid: SID,
                    mip: 0,
                    range: DevRange::Range {
                        addr: 0x10_0000,
                        len: 0x4000
                    }
                }
            ],
            "{config:?}"
        );
        if config.has_ecap(ecap::SMTS) {
            let dev = iommu::core::DeviceId {
                instance: 0,
                id: SID.into(),
            };
            let pasid = rig.core.alloc_pasid(dev).unwrap();
            let e = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
            let de = did(&rig, e);
            rig.core.attach_pasid(dev, pasid, e).unwrap();
            rig.core
                .map(e, Iova(0x30_0000), PhysAddr(0x8000_0000), 0x1000, RW)
                .unwrap();
            rig.clear_logs();
            assert_eq!(
                unmap(&mut rig, e, 0x30_0000, 0x1000),
                [
                    pages(de, 0x30_0000, 0, false),
                    Inv::PasidDevTlb {
                        sid: SID,
                        pfsid: SID,
                        mip: 0,
                        pasid,
                        global: false,
                        range: DevRange::Range {
                            addr: 0x30_0000,
                            len: 0x1000
                        }
                    }
                ]
            );
        }
    }
}

/// A device with ATS behind a unit without device TLBs (ECAP.DT clear,
/// QEMU's default): its translation requests are not enabled, so there is
/// no device TLB to invalidate, and the unit would refuse the descriptor.
#[test]
fn no_device_tlb_invalidation_without_ecap_dt() {
    for config in [
        UnitConfig::legacy(),
        UnitConfig::scalable().ecap_off(ecap::DT),
    ] {
        let (mut rig, d) = attached(config, true);
        let dd = did(&rig, d);
        rig.core
            .map(d, Iova(0x10_0000), PhysAddr(0x8000_0000), 0x2000, RW)
            .unwrap();
        rig.clear_logs();
        assert_eq!(
            unmap(&mut rig, d, 0x10_0000, 0x1000),
            [pages(dd, 0x10_0000, 0, true)]
        );
        let dev = iommu::core::DeviceId {
            instance: 0,
            id: SID.into(),
        };
        rig.core.detach(dev).unwrap();
        let got = rig.units[0].take_invs();
        assert!(
            got.iter()
                .all(|i| !matches!(i, Inv::DevTlb { .. } | Inv::PasidDevTlb { .. })),
            "{got:?}"
        );
        match rig.units[0].context(SID) {
            Some(Ctx::Legacy(c)) => assert_eq!(c.tt, 0),
            Some(Ctx::Scalable(c)) => assert!(!c.dte),
            None => panic!("no context entry"),
        }
    }
}
