//! Probe and enable of the real VT-d driver against the model: the order
//! of commands and descriptors the specification asks for, the root table
//! mode, every device blocked afterwards, a unit that never acknowledges a
//! command, and units the driver must refuse.

#[path = "common/vtd_model.rs"]
mod vtd_model;

use iommu::Error;
use iommu::core::{DeviceId, DeviceInfo, DomainId};
use vtd_model::spec::{cap, ecap, gcmd};
use vtd_model::*;

/// What enable did, reduced to the operations that matter for order.
fn ops(log: &[Event]) -> Vec<String> {
    log.iter()
        .filter_map(|e| match e {
            Event::Command { op, on } => Some(format!("{op}{}", if *on { "" } else { " off" })),
            Event::Desc { inv, .. } => Some(match inv {
                Inv::Context(CcScope::Global) => "context-cache global".into(),
                Inv::PasidCache {
                    scope: PcScope::Global,
                    ..
                } => "PASID-cache global".into(),
                Inv::Iotlb {
                    scope: IotlbScope::Global,
                    ..
                } => "IOTLB global".into(),
                Inv::Wait { .. } => "wait".into(),
                other => format!("{other:?}"),
            }),
            Event::Ignored { op } => Some(format!("{op} ignored")),
            _ => None,
        })
        .collect()
}

fn latched(log: &[Event]) -> (u64, u64) {
    let iqa = log
        .iter()
        .find_map(|e| match e {
            Event::QueueEnabled { iqa } => Some(*iqa),
            _ => None,
        })
        .expect("queue enabled");
    let rtaddr = log
        .iter()
        .find_map(|e| match e {
            Event::RootLatched { rtaddr } => Some(*rtaddr),
            _ => None,
        })
        .expect("root latched");
    (iqa, rtaddr)
}

#[test]
fn legacy_enable_order_and_root_mode() {
    let rig = Rig::legacy();
    let u = &rig.units[0];
    let log = u.log();
    assert_eq!(
        ops(&log),
        [
            "QIE",
            "SRTP",
            "context-cache global",
            "IOTLB global",
            "wait",
            "TE"
        ]
    );
    let (iqa, rtaddr) = latched(&log);
    assert_eq!(rtaddr & 0xc00, 0, "TTM legacy: {rtaddr:#x}");
    assert_eq!(iqa & (1 << 11), 0, "128-bit descriptors in legacy mode");
    assert_eq!(iqa & 7, 0, "one-page queue");
    assert_eq!(u.gsts(), gcmd::TE | gcmd::QIE | gcmd::SRTP);
}

#[test]
fn scalable_enable_order_and_root_mode() {
    let rig = Rig::scalable();
    let log = rig.unit(0).log();
    assert_eq!(
        ops(&log),
        [
            "QIE",
            "SRTP",
            "context-cache global",
            "PASID-cache global",
            "IOTLB global",
            "wait",
            "TE"
        ]
    );
    let (iqa, rtaddr) = latched(&log);
    assert_eq!((rtaddr >> 10) & 3, 1, "TTM scalable (bit 10): {rtaddr:#x}");
    assert_ne!(iqa & (1 << 11), 0, "256-bit descriptors in scalable mode");
}

#[test]
fn every_device_is_blocked_after_enable() {
    for rig in [Rig::legacy(), Rig::scalable()] {
        let u = &rig.units[0];
        for sid in [0x0000u16, 0x0008, 0x00ff, 0x0100, 0x1234, 0xffff] {
            for req in [
                Req::read(sid, 0),
                Req::write(sid, 0x1000),
                Req::read(sid, 0xfee0_0000),
            ] {
                let r = u.walk(req);
                assert_eq!(r, Err(WalkFault::RootNotPresent), "{sid:#x} {req:?}");
            }
        }
        // A DMA faults and the unit records it.
        assert!(u.dma(Req::write(0x0010, 0x4000)).is_err());
        assert_eq!(u.pending_records(), 1);
    }
}

/// A unit that never carries out one GCMD operation: enable times out
/// naming GSTS, without panicking, and the instance is not added.
#[test]
fn a_command_the_unit_never_acknowledges_times_out() {
    for stuck in [gcmd::QIE, gcmd::SRTP, gcmd::TE] {
        let mut rig = Rig::bare(&[UnitConfig::legacy()]);
        rig.unit(0).set_stuck(stuck);
        let e = rig.core.add_instance(0).unwrap_err();
        let Error::Timeout { what } = e else {
            panic!("{}: {e:?}", gcmd::name(stuck));
        };
        assert!(what.contains("GSTS"), "{what}");
        let log = rig.unit(0).log();
        assert!(
            log.contains(&Event::Ignored {
                op: gcmd::name(stuck)
            }),
            "{log:?}"
        );
        assert_eq!(rig.unit(0).gsts() & gcmd::TE, 0, "translation stays off");
        let dev = DeviceInfo {
            dev: DeviceId { instance: 0, id: 8 },
            pasid_bits: 0,
            ats: false,
        };
        assert!(rig.core.register_device(dev).is_err(), "instance not added");
        // Once the unit answers, adding it again works.
        rig.units[0].set_stuck(0);
        rig.core.add_instance(0).unwrap();
        rig.core.register_device(dev).unwrap();
        rig.core.attach(dev.dev, DomainId::IDENTITY).unwrap();
        let t = rig.units[0].walk(Req::write(8, 0x1000)).unwrap();
        assert_eq!((t.pa, t.kind), (0x1000, Kind::PassThrough));
    }
}

/// Units the driver cannot drive are refused at probe, naming what is
/// missing, before anything is written to them.
#[test]
fn units_without_what_the_driver_needs_are_refused() {
    let cases = [
        (UnitConfig::legacy().ecap_off(ecap::QI), "ECAP.QI"),
        (
            UnitConfig {
                ver: 0x00,
                ..UnitConfig::legacy()
            },
            "VER",
        ),
        (UnitConfig::legacy().cap_set(cap::SAGAW, 0), "SAGAW"),
        (
            UnitConfig::scalable()
                .ecap_off(ecap::SLTS)
                .ecap_off(ecap::FLTS),
            "SLTS",
        ),
    ];
    for (config, named) in cases {
        let mut rig = Rig::bare(&[config]);
        let e = rig.core.add_instance(0).unwrap_err();
        let Error::Unsupported { what } = e else {
            panic!("{named}: {e:?}");
        };
        assert!(what.contains(named), "{named}: {what}");
        assert_eq!(rig.unit(0).log(), [], "nothing written to a refused unit");
        assert_eq!(rig.unit(0).gsts(), 0);
    }
}

/// Translation left on by firmware is turned off first, then everything
/// is set up again in order.
#[test]
fn translation_left_on_by_firmware_is_turned_off_first() {
    let mut rig = Rig::bare(&[UnitConfig::legacy()]);
    rig.unit(0).preset_gsts(gcmd::TE);
    rig.core.add_instance(0).unwrap();
    assert_eq!(
        ops(&rig.unit(0).log()),
        [
            "TE off",
            "QIE",
            "SRTP",
            "context-cache global",
            "IOTLB global",
            "wait",
            "TE"
        ]
    );
}

/// Queued invalidation left on by firmware (or a previous kernel) is
/// turned off before the queue registers are programmed: IQA must not
/// change while the queue is enabled, and the unit would go on reading the
/// old ring.
#[test]
fn queued_invalidation_left_on_is_turned_off_first() {
    let mut rig = Rig::bare(&[UnitConfig::legacy()]);
    let hal = rig.hal.clone();
    rig.units[0].preset_queue(&hal);
    rig.core.add_instance(0).unwrap();
    let log = rig.units[0].log();
    assert_eq!(
        ops(&log),
        [
            "QIE off",
            "QIE",
            "SRTP",
            "context-cache global",
            "IOTLB global",
            "wait",
            "TE"
        ]
    );
    assert_ne!(latched(&log).0 & !0xfff, 0);
}

/// The identification registers come back through the core as the unit
/// has them.
#[test]
fn hw_info_reports_cap_and_ecap() {
    let mut rig = Rig::bare(&[UnitConfig::scalable()]);
    let info = rig.core.add_instance(0).unwrap();
    let id = UnitConfig::scalable();
    assert_eq!(info.ty, 1, "IOMMU_HW_INFO_TYPE_INTEL_VTD");
    assert_eq!(&info.regs[..info.len], &[id.cap, id.ecap]);
}
