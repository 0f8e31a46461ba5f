//! Faults through the real VT-d driver against the model: primary fault
//! records drained and decoded (F and PFO cleared, FRI followed), page
//! requests drained from the page request queue and answered once per
//! group, both routed by the core to the domain attached where they came
//! from; and the page-request drain when an attachment ends.

#[path = "common/vtd_model.rs"]
mod vtd_model;

use iommu::core::{Access, Fault, FaultKind, PagingFlags};
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};
use vtd_model::spec::{cap, fsts};
use vtd_model::*;

const SID: u16 = 0x0010;

fn event(device: u16, pasid: Option<u32>, addr: u64, access: Access, reason: u16) -> Fault {
    Fault {
        instance: 0,
        device: device.into(),
        pasid,
        addr,
        access,
        group: 0,
        last: true,
        kind: FaultKind::Unrecoverable,
        reason,
    }
}

fn rec(addr: u64, reason: u8) -> FaultRec {
    FaultRec {
        sid: SID,
        addr,
        pasid: None,
        reason,
        write: true,
        exec: false,
        privileged: false,
    }
}

/// A fault record is drained into the core's fault (source-id, page,
/// PASID, reason, access), its F bit cleared, and handed to the handler
/// of the domain attached at the device.
#[test]
fn fault_records_are_decoded_cleared_and_routed() {
    let mut rig = Rig::new(&[UnitConfig::scalable().cap_set(cap::NFR, 3)]);
    let dev = rig.device(0, SID, 8, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let e = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(d, 10);
    rig.handled_by(e, 20);
    rig.core.attach(dev, d).unwrap();
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, e).unwrap();
    seen();

    let u = &rig.units[0];
    u.inject_fault(rec(0x1234_5678, 0x5)).unwrap();
    u.inject_fault(FaultRec {
        pasid: Some(pasid),
        write: false,
        exec: true,
        privileged: true,
        reason: 0x59,
        ..rec(0x7000, 0)
    })
    .unwrap();
    assert_eq!(u.pending_records(), 2);
    assert_ne!(u.fsts_register() & fsts::PPF, 0);
    assert_eq!(rig.core.process_faults().unwrap(), 2);
    let u = &rig.units[0];
    assert_eq!(u.pending_records(), 0, "F cleared in every record");
    assert_eq!(u.fsts_register() & fsts::PPF, 0);
    assert_eq!(
        seen(),
        [
            (
                10,
                d,
                vec![event(SID, None, 0x1234_5000, Access::WRITE, 0x5)]
            ),
            (
                20,
                e,
                vec![event(
                    SID,
                    Some(pasid),
                    0x7000,
                    Access::READ | Access::EXEC | Access::PRIV,
                    0x59
                )]
            ),
        ]
    );
    // Nothing more.
    assert_eq!(rig.core.process_faults().unwrap(), 0);
    assert_eq!(seen(), []);
}

/// All records full and one more fault: the unit sets PFO and loses it;
/// the driver drains the four from FRI on, clears PFO and counts it. The
/// next faults land after the last record, wrapping, and FRI points at
/// the first of them.
#[test]
fn overflow_and_wrap_around_of_the_records() {
    let mut rig = Rig::new(&[UnitConfig::legacy().cap_set(cap::NFR, 3)]);
    let dev = rig.device(0, SID, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(d, 30);
    rig.core.attach(dev, d).unwrap();
    let u = &rig.units[0];
    for i in 0..4 {
        assert_eq!(u.inject_fault(rec(0x1000 * (i + 1), 0x6)), Some(i as usize));
    }
    assert_eq!(u.inject_fault(rec(0x9000, 0x6)), None, "lost");
    assert_ne!(u.fsts_errors() & fsts::PFO, 0);
    assert_eq!(rig.core.process_faults().unwrap(), 4);
    let addrs: Vec<u64> = seen().iter().map(|(_, _, g)| g[0].addr).collect();
    assert_eq!(addrs, [0x1000, 0x2000, 0x3000, 0x4000]);
    let u = &rig.units[0];
    assert_eq!(u.fsts_errors() & fsts::PFO, 0, "PFO cleared");
    assert_eq!(rig.driver().unit(0).unwrap().stats.fault_overflows, 1);

    // Two records, drained; then three more: indices 2, 3, 0 with FRI 2.
    let u = &rig.units[0];
    u.inject_fault(rec(0xa000, 0x6)).unwrap();
    u.inject_fault(rec(0xb000, 0x6)).unwrap();
    rig.core.process_faults().unwrap();
    seen();
    let u = &rig.units[0];
    let idx: Vec<_> = [0xc000, 0xd000, 0xe000]
        .iter()
        .map(|a| u.inject_fault(rec(*a, 0x6)).unwrap())
        .collect();
    assert_eq!(idx, [2, 3, 0]);
    assert_eq!((u.fsts_register() >> 8) & 0xff, 2, "FRI");
    assert_eq!(rig.core.process_faults().unwrap(), 3);
    let addrs: Vec<u64> = seen().iter().map(|(_, _, g)| g[0].addr).collect();
    assert_eq!(addrs, [0xc000, 0xd000, 0xe000]);
}

/// A DMA the unit refuses is recorded by the unit, drained by the driver
/// and delivered with the unit's reason code.
#[test]
fn a_refused_dma_reaches_the_domain_handler() {
    let mut rig = Rig::legacy();
    let dev = rig.device(0, SID, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(d, 40);
    rig.core
        .map(d, Iova(0), PhysAddr(0x8000_0000), 0x1000, Prot::READ)
        .unwrap();
    rig.core.attach(dev, d).unwrap();
    let u = &rig.units[0];
    let f = u.dma(Req::write(SID, 0x10)).unwrap_err();
    assert_eq!(rig.core.process_faults().unwrap(), 1);
    let got = seen();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].2,
        [event(SID, None, 0, Access::WRITE, f.reason(false))]
    );
    // A device with nothing attached: counted as dropped.
    rig.device(0, 0x0200, 0, false);
    let dropped = rig.core.dropped_events();
    assert!(rig.units[0].dma(Req::read(0x0200, 0)).is_err());
    rig.core.process_faults().unwrap();
    assert_eq!(rig.core.dropped_events(), dropped + 1);
    assert_eq!(seen(), []);
}

fn responses(log: &[Event]) -> Vec<(u16, Option<u32>, u8, u16)> {
    invs(log)
        .iter()
        .filter_map(|i| match *i {
            Inv::PageResponse {
                rid,
                pasid,
                code,
                prgi,
                ..
            } => Some((rid, pasid, code, prgi)),
            _ => None,
        })
        .collect()
}

fn page_fault(pasid: Option<u32>, addr: u64, group: u16, last: bool) -> Fault {
    Fault {
        instance: 0,
        device: SID.into(),
        pasid,
        addr,
        access: Access::READ,
        group,
        last,
        kind: FaultKind::PageRequest,
        reason: 0,
    }
}

/// Page requests are read from the queue (PQH advanced to PQT), decoded,
/// grouped, handed to the domain at (device, PASID), and each group gets
/// exactly one page group response with its RID, PASID, PRGI and the
/// handler's answer.
#[test]
fn page_requests_are_routed_and_answered_once_per_group() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 8, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    let e = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(d, 50);
    rig.handled_by(e, 61);
    rig.core.attach(dev, d).unwrap();
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, e).unwrap();
    rig.clear_logs();
    seen();

    let u = &rig.units[0];
    let queued = [
        u.page_request(PageReq::read(SID, None, 0x10_0000, 5)),
        u.page_request(PageReq {
            last: false,
            ..PageReq::read(SID, Some(pasid), 0x20_0000, 7)
        }),
        u.page_request(PageReq::read(SID, Some(pasid), 0x20_1000, 7)),
    ];
    let log = u.take_log();
    assert!(
        queued.iter().all(Option::is_some),
        "the unit queued every request: {log:?}"
    );
    assert_eq!(rig.core.process_faults().unwrap(), 2);
    let (head, tail) = rig.units[0].prq_head_tail();
    assert_eq!((head, tail), (3 * 32, 3 * 32), "PQH advanced to PQT");
    assert_eq!(
        seen(),
        [
            (50, d, vec![page_fault(None, 0x10_0000, 5, true)]),
            (
                61,
                e,
                vec![
                    page_fault(Some(pasid), 0x20_0000, 7, false),
                    page_fault(Some(pasid), 0x20_1000, 7, true)
                ]
            ),
        ]
    );
    let mut got = responses(&rig.units[0].take_log());
    got.sort();
    assert_eq!(got, [(SID, None, 0x0, 5), (SID, Some(pasid), 0x1, 7)]);

    // A handler answering Failure.
    let f = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(f, 72);
    rig.core.attach(dev, f).unwrap();
    rig.clear_logs();
    rig.units[0]
        .page_request(PageReq::read(SID, None, 0x30_0000, 9))
        .unwrap();
    rig.core.process_faults().unwrap();
    assert_eq!(responses(&rig.units[0].take_log()), [(SID, None, 0xf, 9)]);
    assert_eq!(seen().len(), 1);
}

/// More page requests than the queue holds: the unit answers the ones
/// that do not fit (PRS.PRO); the driver drains the rest, answers each,
/// clears the overflow, and the queue wraps around.
#[test]
fn page_request_queue_overflow_and_wrap_around() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(d, 90);
    rig.core.attach(dev, d).unwrap();
    rig.clear_logs();
    let u = &rig.units[0];
    let queued = (0..130u64)
        .filter(|i| {
            u.page_request(PageReq::read(SID, None, i << 12, *i as u16))
                .is_some()
        })
        .count();
    assert_eq!(
        queued, 127,
        "one page of 32-byte descriptors, one slot kept free"
    );
    let log = u.take_log();
    assert_eq!(
        log.iter()
            .filter(|e| matches!(e, Event::AutoResponse { why, .. } if why.contains("full")))
            .count(),
        3
    );
    assert_ne!(u.lock().prs & vtd_model::spec::prs::PRO, 0);
    assert_eq!(rig.core.process_faults().unwrap(), 127);
    assert_eq!(seen().len(), 127);
    let log = rig.units[0].take_log();
    let answered = responses(&log);
    assert_eq!(answered.len(), 127);
    assert!(answered.iter().all(|r| r.2 == 0x0));
    // The driver clears PRO and then PPR with two writes in a row; a
    // memory-backed PRS keeps only the second, so the model cannot show
    // the first: the driver's count says it saw the overflow.
    let prq = rig.driver().unit(0).unwrap().prq.unwrap();
    assert_eq!(prq.overflows, 1);
    // The queue wraps around.
    for i in 0..10u16 {
        rig.units[0]
            .page_request(PageReq::read(SID, None, 0x100_0000, 200 + i))
            .unwrap();
    }
    assert_eq!(rig.core.process_faults().unwrap(), 10);
    let (head, tail) = rig.units[0].prq_head_tail();
    assert_eq!(head, tail);
    assert_eq!(tail, (137 * 32) % 4096);
    assert_eq!(responses(&rig.units[0].take_log()).len(), 10);
}

/// When an attachment ends, the driver drains page requests still on
/// their way (a wait with page-request drain); one raised under the old
/// attachment is answered Invalid and never reaches a handler.
#[test]
fn ending_an_attachment_drains_page_requests() {
    let mut rig = Rig::scalable();
    let dev = rig.device(0, SID, 8, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(d, 80);
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, d).unwrap();
    rig.clear_logs();
    rig.units[0].page_request_in_flight(PageReq::read(SID, Some(pasid), 0x40_0000, 11));
    rig.core.detach_pasid(dev, pasid).unwrap();
    let log = rig.units[0].take_log();
    let drains = invs(&log)
        .iter()
        .filter(|i| {
            matches!(
                i,
                Inv::Wait {
                    page_drain: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(drains, 1, "{log:?}");
    assert!(
        log.iter()
            .any(|e| matches!(e, Event::PageRequest { req, .. } if req.prgi == 11)),
        "the drain brought the request into the queue: {log:?}"
    );
    assert_eq!(responses(&log), [(SID, Some(pasid), 0x1, 11)]);
    assert_eq!(
        seen(),
        [],
        "no handler sees a request of the old attachment"
    );
}

/// Units without page requests: nothing to drain, no drain waits.
#[test]
fn no_drain_without_a_page_request_queue() {
    let mut rig = Rig::legacy();
    let dev = rig.device(0, SID, 0, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.core.attach(dev, d).unwrap();
    rig.clear_logs();
    rig.core.detach(dev).unwrap();
    let got = rig.units[0].take_invs();
    assert!(
        got.iter().all(|i| !matches!(
            i,
            Inv::Wait {
                page_drain: true,
                ..
            }
        )),
        "{got:?}"
    );
}

/// A unit with page requests but without page-request drain (ECAP.PRS
/// without ECAP.PDS, as QEMU reports): the wait's PD flag is reserved
/// there, so the driver cannot drain page requests and does not take
/// them; attachment changes work, and the unit answers page requests
/// itself.
#[test]
fn no_page_requests_without_page_request_drain() {
    let mut rig = Rig::new(&[UnitConfig::scalable().ecap_off(vtd_model::spec::ecap::PDS)]);
    let dev = rig.device(0, SID, 8, false);
    let d = rig.core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    rig.handled_by(d, 100);
    rig.core.attach(dev, d).unwrap();
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, d).unwrap();
    rig.core.detach_pasid(dev, pasid).unwrap();
    let u = &rig.units[0];
    assert_eq!(u.page_request(PageReq::read(SID, None, 0x1000, 3)), None);
    assert_eq!(rig.core.process_faults().unwrap(), 0);
    rig.core.detach(dev).unwrap();
    let log = rig.units[0].take_log();
    assert!(
        invs(&log).iter().all(|i| !matches!(
            i,
            Inv::Wait {
                page_drain: true,
                ..
            }
        )),
        "{log:?}"
    );
    assert_eq!(seen(), []);
}
