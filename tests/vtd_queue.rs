//! The invalidation queue of the real VT-d driver against the model: an
//! invalid descriptor (FSTS.IQE) reported with its slot and repaired,
//! device-TLB time-outs (ITE) and completion errors (ICE) reported and
//! cleared, a wait the unit never completes timed out, and the ring
//! wrapping around.

#[path = "common/vtd_model.rs"]
mod vtd_model;

use iommu::Error;
use iommu::core::{DomainId, PagingFlags, TagInvalidate};
use iommu::drivers::vtd::desc::Desc;
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};
use vtd_model::spec::{ecap, fsts};
use vtd_model::*;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const SID: u16 = 0x0010;

/// A context-cache invalidation with reserved bit 7 set.
const RESERVED_BIT: Desc = Desc([0x1 | (1 << 4) | (1 << 7), 0, 0, 0]);
/// Type 0xf: no such descriptor.
const UNKNOWN_TYPE: Desc = Desc([0xf, 0, 0, 0]);
/// A global context-cache invalidation: harmless.
const HARMLESS: Desc = Desc([0x1 | (1 << 4), 0, 0, 0]);

fn invalid_slots(log: &[Event]) -> Vec<u64> {
    log.iter()
        .filter_map(|e| match e {
            Event::Invalid { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect()
}

/// An invalid descriptor: the next wait reports FSTS.IQE with the slot it
/// sat in; the slot is repaired and the queue goes on, so the wait after
/// it succeeds. In both descriptor widths.
#[test]
fn an_invalid_descriptor_is_reported_with_its_slot_and_repaired() {
    for config in [UnitConfig::legacy(), UnitConfig::scalable()] {
        let mut rig = Rig::new(&[config]);
        for bad in [RESERVED_BIT, UNKNOWN_TYPE] {
            rig.clear_logs();
            let d = rig.core.driver_mut();
            d.submit_raw(0, &[HARMLESS, bad, HARMLESS]).unwrap();
            let e = d.wait(0).unwrap_err();
            let Error::QueueEntry {
                register, index, ..
            } = e
            else {
                panic!("{e:?}");
            };
            assert!(register.contains("FSTS.IQE"), "{register}");
            let log = rig.units[0].take_log();
            assert_eq!(
                invalid_slots(&log),
                [u64::from(index)],
                "the slot the unit stopped at"
            );
            assert_eq!(rig.units[0].fsts_errors(), 0, "IQE cleared");
            // The unit went on: the repaired slot, the descriptor after
            // it, and the wait that reported the error.
            let after: Vec<(u64, Inv)> = log
                .iter()
                .skip_while(|e| !matches!(e, Event::Invalid { .. }))
                .filter_map(|e| match e {
                    Event::Desc { slot, inv } => Some((*slot, *inv)),
                    _ => None,
                })
                .collect();
            assert_eq!(after.len(), 3, "{after:?}");
            assert_eq!(
                after[0],
                (u64::from(index), Inv::Context(CcScope::Global)),
                "repaired in place"
            );
            assert_eq!(after[1].1, Inv::Context(CcScope::Global));
            assert!(after[2].1.is_wait());
            // And the next wait succeeds.
            rig.core.driver_mut().wait(0).unwrap();
            assert_eq!(invs(&rig.units[0].take_log()).len(), 1);
        }
    }
}

/// A descriptor of a type the unit does not have (a PASID-cache
/// invalidation in legacy mode) is invalid too.
#[test]
fn a_descriptor_the_unit_lacks_is_invalid() {
    let mut rig = Rig::legacy();
    let d = rig.core.driver_mut();
    d.submit_raw(0, &[Desc([0x7 | (3 << 4), 0, 0, 0])]).unwrap();
    assert!(matches!(
        d.wait(0),
        Err(Error::QueueEntry { register, .. }) if register.contains("IQE")
    ));
    d.wait(0).unwrap();
}

/// A device-TLB invalidation that times out (ITE) or completes in error
/// (ICE): the sync reports it naming the register, the bit is cleared,
/// and the next sync succeeds.
#[test]
fn device_tlb_errors_are_reported_and_cleared() {
    for (fault, name) in [(QueueFault::Ite, "FSTS.ITE"), (QueueFault::Ice, "FSTS.ICE")] {
        let mut rig = Rig::new(&[UnitConfig::legacy().ecap_on(ecap::DT)]);
        let dev = rig.device(0, SID, 0, true);
        let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        rig.core.attach(dev, d).unwrap();
        rig.core
            .map(d, Iova(0), PhysAddr(0x8000_0000), 0x4000, RW)
            .unwrap();
        rig.units[0].arm(fault);
        let e = rig.core.unmap_sync(d, Iova(0), 0x1000).unwrap_err();
        let Error::Hardware { register, value } = e else {
            panic!("{e:?}");
        };
        assert!(register.contains(name), "{register}");
        assert_ne!(value as u32 & fault.bit(), 0, "{value:#x}");
        let log = rig.units[0].take_log();
        assert!(
            log.iter()
                .any(|e| matches!(e, Event::QueueFault { fault: f, .. } if *f == fault))
        );
        assert!(log.iter().any(|e| matches!(e, Event::WaitAborted { .. })));
        assert_eq!(
            rig.units[0].fsts_errors() & (fsts::ITE | fsts::ICE),
            0,
            "cleared"
        );
        rig.core.unmap_sync(d, Iova(0x1000), 0x1000).unwrap();
        rig.core.detach(dev).unwrap();
    }
}

/// A wait the unit never completes times out, without panicking; once the
/// unit goes on, so does the queue.
#[test]
fn a_wait_that_never_completes_times_out_and_the_queue_recovers() {
    let mut rig = Rig::legacy();
    let dev = rig.device(0, SID, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.core.attach(dev, d).unwrap();
    rig.core
        .map(d, Iova(0), PhysAddr(0x8000_0000), 0x2000, RW)
        .unwrap();
    rig.units[0].hold_waits(true);
    let pages = rig.hal.live_pages();
    let e = rig.core.unmap_sync(d, Iova(0), 0x1000).unwrap_err();
    let Error::Timeout { what } = e else {
        panic!("{e:?}");
    };
    assert!(what.contains("wait"), "{what}");
    assert_eq!(
        rig.hal.live_pages(),
        pages,
        "nothing freed while the unit may walk it"
    );
    rig.units[0].hold_waits(false);
    rig.core.driver_mut().wait(0).unwrap();
    rig.core.unmap_sync(d, Iova(0x1000), 0x1000).unwrap();
    rig.core.detach(dev).unwrap();
    assert_eq!(rig.units[0].fsts_errors(), 0);
}

/// Hundreds of descriptors: the ring wraps around (256 slots of 128 bits,
/// 128 of 256 bits), and a full ring waits for the unit to make room.
#[test]
fn the_ring_wraps_around_and_waits_for_room() {
    for config in [UnitConfig::legacy(), UnitConfig::scalable()] {
        let mut rig = Rig::new(&[config]);
        rig.clear_logs();
        for _ in 0..300 {
            rig.core.driver_mut().wait(0).unwrap();
        }
        assert_eq!(waits(&rig.units[0].take_log()), 300);
        // More than the ring holds, without a wait in between.
        let burst = vec![HARMLESS; 700];
        rig.core.driver_mut().submit_raw(0, &burst).unwrap();
        rig.core.driver_mut().wait(0).unwrap();
        let log = rig.units[0].take_log();
        assert_eq!(invs(&log).len(), 701);
        let stats = rig.driver().unit(0).unwrap().qi.as_ref().unwrap().stats;
        assert!(stats.waits >= 301, "{stats:?}");
    }
}

/// The queue serves the Identity domain's flushes too (a replace through
/// not-present).
#[test]
fn replacing_identity_flushes_through_the_queue() {
    let mut rig = Rig::legacy();
    let dev = rig.device(0, SID, 0, false);
    rig.core.attach(dev, DomainId::IDENTITY).unwrap();
    rig.clear_logs();
    rig.core.detach(dev).unwrap();
    let got = rig.units[0].take_invs();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0],
        Inv::Context(CcScope::Device {
            did: 1,
            sid: SID,
            fm: 0
        })
    );
}

/// The driver contract: when an attach fails, the device still
/// translates through the old domain. A replace whose flush times out
/// leaves the old entry in place (legacy and scalable mode).
#[test]
fn a_replace_whose_flush_times_out_keeps_the_old_entry() {
    for config in [UnitConfig::legacy(), UnitConfig::scalable()] {
        let mut rig = Rig::new(&[config]);
        let dev = rig.device(0, SID, 0, false);
        let a = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        let b = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
        rig.core
            .map(a, Iova(0), PhysAddr(0x8000_0000), 0x1000, RW)
            .unwrap();
        rig.core
            .map(b, Iova(0), PhysAddr(0x9000_0000), 0x1000, RW)
            .unwrap();
        rig.core.attach(dev, a).unwrap();
        rig.units[0].hold_waits(true);
        let e = rig.core.attach(dev, b).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
        rig.units[0].hold_waits(false);
        assert_eq!(rig.core.attached(dev, None).unwrap(), Some(a));
        assert_eq!(
            rig.units[0].walk(Req::read(SID, 0)).map(|t| t.pa),
            Ok(0x8000_0000),
            "{config:?}: the device translates through the domain the core says is attached"
        );
        // And the replace goes through once the unit does.
        rig.core.attach(dev, b).unwrap();
        assert_eq!(rig.units[0].dma(Req::read(SID, 0)).unwrap().pa, 0x9000_0000);
    }
}
