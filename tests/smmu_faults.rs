//! Faults through the real SMMUv3 driver and the real core against the
//! model: event records routed to the domain attached at their StreamID,
//! event-queue overflow and EVTQ_ABT_ERR counted and recovered from; page
//! requests from the PRI queue grouped by the core and answered with one
//! PRI_RESP per group; stalled transactions answered with one RESUME per
//! stall tag; groups still pending when an attachment ends answered
//! Invalid once, after the driver's CMD_SYNC made them visible.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::core::{Access, DomainId, Fault, FaultKind};
use smmu_model::*;

const SID: u32 = 0x10;
const OTHER: u32 = 0x11;

/// PRI_RESPs of a log: (StreamID, SubstreamID, group, response).
fn pri_resps(log: &[Event]) -> Vec<(u32, Option<u32>, u16, u8)> {
    cmds(log)
        .into_iter()
        .filter_map(|c| match c {
            Cmd::PriResp {
                sid,
                ssid,
                grpid,
                resp,
            } => Some((sid, ssid, grpid, resp)),
            _ => None,
        })
        .collect()
}

/// Resumed stalls of a log: (StreamID, tag, retry, abort, outcome).
type Resumed = (u32, u16, bool, bool, Option<Result<u64, u8>>);

fn resumed(log: &[Event]) -> Vec<Resumed> {
    log.iter()
        .filter_map(|e| match e {
            Event::Resumed {
                sid,
                stag,
                retry,
                abort,
                outcome,
            } => Some((*sid, *stag, *retry, *abort, *outcome)),
            _ => None,
        })
        .collect()
}

/// A device in a stage-1 domain handled by `cookie`, one page mapped at
/// 0x1000.
fn setup(cfg: SmmuConfig, sid: u32, cookie: usize) -> (Rig, DomainId) {
    let mut rig = Rig::new(&[cfg]);
    let dev = rig.device(0, sid, 0, false);
    let d = rig.paging(dev);
    rig.handled_by(d, cookie);
    rig.map_buffer(d, 0x1000, 4096);
    rig.core.attach(dev, d).unwrap();
    rig.clear_logs();
    seen();
    (rig, d)
}

/// A translation fault is recorded, drained, decoded (StreamID, address,
/// access, event ID) and handed to the handler of the domain attached at
/// its StreamID — and only that one.
#[test]
fn events_reach_the_domain_at_their_stream() {
    let mut rig = Rig::qemu();
    let a = rig.device(0, SID, 0, false);
    let b = rig.device(0, OTHER, 0, false);
    let (da, db) = (rig.paging(a), rig.paging(b));
    rig.handled_by(da, 10);
    rig.handled_by(db, 20);
    let pa = rig.map_buffer(da, 0x1000, 4096);
    rig.core.attach(a, da).unwrap();
    rig.core.attach(b, db).unwrap();
    seen();
    let u = rig.unit(0);
    assert_eq!(u.dma(Req::write(SID, 0x1008)).unwrap().pa, pa + 8);
    assert_eq!(
        u.dma(Req::write(SID, 0x7000)).unwrap_err().id(),
        Some(evt::F_TRANSLATION)
    );
    assert_eq!(
        u.dma(Req::read(OTHER, 0x1000)).unwrap_err().id(),
        Some(evt::F_TRANSLATION),
        "the other domain has nothing mapped"
    );
    assert_eq!(rig.core.process_faults().unwrap(), 2);
    let fault = |device, addr, access| Fault {
        instance: 0,
        device,
        pasid: None,
        addr,
        access,
        group: 0,
        last: true,
        kind: FaultKind::Unrecoverable,
        reason: evt::F_TRANSLATION.into(),
    };
    assert_eq!(
        seen(),
        [
            (10, da, vec![fault(SID, 0x7000, Access::WRITE)]),
            (20, db, vec![fault(OTHER, 0x1000, Access::READ)]),
        ]
    );
    assert_eq!(rig.core.process_faults().unwrap(), 0);
    assert_eq!(rig.smmu(0).stats.events, 2);
}

/// More faults than the event queue (one page, 128 records) holds: the SMMU
/// sets EVENTQ_PROD.OVFLG and loses the rest; the driver drains the 128,
/// counts the overflow once and acknowledges it (CONS.OVACKFLG); later
/// faults are recorded and delivered again.
#[test]
fn event_queue_overflow_is_counted_and_recovered() {
    let (mut rig, d) = setup(SmmuConfig::qemu(), SID, 30);
    let u = rig.unit(0);
    for i in 0..130u64 {
        assert!(u.dma(Req::write(SID, 0x10_0000 + (i << 12))).is_err());
    }
    let log = u.take_log();
    let written = log
        .iter()
        .filter(|e| matches!(e, Event::Recorded { .. }))
        .count();
    let lost = log
        .iter()
        .filter(|e| matches!(e, Event::RecordLost { .. }))
        .count();
    assert_eq!((written, lost), (128, 2));
    assert_eq!(rig.core.process_faults().unwrap(), 128);
    assert_eq!(seen().len(), 128);
    assert_eq!(rig.smmu(0).stats.event_overflows, 1);
    let u = rig.unit(0);
    let (prod, cons) = (
        u.reg32(spec::reg::EVENTQ_PROD),
        u.reg32(spec::reg::EVENTQ_CONS),
    );
    assert_eq!(prod, cons, "drained, overflow acknowledged");
    // Recovered: the next fault is recorded and delivered, no new overflow.
    assert!(u.dma(Req::read(SID, 0x20_0000)).is_err());
    assert_eq!(rig.core.process_faults().unwrap(), 1);
    let got = seen();
    assert_eq!((got[0].1, got[0].2[0].addr), (d, 0x20_0000));
    assert_eq!(rig.smmu(0).stats.event_overflows, 1);
}

/// An event write that aborts raises GERROR.EVTQ_ABT_ERR: the driver counts
/// it and acknowledges it in GERRORN; the queue keeps working.
#[test]
fn event_queue_abort_is_counted_and_acknowledged() {
    let (mut rig, _) = setup(SmmuConfig::qemu(), SID, 40);
    let u = rig.unit(0);
    u.knobs(|k| k.abort_event_writes = 1);
    assert!(u.dma(Req::write(SID, 0x9000)).is_err());
    assert_eq!(u.active_errors(), spec::gerror::EVTQ_ABT_ERR);
    assert_eq!(rig.core.process_faults().unwrap(), 0);
    assert_eq!(rig.smmu(0).stats.event_aborts, 1);
    let u = rig.unit(0);
    assert_eq!(u.active_errors(), 0, "acknowledged");
    assert!(u.dma(Req::write(SID, 0xa000)).is_err());
    assert_eq!(rig.core.process_faults().unwrap(), 1);
    assert_eq!(seen()[0].2[0].addr, 0xa000);
    assert_eq!(rig.smmu(0).stats.event_aborts, 1);
}

fn pri_cfg() -> SmmuConfig {
    SmmuConfig::qemu().pri(true).ats(true).priq_log2(4)
}

/// Page requests of one group (PRGI) are parked by the core until the last
/// one, handed over together, and answered with exactly one PRI_RESP
/// carrying the handler's answer (Success 0b10, Invalid 0b00, Failure
/// 0b01); groups of different PRGIs are answered each once.
#[test]
fn page_request_groups_get_one_pri_resp() {
    for (cookie, code) in [(50, 2u8), (51, 0), (52, 1)] {
        let (mut rig, d) = setup(pri_cfg(), SID, cookie);
        let u = rig.unit(0);
        let req = |addr, prgi, last| PriReq {
            last,
            write: true,
            ..PriReq::read(SID, None, addr, prgi)
        };
        u.page_request(req(0x4000, 5, false)).unwrap();
        u.page_request(req(0x5000, 6, true)).unwrap();
        u.page_request(req(0x6000, 5, false)).unwrap();
        u.page_request(req(0x7000, 5, true)).unwrap();
        assert_eq!(rig.core.process_faults().unwrap(), 2);
        let got = seen();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(c, dom, _)| (*c, *dom) == (cookie, d)));
        let groups: Vec<Vec<(u64, u16, bool)>> = got
            .iter()
            .map(|(_, _, g)| g.iter().map(|f| (f.addr, f.group, f.last)).collect())
            .collect();
        assert_eq!(
            groups,
            [
                vec![(0x5000, 6, true)],
                vec![(0x4000, 5, false), (0x6000, 5, false), (0x7000, 5, true)],
            ]
        );
        assert!(
            got[1].2.iter().all(|f| f.kind == FaultKind::PageRequest
                && f.access.contains(Access::READ | Access::WRITE))
        );
        let mut r = pri_resps(&rig.unit(0).take_log());
        r.sort();
        assert_eq!(r, [(SID, None, 5, code), (SID, None, 6, code)]);
        assert_eq!(rig.core.process_faults().unwrap(), 0);
        assert_eq!(pri_resps(&rig.unit(0).take_log()), []);
    }
}

/// A PRI queue overflow is counted; the requests that fit are answered;
/// the queue wraps and keeps working.
#[test]
fn pri_queue_overflow_and_wrap() {
    let (mut rig, _) = setup(pri_cfg(), SID, 60);
    let u = rig.unit(0);
    let queued = (0..20u16)
        .filter(|i| {
            u.page_request(PriReq::read(SID, None, u64::from(*i) << 12, *i))
                .is_some()
        })
        .count();
    assert_eq!(queued, 16, "2^4 entries");
    assert_eq!(rig.core.process_faults().unwrap(), 16);
    assert_eq!(rig.smmu(0).stats.pri_overflows, 1);
    assert_eq!(pri_resps(&rig.unit(0).take_log()).len(), 16);
    for i in 0..10u16 {
        rig.unit(0)
            .page_request(PriReq::read(SID, None, 0x40_0000, 100 + i))
            .unwrap();
    }
    assert_eq!(rig.core.process_faults().unwrap(), 10);
    assert_eq!(pri_resps(&rig.unit(0).take_log()).len(), 10);
    assert_eq!(seen().len(), 26);
}

/// A page request pending when the device is detached: the driver's
/// CMD_SYNC (flush_faults) after the STE change, then the core answers the
/// group Invalid exactly once; no handler sees it, and a partial group is
/// discarded without an answer.
#[test]
fn pending_page_requests_are_answered_invalid_at_detach() {
    let (mut rig, _) = setup(pri_cfg(), SID, 70);
    let u = rig.unit(0);
    u.page_request(PriReq::read(SID, None, 0x3000, 7)).unwrap();
    u.page_request(PriReq {
        last: false,
        ..PriReq::read(SID, None, 0x4000, 8)
    })
    .unwrap();
    let dev = iommu::core::DeviceId {
        instance: 0,
        id: SID,
    };
    rig.core.detach(dev).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(pri_resps(&log), [(SID, None, 7, 0)]);
    let c = cmds(&log);
    let ste = c
        .iter()
        .rposition(|c| matches!(c, Cmd::CfgiSte { sid: SID, .. }))
        .expect("the STE changed");
    let resp = c.iter().position(|c| c.name() == "PRI_RESP").unwrap();
    assert!(
        c[ste + 1..resp].iter().any(|c| c.is_sync()),
        "a CMD_SYNC between the STE change and the answer: {c:?}"
    );
    assert_eq!(seen(), []);
    assert_eq!(rig.core.process_faults().unwrap(), 0);
    assert_eq!(pri_resps(&rig.unit(0).take_log()), []);
}

fn stall_cfg() -> SmmuConfig {
    SmmuConfig::qemu().stall_model(StallModel::StallForced)
}

/// Where the SMMU forces stalls, a faulting transaction stalls (CD.S) and
/// its event carries the stall tag; the core hands it to the handler and
/// the driver answers with exactly one RESUME: Success retries it (the page
/// mapped meanwhile, it completes), Invalid and Failure terminate it with
/// an abort.
#[test]
fn stalls_get_one_resume_with_the_answer() {
    for (cookie, retry) in [(80, true), (81, false), (82, false)] {
        let (mut rig, d) = setup(stall_cfg(), SID, cookie);
        let u = rig.unit(0);
        let r = u.dma(Req::write(SID, 0x5010));
        let Err(WalkFault::Event { rec, stall, .. }) = r else {
            panic!("{r:?}");
        };
        assert!(stall);
        let stag = rec.stag.unwrap();
        assert_eq!(u.stalled(), 1);
        let pa = rig.map_buffer(d, 0x5000, 4096);
        assert_eq!(rig.core.process_faults().unwrap(), 1);
        let got = seen();
        assert_eq!(got.len(), 1);
        let f = got[0].2[0];
        assert_eq!((f.kind, f.group, f.addr), (FaultKind::Stall, stag, 0x5010));
        let log = rig.unit(0).take_log();
        assert_eq!(count(&log, "RESUME"), 1);
        let outcome = retry.then_some(Ok(pa + 0x10));
        assert_eq!(resumed(&log), [(SID, stag, retry, !retry, outcome)]);
        assert_eq!(rig.unit(0).stalled(), 0);
        assert_eq!(rig.core.process_faults().unwrap(), 0);
        assert_eq!(count(&rig.unit(0).take_log(), "RESUME"), 0);
    }
}

/// Where stalling is optional (STALL_MODEL 0b00) the driver leaves CD.S
/// clear: faults terminate and are recorded, nothing waits for a RESUME.
#[test]
fn no_stalls_unless_forced() {
    let cfg = SmmuConfig::qemu().stall_model(StallModel::StallAndTerminate);
    let (mut rig, _) = setup(cfg, SID, 90);
    let r = rig.unit(0).dma(Req::write(SID, 0x5000));
    assert!(
        matches!(r, Err(WalkFault::Event { stall: false, .. })),
        "{r:?}"
    );
    assert_eq!(rig.unit(0).stalled(), 0);
    assert_eq!(rig.core.process_faults().unwrap(), 1);
    assert_eq!(seen()[0].2[0].kind, FaultKind::Unrecoverable);
    assert_eq!(count(&rig.unit(0).take_log(), "RESUME"), 0);
}

/// A transaction still stalled when the device is detached is terminated
/// with one RESUME (abort) after the driver's CMD_SYNC; no handler sees it.
#[test]
fn pending_stalls_are_terminated_at_detach() {
    let (mut rig, _) = setup(stall_cfg(), SID, 100);
    let u = rig.unit(0);
    let rec = u.dma(Req::read(SID, 0x8000)).unwrap_err().rec().unwrap();
    let dev = iommu::core::DeviceId {
        instance: 0,
        id: SID,
    };
    rig.core.detach(dev).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(resumed(&log), [(SID, rec.stag.unwrap(), false, true, None)]);
    assert_eq!(count(&log, "RESUME"), 1);
    let c = cmds(&log);
    let ste = c
        .iter()
        .rposition(|c| matches!(c, Cmd::CfgiSte { sid: SID, .. }))
        .expect("the STE changed");
    let resume = c.iter().position(|c| c.name() == "RESUME").unwrap();
    assert!(
        c[ste + 1..resume].iter().any(|c| c.is_sync()),
        "a CMD_SYNC between the STE change and the RESUME: {c:?}"
    );
    assert_eq!(seen(), []);
    assert_eq!(rig.unit(0).stalled(), 0);
    assert_eq!(rig.core.process_faults().unwrap(), 0);
}

/// With substreams, faults tagged with a PASID go to the domain attached
/// at that PASID: an event recorded with its SubstreamID, and a page
/// request whose PRI_RESP carries the PASID back; untagged ones go to the
/// requester ID's domain.
#[test]
fn pasid_faults_reach_the_pasids_domain() {
    let mut rig = Rig::new(&[pri_cfg().ssid_bits(8)]);
    let dev = rig.device(0, SID, 8, true);
    let (a, b) = (rig.paging(dev), rig.paging(dev));
    rig.handled_by(a, 110);
    rig.handled_by(b, 120);
    rig.core.attach(dev, a).unwrap();
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, b).unwrap();
    rig.clear_logs();
    let u = rig.unit(0);
    assert!(u.dma(Req::write(SID, 0x3000).ssid(pasid)).is_err());
    assert!(u.dma(Req::write(SID, 0x4000)).is_err());
    u.page_request(PriReq::read(SID, Some(pasid), 0x5000, 3))
        .unwrap();
    assert_eq!(rig.core.process_faults().unwrap(), 3);
    let got: Vec<(usize, DomainId, Option<u32>, u64, FaultKind)> = seen()
        .iter()
        .map(|(c, d, g)| (*c, *d, g[0].pasid, g[0].addr, g[0].kind))
        .collect();
    assert_eq!(
        got,
        [
            (120, b, Some(pasid), 0x3000, FaultKind::Unrecoverable),
            (110, a, None, 0x4000, FaultKind::Unrecoverable),
            (120, b, Some(pasid), 0x5000, FaultKind::PageRequest),
        ]
    );
    assert_eq!(
        pri_resps(&rig.unit(0).take_log()),
        [(SID, Some(pasid), 3, 2)]
    );
}
