//! Probe and enable of the real SMMUv3 driver against the model: the
//! register order the architecture asks for (GBPA abort first, queues
//! programmed before their enables, every CR0 change confirmed through
//! CR0ACK), global invalidation before translation, the stream table's
//! layout, every StreamID aborting afterwards, an SMMU that never
//! acknowledges, and SMMUs the driver must refuse.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::Error;
use smmu_model::spec::cr0;
use smmu_model::*;

/// What enable did, reduced to what matters for order.
fn ops(log: &[Event]) -> Vec<String> {
    log.iter()
        .filter_map(|e| match e {
            Event::Gbpa { abort } => Some(format!("GBPA abort={abort}")),
            Event::Cr0 { value } => Some(format!("CR0 {value:#x}")),
            Event::QueueEnabled { queue, .. } => Some(format!("{queue:?} queue")),
            Event::StrtabLatched { .. } => Some("stream table".into()),
            Event::Cmd { cmd, .. } => Some(cmd.name().into()),
            _ => None,
        })
        .collect()
}

fn strtab_cfg(log: &[Event]) -> u32 {
    log.iter()
        .find_map(|e| match e {
            Event::StrtabLatched { cfg, .. } => Some(*cfg),
            _ => None,
        })
        .expect("stream table latched")
}

/// GBPA abort before any enable; the command queue on first, then the
/// global invalidation (CFGI_ALL, TLBI_NSNH_ALL, TLBI_S12_VMALL with stage
/// 2) and its CMD_SYNC, the event queue, translation last; each step
/// acknowledged before the next.
#[test]
fn enable_order_with_stage_2() {
    let rig = Rig::qemu();
    let u = rig.unit(0);
    let (c, e, s) = (cr0::CMDQEN, cr0::EVENTQEN, cr0::SMMUEN);
    assert_eq!(
        ops(&u.log()),
        [
            "GBPA abort=true".to_string(),
            "CR0 0x0".into(),
            "Cmd queue".into(),
            format!("CR0 {c:#x}"),
            "CFGI_ALL".into(),
            "TLBI_NSNH_ALL".into(),
            "TLBI_S12_VMALL".into(),
            "CMD_SYNC".into(),
            "Event queue".into(),
            format!("CR0 {:#x}", c | e),
            "stream table".into(),
            format!("CR0 {:#x}", c | e | s),
        ]
    );
    assert_eq!(u.cr0ack(), c | e | s);
    assert_eq!(u.active_errors(), 0);
    // The stage-2 TLBI names the VMID of stage-1 STEs.
    assert!(u.log().iter().any(|e| matches!(
        e,
        Event::Cmd {
            cmd: Cmd::TlbiS12Vmall { vmid: 0 },
            ..
        }
    )));
}

/// Stage 1 only: no stage-2 TLBI (illegal there); with PRI the PRI queue is
/// programmed and enabled before translation.
#[test]
fn enable_order_stage_1_only_with_pri() {
    let rig = Rig::new(&[SmmuConfig::qemu().s1_only().pri(true)]);
    let (c, e, p, s) = (cr0::CMDQEN, cr0::EVENTQEN, cr0::PRIQEN, cr0::SMMUEN);
    assert_eq!(
        ops(&rig.unit(0).log()),
        [
            "GBPA abort=true".to_string(),
            "CR0 0x0".into(),
            "Cmd queue".into(),
            format!("CR0 {c:#x}"),
            "CFGI_ALL".into(),
            "TLBI_NSNH_ALL".into(),
            "CMD_SYNC".into(),
            "Event queue".into(),
            format!("CR0 {:#x}", c | e),
            "Pri queue".into(),
            format!("CR0 {:#x}", c | e | p),
            "stream table".into(),
            format!("CR0 {:#x}", c | e | p | s),
        ]
    );
}

/// CR0ACK never follows one bit: enable reports `Timeout` naming CR0ACK
/// and never turns translation on.
#[test]
fn cr0ack_never_set_times_out() {
    let mut rig = Rig::bare(&[SmmuConfig::qemu()]);
    rig.unit(0).knobs(|k| k.stuck_cr0 = cr0::EVENTQEN);
    let err = rig.core.add_instance(0).unwrap_err();
    assert_eq!(
        err,
        Error::Timeout {
            what: "SMMUv3 CR0ACK"
        }
    );
    let log = rig.unit(0).log();
    assert!(log.iter().any(|e| matches!(e, Event::Cr0Ignored { .. })));
    assert_eq!(rig.unit(0).cr0ack() & cr0::SMMUEN, 0);
    assert!(!rig.smmu(0).enabled());
}

/// GBPA.UPDATE never clearing: enable reports `Timeout` naming it before
/// touching CR0.
#[test]
fn gbpa_update_never_clearing_times_out() {
    let mut rig = Rig::bare(&[SmmuConfig::qemu()]);
    rig.unit(0).knobs(|k| k.gbpa_stuck = true);
    assert_eq!(
        rig.core.add_instance(0),
        Err(Error::Timeout {
            what: "SMMUv3 GBPA.UPDATE"
        })
    );
    assert_eq!(ops(&rig.unit(0).log()), Vec::<String>::new());
}

/// SMMUs the driver cannot use are refused at probe, naming what is
/// missing, before anything is written to them.
#[test]
fn missing_features_are_unsupported() {
    let q = SmmuConfig::qemu();
    let mut preset = q;
    preset.idr[1] |= 1 << 30;
    let cases = [
        (q.stage1(false).stage2(false), "S1P / S2P"),
        (q.ttf(1), "TTF"),
        (q.gran4k(false), "GRAN4K"),
        (preset, "TABLES_PRESET"),
    ];
    for (cfg, missing) in cases {
        let mut rig = Rig::bare(&[cfg]);
        match rig.core.add_instance(0) {
            Err(Error::Unsupported { what }) => assert!(what.contains(missing), "{what}"),
            other => panic!("{missing}: {other:?}"),
        }
        assert_eq!(rig.unit(0).log(), [], "{missing}: nothing written");
        assert_eq!(rig.hal.live_pages(), 0, "{missing}: nothing allocated");
    }
}

/// The stream table: linear when SIDSIZE fits in 16 pages of STEs (or the
/// embedder forces it, covering 2^10 StreamIDs), two-level with SPLIT 8
/// otherwise (or linear without IDR0.ST_LEVEL).
#[test]
fn linear_or_two_level_stream_table() {
    let linear = |cfg: u32| (cfg >> 16) & 3 == 0;
    let log2 = |cfg: u32| cfg & 0x3f;
    let split = |cfg: u32| (cfg >> 6) & 0x1f;

    let rig = Rig::qemu();
    let cfg = strtab_cfg(&rig.unit(0).log());
    assert!(!linear(cfg));
    assert_eq!((log2(cfg), split(cfg)), (16, 8));

    let rig = Rig::new(&[SmmuConfig::qemu().sid_bits(8)]);
    let cfg = strtab_cfg(&rig.unit(0).log());
    assert!(linear(cfg));
    assert_eq!(log2(cfg), 8);

    let rig = Rig::new(&[SmmuConfig::qemu().two_level(false)]);
    let cfg = strtab_cfg(&rig.unit(0).log());
    assert!(linear(cfg));
    assert_eq!(log2(cfg), 10);

    let mut rig = Rig::bare(&[SmmuConfig::qemu()]);
    rig.core
        .driver_mut()
        .set_linear_stream_table(0, true)
        .unwrap();
    rig.core.add_instance(0).unwrap();
    let cfg = strtab_cfg(&rig.unit(0).log());
    assert!(linear(cfg));
    assert_eq!(log2(cfg), 10);
    // Too late once enabled.
    assert!(matches!(
        rig.core.driver_mut().set_linear_stream_table(0, false),
        Err(Error::Busy { .. })
    ));
    // A StreamID beyond a forced linear table is refused at registration
    // or attach, never written outside the table.
    let dev = rig.device(0, 1 << 10, 0, false);
    let d = rig
        .core
        .alloc_paging(dev, iommu::core::PagingFlags::empty())
        .unwrap();
    assert!(rig.core.attach(dev, d).is_err());
}

/// After enable every StreamID aborts: valid aborting STEs in a linear
/// table (nothing recorded), unpopulated level-1 descriptors in a
/// two-level one (C_BAD_STREAMID recorded); nothing is translated.
#[test]
fn every_stream_aborts_after_enable() {
    let rig = Rig::new(&[SmmuConfig::qemu().sid_bits(8)]);
    let u = rig.unit(0);
    for sid in [0u32, 1, 0x7f, 0xff] {
        let ste = u.ste(sid).unwrap();
        assert!(ste.valid && ste.config == smmu_model::entry::config::ABORT);
        assert_eq!(
            u.dma(Req::write(sid, 0x1000)),
            Err(WalkFault::Abort("STE Config abort"))
        );
    }
    assert_eq!(
        u.dma(Req::read(0x100, 0)).unwrap_err().id(),
        Some(evt::C_BAD_STREAMID),
        "beyond SIDSIZE"
    );

    let rig = Rig::qemu();
    let u = rig.unit(0);
    for sid in [0u32, 0x10, 0x1234, 0xffff] {
        assert_eq!(u.ste(sid), None, "no level-2 table yet");
        let r = u.dma(Req::write(sid, 0x4000));
        assert_eq!(r.unwrap_err().id(), Some(evt::C_BAD_STREAMID), "{sid:#x}");
    }
    let written = u
        .log()
        .iter()
        .filter(|e| matches!(e, Event::Recorded { .. }))
        .count();
    assert_eq!(written, 4, "each refused transaction recorded");
}

/// Global invalidation completes before SMMUEN: what the SMMU may have
/// cached from firmware is gone before the first translation.
#[test]
fn global_invalidation_before_translation() {
    for cfg in [SmmuConfig::qemu(), SmmuConfig::qemu().s1_only()] {
        let rig = Rig::new(&[cfg]);
        let log = rig.unit(0).log();
        let at = |name: &str| {
            log.iter()
                .position(|e| matches!(e, Event::Cmd { cmd, .. } if cmd.name() == name))
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let smmuen = log
            .iter()
            .position(|e| matches!(e, Event::Cr0 { value } if value & cr0::SMMUEN != 0))
            .unwrap();
        let sync = at("CMD_SYNC");
        assert!(at("CFGI_ALL") < sync && at("TLBI_NSNH_ALL") < sync);
        if cfg.s2p() {
            assert!(at("TLBI_S12_VMALL") < sync);
        }
        assert!(sync < smmuen);
    }
}
