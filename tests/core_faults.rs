//! Fault routing in the core, over the recording mock driver: page-request
//! groups to the handler of the domain attached where they came from, one
//! response per group, events never answered, batched draining, SVA spaces'
//! handlers, iommufd-style fault objects answered by cookie, and device
//! removal answering what is still pending.

mod common;

use std::cell::RefCell;

use common::TestHal;
use common::mock::{BondTuple, Call, Mock, TestCaps, core_over};
use iommu::core::{
    Access, AddressSpace, CpuFormat, DeviceId, DeviceInfo, DomainId, Fault, FaultHandler,
    FaultKind, FaultObjectId, FaultTarget, Iommu, PagingFlags, Response, UserFault,
};
use iommu::{Error, Object, PhysAddr};

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<16, 16>>;

fn core(pool: &TestHal) -> Box<Core<'_>> {
    let mut c = core_over(pool, Mock::new(2).with_pool(pool), &[]);
    c.driver_mut().clear();
    c
}

fn dev(c: &mut Core<'_>, instance: u16, id: u32) -> DeviceId {
    let dev = DeviceId { instance, id };
    c.register_device(DeviceInfo {
        dev,
        pasid_bits: 8,
        ats: false,
    })
    .unwrap();
    dev
}

fn paging(c: &mut Core<'_>, d: DeviceId) -> DomainId {
    c.alloc_paging(d, PagingFlags::empty()).unwrap()
}

// ----- a recording handler -------------------------------------------------

type Seen = Vec<(usize, DomainId, Vec<Fault>)>;

thread_local! {
    static SEEN: RefCell<Seen> = const { RefCell::new(Vec::new()) };
}

/// Records what it was given; answers after its cookie: 0 Success,
/// 1 Invalid, 2 Failure (mod 3).
fn record(cookie: usize, domain: DomainId, group: &[Fault]) -> Response {
    SEEN.with(|s| s.borrow_mut().push((cookie, domain, group.to_vec())));
    match cookie % 3 {
        0 => Response::Success,
        1 => Response::Invalid,
        _ => Response::Failure,
    }
}

fn handler(cookie: usize) -> FaultTarget {
    FaultTarget::Handler(FaultHandler {
        func: record,
        cookie,
    })
}

/// What the handler saw since the last call.
fn seen() -> Seen {
    SEEN.with(|s| s.take())
}

// ----- faults ----------------------------------------------------------------

fn pr(d: DeviceId, pasid: Option<u32>, group: u16, addr: u64, last: bool) -> Fault {
    Fault {
        instance: d.instance,
        device: d.id,
        pasid,
        addr,
        access: Access::READ | Access::WRITE,
        group,
        last,
        kind: FaultKind::PageRequest,
        reason: 0,
    }
}

fn event(d: DeviceId, pasid: Option<u32>, addr: u64) -> Fault {
    Fault {
        kind: FaultKind::Unrecoverable,
        last: true,
        group: 0,
        ..pr(d, pasid, 0, addr, true)
    }
}

fn respond(d: DeviceId, pasid: Option<u32>, group: u16, response: Response) -> Call {
    Call::Respond {
        instance: d.instance,
        device: d.id,
        pasid,
        group,
        response,
    }
}

/// The Respond calls recorded so far.
fn responds(c: &Core<'_>) -> Vec<Call> {
    c.driver()
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Respond { .. }))
        .cloned()
        .collect()
}

fn sorted(mut v: Vec<Call>) -> Vec<Call> {
    v.sort_by_key(|c| format!("{c:?}"));
    v
}

const BLANK: UserFault = UserFault {
    cookie: 0,
    fault: Fault::EMPTY,
};

fn read(c: &mut Core<'_>, o: FaultObjectId, room: usize) -> Vec<UserFault> {
    let mut buf = vec![BLANK; room];
    let n = c.fault_read(o, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

// ----- handlers ----------------------------------------------------------------

#[test]
fn a_page_request_group_reaches_the_pasid_domains_handler_once_and_gets_one_response() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    seen();
    let a = dev(&mut c, 0, 0x10);
    let d = paging(&mut c, a);
    let rid = paging(&mut c, a);
    c.attach(a, rid).unwrap();
    let p = c.alloc_pasid(a).unwrap();
    c.attach_pasid(a, p, d).unwrap();
    c.set_fault_target(d, handler(3)).unwrap();
    c.set_fault_target(rid, handler(4)).unwrap();
    c.driver_mut().clear();

    let g: Vec<Fault> = (0..4)
        .map(|i| pr(a, Some(p), 5, 0x1000 * (i + 1), i == 3))
        .collect();
    for f in &g[..3] {
        c.driver_mut().inject(*f);
    }
    // Partials only: parked, nobody called, nothing answered.
    assert_eq!(c.process_faults().unwrap(), 0);
    assert!(seen().is_empty());
    assert!(responds(&c).is_empty());
    assert!(c.driver().pending[&0].is_empty(), "drained anyway");

    c.driver_mut().inject(g[3]);
    assert_eq!(c.process_faults().unwrap(), 1);
    assert_eq!(seen(), vec![(3, d, g.clone())], "the whole group, once");
    assert_eq!(
        responds(&c),
        vec![respond(a, Some(p), 5, Response::Success)]
    );

    // Nothing left: processing again answers nothing.
    assert_eq!(c.process_faults().unwrap(), 0);
    assert!(seen().is_empty());
    assert_eq!(responds(&c).len(), 1);
    assert_eq!(c.dropped_events(), 0);
}

#[test]
fn a_fault_without_pasid_goes_to_the_rid_domain_and_the_handlers_answer_is_sent() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    seen();
    let a = dev(&mut c, 0, 0x10);
    let b = dev(&mut c, 1, 0x10);
    let da = paging(&mut c, a);
    let db = paging(&mut c, b);
    c.attach(a, da).unwrap();
    c.attach(b, db).unwrap();
    let p = c.alloc_pasid(a).unwrap();
    let dp = paging(&mut c, a);
    c.attach_pasid(a, p, dp).unwrap();
    c.set_fault_target(dp, handler(0)).unwrap();
    c.set_fault_target(da, handler(1)).unwrap();
    c.set_fault_target(db, handler(2)).unwrap();
    c.driver_mut().clear();
    let fa = pr(a, None, 7, 0x5000, true);
    // Same device id and group on the other instance: another group.
    let fb = pr(b, None, 7, 0x6000, true);
    let stall = Fault {
        kind: FaultKind::Stall,
        ..pr(b, None, 9, 0x7000, true)
    };
    c.driver_mut().inject(fa);
    c.driver_mut().inject(fb);
    c.driver_mut().inject(stall);
    assert_eq!(c.process_faults().unwrap(), 3);
    assert_eq!(
        seen(),
        vec![(1, da, vec![fa]), (2, db, vec![fb]), (2, db, vec![stall])]
    );
    assert_eq!(
        responds(&c),
        vec![
            respond(a, None, 7, Response::Invalid),
            respond(b, None, 7, Response::Failure),
            respond(b, None, 9, Response::Failure),
        ]
    );
}

#[test]
fn faults_with_no_handler_are_answered_invalid_once() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    seen();
    let a = dev(&mut c, 0, 0x10);
    let quiet = paging(&mut c, a);
    let p = c.alloc_pasid(a).unwrap();
    let q = c.alloc_pasid(a).unwrap();
    c.attach_pasid(a, p, quiet).unwrap();
    let ghost = DeviceId {
        instance: 0,
        id: 0x99,
    };
    c.driver_mut().clear();
    let faults = [
        // A domain with FaultTarget::None.
        pr(a, Some(p), 1, 0x1000, false),
        pr(a, Some(p), 1, 0x2000, true),
        // A PASID with nothing attached.
        pr(a, Some(q), 2, 0x1000, true),
        // A PASID never allocated.
        pr(a, Some(200), 3, 0x1000, true),
        // The RID, Blocked.
        pr(a, None, 4, 0x1000, true),
        // An unknown device.
        pr(ghost, Some(p), 5, 0x1000, true),
    ];
    for f in faults {
        c.driver_mut().inject(f);
    }
    assert_eq!(c.process_faults().unwrap(), 5);
    assert!(seen().is_empty());
    assert_eq!(
        responds(&c),
        vec![
            respond(a, Some(p), 1, Response::Invalid),
            respond(a, Some(q), 2, Response::Invalid),
            respond(a, Some(200), 3, Response::Invalid),
            respond(a, None, 4, Response::Invalid),
            respond(ghost, Some(p), 5, Response::Invalid),
        ]
    );
    assert_eq!(c.dropped_events(), 0, "page requests are not events");
}

#[test]
fn events_reach_handlers_unanswered_and_are_counted_when_nobody_takes_them() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    seen();
    let a = dev(&mut c, 0, 0x10);
    let d = paging(&mut c, a);
    let quiet = paging(&mut c, a);
    c.attach(a, d).unwrap();
    c.set_fault_target(d, handler(0)).unwrap();
    let p = c.alloc_pasid(a).unwrap();
    c.attach_pasid(a, p, quiet).unwrap();
    let ghost = DeviceId {
        instance: 1,
        id: 0x99,
    };
    c.driver_mut().clear();

    // An event between the partials and the last of a group.
    let g0 = pr(a, None, 6, 0x1000, false);
    let ev = event(a, None, 0xdead_0000);
    let g1 = pr(a, None, 6, 0x2000, true);
    for f in [g0, ev, g1] {
        c.driver_mut().inject(f);
    }
    assert_eq!(c.process_faults().unwrap(), 2);
    assert_eq!(seen(), vec![(0, d, vec![ev]), (0, d, vec![g0, g1])]);
    assert_eq!(
        responds(&c),
        vec![respond(a, None, 6, Response::Success)],
        "no response for the event"
    );
    assert_eq!(c.dropped_events(), 0);

    // Events nobody takes: no target, nothing attached, unknown device.
    c.driver_mut().clear();
    for f in [
        event(a, Some(p), 0x1000),
        event(a, Some(p + 1), 0x2000),
        event(ghost, None, 0x3000),
    ] {
        c.driver_mut().inject(f);
    }
    assert_eq!(c.process_faults().unwrap(), 3);
    assert!(seen().is_empty());
    assert!(responds(&c).is_empty());
    assert_eq!(c.dropped_events(), 3);
}

#[test]
fn more_faults_than_one_batch_are_all_drained_and_a_group_may_span_batches() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    seen();
    let a = dev(&mut c, 0, 0x10);
    let x = dev(&mut c, 1, 0x20);
    let da = paging(&mut c, a);
    let dx = paging(&mut c, x);
    c.attach(a, da).unwrap();
    c.attach(x, dx).unwrap();
    c.set_fault_target(da, handler(0)).unwrap();
    c.set_fault_target(dx, handler(0)).unwrap();
    c.driver_mut().clear();

    // A 21-fault group, then 30 single-request groups, on instance 0 (51
    // records: 4 batches); 5 on instance 1.
    let big: Vec<Fault> = (0..21)
        .map(|i| pr(a, None, 1000, 0x1000 * i, i == 20))
        .collect();
    for f in &big {
        c.driver_mut().inject(*f);
    }
    for g in 0..30u16 {
        c.driver_mut().inject(pr(a, None, g, 0x10_0000, true));
    }
    for g in 0..5u16 {
        c.driver_mut().inject(pr(x, None, g, 0x20_0000, true));
    }
    assert_eq!(c.process_faults().unwrap(), 36);
    let s = seen();
    assert_eq!(s.len(), 36);
    assert_eq!(s[0].2, big, "the group across batches, whole and in order");
    let drains: Vec<u16> = c
        .driver()
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Drain(i) => Some(*i),
            _ => None,
        })
        .collect();
    assert_eq!(drains, vec![0, 0, 0, 0, 1]);
    assert!(c.driver().pending.values().all(|q| q.is_empty()));
    let mut want = vec![respond(a, None, 1000, Response::Success)];
    want.extend((0..30).map(|g| respond(a, None, g, Response::Success)));
    want.extend((0..5).map(|g| respond(x, None, g, Response::Success)));
    assert_eq!(responds(&c), want);

    // Exactly one full batch: drained, then one empty drain.
    c.driver_mut().clear();
    for g in 0..16u16 {
        c.driver_mut().inject(pr(a, None, g, 0x30_0000, true));
    }
    assert_eq!(c.process_faults().unwrap(), 16);
    assert_eq!(
        c.driver()
            .calls
            .iter()
            .filter(|c| **c == Call::Drain(0))
            .count(),
        2
    );
    assert_eq!(responds(&c).len(), 16);
    assert_eq!(seen().len(), 16);
}

// ----- SVA -------------------------------------------------------------------

#[test]
fn a_spaces_handler_gets_the_faults_of_its_bound_devices() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    seen();
    let a = dev(&mut c, 0, 0x10);
    let x = dev(&mut c, 1, 0x10);
    let space = AddressSpace {
        root: PhysAddr(0x9000_0000),
        format: CpuFormat::X86_64 { five_level: true },
        asid: 3,
    };
    let s = c.register_space(space, handler(6)).unwrap();
    let quiet = c
        .register_space(
            AddressSpace {
                root: PhysAddr(0xa000_0000),
                ..space
            },
            FaultTarget::None,
        )
        .unwrap();
    let ba = c.bind(a, s).unwrap();
    let bx = c.bind(x, s).unwrap();
    let (da, p, _) = c.bond_info(ba).unwrap().t();
    let dx = c.bond_info(bx).unwrap().t().0;
    let bq = c.bind(a, quiet).unwrap();
    let pq = c.bond_info(bq).unwrap().t().1;
    c.driver_mut().clear();

    let fa = [
        pr(a, Some(p), 1, 0x1000, false),
        pr(a, Some(p), 1, 0x2000, true),
    ];
    let fx = pr(x, Some(p), 1, 0x3000, true);
    let ev = event(x, Some(p), 0x4000);
    let fq = pr(a, Some(pq), 2, 0x5000, true);
    for f in fa.iter().chain([&fx, &ev, &fq]) {
        c.driver_mut().inject(*f);
    }
    assert_eq!(c.process_faults().unwrap(), 4);
    assert_eq!(
        seen(),
        vec![(6, da, fa.to_vec()), (6, dx, vec![fx]), (6, dx, vec![ev])]
    );
    assert_eq!(
        responds(&c),
        vec![
            respond(a, Some(p), 1, Response::Success),
            respond(a, Some(pq), 2, Response::Invalid),
            respond(x, Some(p), 1, Response::Success),
        ],
        "instance 0 is drained before instance 1"
    );

    // After unbind the PASID answers Invalid and the handler is not called.
    c.unbind(bx).unwrap();
    c.driver_mut().clear();
    c.driver_mut().inject(fx);
    assert_eq!(c.process_faults().unwrap(), 1);
    assert!(seen().is_empty());
    assert_eq!(
        responds(&c),
        vec![respond(x, Some(p), 1, Response::Invalid)]
    );
}

// ----- fault objects -----------------------------------------------------------

/// A device at instance 0 with a paging domain at its RID routed to a new
/// fault object.
fn with_object(c: &mut Core<'_>) -> (DeviceId, DomainId, FaultObjectId) {
    let a = dev(c, 0, 0x10);
    let d = paging(c, a);
    c.attach(a, d).unwrap();
    let o = c.alloc_fault_object().unwrap();
    c.set_fault_target(d, FaultTarget::Object(o)).unwrap();
    c.driver_mut().clear();
    (a, d, o)
}

#[test]
fn a_fault_object_hands_out_whole_groups_with_one_cookie_each_and_answers_once() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (a, _, o) = with_object(&mut c);
    let g1: Vec<Fault> = (0..3)
        .map(|i| pr(a, None, 1, 0x1000 * (i + 1), i == 2))
        .collect();
    let g2 = pr(a, None, 2, 0x8000, true);
    let ev = event(a, None, 0x9000);
    for f in g1.iter().chain([&g2, &ev]) {
        c.driver_mut().inject(*f);
    }
    assert_eq!(c.process_faults().unwrap(), 3);
    assert!(responds(&c).is_empty(), "nothing answered at process time");

    // Too small for the first group: nothing, not part of it.
    assert!(read(&mut c, o, 2).is_empty());
    let r1 = read(&mut c, o, 3);
    assert_eq!(r1.iter().map(|u| u.fault).collect::<Vec<_>>(), g1);
    let c1 = r1[0].cookie;
    assert!(r1.iter().all(|u| u.cookie == c1), "one cookie per group");
    let r2 = read(&mut c, o, 10);
    assert_eq!(r2.iter().map(|u| u.fault).collect::<Vec<_>>(), vec![g2, ev]);
    let (c2, c3) = (r2[0].cookie, r2[1].cookie);
    assert!(c1 != c2 && c2 != c3 && c1 != c3);
    assert!(read(&mut c, o, 10).is_empty(), "everything was read");

    c.fault_respond(o, c2, Response::Success).unwrap();
    assert_eq!(responds(&c), vec![respond(a, None, 2, Response::Success)]);
    let nf = Err(Error::NotFound {
        what: Object::FaultCookie,
    });
    assert_eq!(c.fault_respond(o, c2, Response::Success), nf);
    assert_eq!(
        c.fault_respond(o, c3, Response::Invalid),
        nf,
        "events are not answered"
    );
    assert_eq!(c.fault_respond(o, 0, Response::Invalid), nf);
    c.fault_respond(o, c1, Response::Failure).unwrap();
    assert_eq!(c.fault_respond(o, c1, Response::Failure), nf);
    assert_eq!(
        responds(&c),
        vec![
            respond(a, None, 2, Response::Success),
            respond(a, None, 1, Response::Failure)
        ]
    );
    assert_eq!(c.dropped_events(), 0);

    // An unread group's cookie is refused until it is read.
    c.driver_mut().clear();
    c.driver_mut().inject(pr(a, None, 3, 0xa000, true));
    c.process_faults().unwrap();
    for k in 0..8 {
        assert_eq!(
            c.fault_respond(o, c3.wrapping_add(k), Response::Success),
            nf
        );
    }
    let r = read(&mut c, o, 1);
    assert_eq!(r.len(), 1);
    assert!((0..8).any(|k| c3.wrapping_add(k) == r[0].cookie));
    assert!(responds(&c).is_empty());
    c.fault_respond(o, r[0].cookie, Response::Success).unwrap();
    assert_eq!(responds(&c), vec![respond(a, None, 3, Response::Success)]);
}

#[test]
fn a_failed_response_keeps_the_group_pending() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (a, _, o) = with_object(&mut c);
    c.driver_mut().inject(pr(a, None, 1, 0x1000, true));
    c.process_faults().unwrap();
    let cookie = read(&mut c, o, 4)[0].cookie;
    c.driver_mut().fail_respond = true;
    assert!(matches!(
        c.fault_respond(o, cookie, Response::Success),
        Err(Error::Timeout { .. })
    ));
    c.fault_respond(o, cookie, Response::Success).unwrap();
    assert!(c.fault_respond(o, cookie, Response::Success).is_err());
    assert_eq!(responds(&c).len(), 2, "the failed attempt and the retry");
}

#[test]
fn an_object_refuses_groups_it_cannot_hold_with_one_failure_each() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (a, _, o) = with_object(&mut c);
    // A group of 9 faults does not fit a held group (8).
    for i in 0..9 {
        c.driver_mut().inject(pr(a, None, 100, 0x1000 * i, i == 8));
    }
    assert_eq!(c.process_faults().unwrap(), 1);
    assert_eq!(responds(&c), vec![respond(a, None, 100, Response::Failure)]);
    assert!(read(&mut c, o, 64).is_empty());
    // 16 groups are held, the 17th is refused.
    c.driver_mut().clear();
    for g in 0..17u16 {
        c.driver_mut().inject(pr(a, None, g, 0x1000, true));
    }
    assert_eq!(c.process_faults().unwrap(), 17);
    assert_eq!(responds(&c), vec![respond(a, None, 16, Response::Failure)]);
    let r = read(&mut c, o, 64);
    assert_eq!(r.len(), 16);
    assert_eq!(
        r.iter().map(|u| u.fault.group).collect::<Vec<_>>(),
        (0..16).collect::<Vec<_>>()
    );
}

#[test]
fn freeing_a_routed_object_is_busy_then_answers_unanswered_groups_once() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (a, d, o) = with_object(&mut c);
    let g1 = pr(a, None, 1, 0x1000, true);
    let g2 = pr(a, None, 2, 0x2000, true);
    let ev = event(a, None, 0x3000);
    let g3 = pr(a, None, 3, 0x4000, true);
    let ev2 = event(a, None, 0x5000);
    let g4 = pr(a, None, 4, 0x6000, true);
    for f in [g1, ev, g2, g3, ev2, g4] {
        c.driver_mut().inject(f);
    }
    c.process_faults().unwrap();
    // g1 read and answered, ev read, g2 read unanswered; g3, ev2, g4 unread.
    let r = read(&mut c, o, 3);
    assert_eq!(r.len(), 3);
    c.fault_respond(o, r[0].cookie, Response::Success).unwrap();
    c.driver_mut().clear();

    assert!(matches!(c.free_fault_object(o), Err(Error::Busy { .. })));
    assert!(c.driver().calls.is_empty());
    assert_eq!(read(&mut c, o, 1).len(), 1, "still live, g3 still there");

    // Re-target to a second object: the first is free to go.
    let o2 = c.alloc_fault_object().unwrap();
    c.set_fault_target(d, FaultTarget::Object(o2)).unwrap();
    c.free_fault_object(o).unwrap();
    assert_eq!(
        sorted(responds(&c)),
        sorted(vec![
            respond(a, None, 2, Response::Invalid),
            respond(a, None, 3, Response::Invalid),
            respond(a, None, 4, Response::Invalid),
        ]),
        "read-unanswered and unread groups once each, no event"
    );
    let gone = Err(Error::NotFound {
        what: Object::FaultObject,
    });
    assert_eq!(c.free_fault_object(o), gone);
    assert_eq!(c.fault_read(o, &mut [BLANK; 4]), gone.map(|()| 0));
    assert_eq!(c.fault_respond(o, r[2].cookie, Response::Success), gone);
    assert_eq!(
        c.set_fault_target(d, FaultTarget::Object(o)),
        gone,
        "a dead object cannot be a target"
    );

    // New faults go to the second object.
    c.driver_mut().clear();
    c.driver_mut().inject(g1);
    c.process_faults().unwrap();
    assert!(responds(&c).is_empty());
    assert_eq!(read(&mut c, o2, 4)[0].fault, g1);

    // Detaching answers the group still pending (the attachment it came
    // through ended); freeing the domain stops its routing too.
    c.driver_mut().clear();
    c.detach(a).unwrap();
    assert_eq!(responds(&c), vec![respond(a, None, 1, Response::Invalid)]);
    c.free_domain(d).unwrap();
    c.driver_mut().clear();
    c.free_fault_object(o2).unwrap();
    assert!(responds(&c).is_empty());
}

#[test]
fn fault_objects_are_limited_and_reused_under_new_names() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let objs: Vec<FaultObjectId> = (0..4).map(|_| c.alloc_fault_object().unwrap()).collect();
    assert!(matches!(
        c.alloc_fault_object(),
        Err(Error::Exhausted { .. })
    ));
    c.free_fault_object(objs[1]).unwrap();
    let again = c.alloc_fault_object().unwrap();
    assert_ne!(again, objs[1]);
    assert!(c.fault_read(objs[1], &mut [BLANK; 1]).is_err());
    assert_eq!(c.fault_read(again, &mut [BLANK; 1]).unwrap(), 0);
    assert!(c.driver().calls.is_empty());
}

#[test]
fn detach_answers_what_its_attachment_left_pending_and_remove_device_is_busy_until_then() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (a, da, o) = with_object(&mut c);
    let b = dev(&mut c, 0, 0x20);
    let db = paging(&mut c, b);
    c.attach(b, db).unwrap();
    c.set_fault_target(db, FaultTarget::Object(o)).unwrap();
    let p = c.alloc_pasid(a).unwrap();
    let dp = paging(&mut c, a);
    c.attach_pasid(a, p, dp).unwrap();
    c.set_fault_target(dp, handler(0)).unwrap();
    c.driver_mut().clear();

    let a1 = pr(a, None, 1, 0x1000, true);
    let a2 = pr(a, None, 2, 0x2000, true);
    let ev = event(a, None, 0x3000);
    let b3 = pr(b, None, 3, 0x4000, true);
    let b4 = pr(b, None, 4, 0x5000, true);
    let b7 = pr(b, None, 7, 0x5800, true);
    let partial = pr(a, Some(p), 5, 0x6000, false);
    let b_partial = pr(b, None, 6, 0x7000, false);
    for f in [a1, b3, a2, ev, b4, b7, partial, b_partial] {
        c.driver_mut().inject(f);
    }
    assert_eq!(c.process_faults().unwrap(), 6);
    assert!(responds(&c).is_empty());
    // a1 and b3 read; a2, ev, b4, b7 unread; a's partial and b's in the core.
    let r = read(&mut c, o, 2);
    assert_eq!(r.iter().map(|u| u.fault).collect::<Vec<_>>(), vec![a1, b3]);

    assert!(matches!(c.remove_device(a), Err(Error::Busy { .. })));
    assert!(responds(&c).is_empty());
    // The requester ID's attachment ends: its read and unread groups are
    // answered once each, its unread event dropped.
    let dropped = c.dropped_events();
    c.detach(a).unwrap();
    assert_eq!(
        sorted(responds(&c)),
        sorted(vec![
            respond(a, None, 1, Response::Invalid),
            respond(a, None, 2, Response::Invalid),
        ]),
    );
    assert_eq!(c.dropped_events(), dropped + 1, "the unread event");
    assert!(
        matches!(c.remove_device(a), Err(Error::Busy { .. })),
        "a PASID attachment is left"
    );
    // The PASID's attachment ends: its parked partial is discarded, with no
    // answer (the group never completed).
    c.driver_mut().clear();
    c.detach_pasid(a, p).unwrap();
    assert!(responds(&c).is_empty());
    c.remove_device(a).unwrap();
    assert!(responds(&c).is_empty(), "nothing of a was left to answer");
    assert_eq!(
        c.device(a),
        Err(Error::NotFound {
            what: Object::Device
        })
    );
    let nf = Err(Error::NotFound {
        what: Object::FaultCookie,
    });
    assert_eq!(c.fault_respond(o, r[0].cookie, Response::Success), nf);

    // b's groups are untouched, in arrival order.
    c.driver_mut().clear();
    let rest = read(&mut c, o, 8);
    assert_eq!(
        rest.iter().map(|u| u.fault).collect::<Vec<_>>(),
        vec![b4, b7],
        "a's unread group and event are gone, b's keep their order"
    );
    c.fault_respond(o, r[1].cookie, Response::Success).unwrap();
    c.fault_respond(o, rest[0].cookie, Response::Success)
        .unwrap();
    c.fault_respond(o, rest[1].cookie, Response::Success)
        .unwrap();
    c.driver_mut().inject(pr(b, None, 6, 0x8000, true));
    c.process_faults().unwrap();
    let last = read(&mut c, o, 8);
    assert_eq!(last.len(), 2, "b's parked partial is still there");
    assert_eq!(
        responds(&c),
        vec![
            respond(b, None, 3, Response::Success),
            respond(b, None, 4, Response::Success),
            respond(b, None, 7, Response::Success),
        ]
    );
    // a's faults, should more arrive, are now answered Invalid (no device).
    c.driver_mut().clear();
    c.driver_mut().inject(a1);
    c.process_faults().unwrap();
    assert_eq!(responds(&c), vec![respond(a, None, 1, Response::Invalid)]);
    assert_eq!(c.free_domain(da), Ok(()));
}

#[test]
fn a_burst_larger_than_the_queue_is_handled_without_failures() {
    // The core holds 64 faults; 200 complete single-request groups arrive at
    // once. Draining and handling alternate per batch, so none is lost.
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10);
    let d = paging(&mut c, a);
    c.attach(a, d).unwrap();
    c.set_fault_target(d, handler(0)).unwrap();
    for g in 0..200u16 {
        c.driver_mut()
            .inject(pr(a, None, g % 512, g as u64 * 0x1000, true));
    }
    assert_eq!(c.process_faults().unwrap(), 200);
    assert_eq!(seen().len(), 200);
    let r = responds(&c);
    assert_eq!(r.len(), 200);
    assert!(
        r.iter().all(|x| matches!(
            x,
            Call::Respond {
                response: Response::Success,
                ..
            }
        )),
        "{r:?}"
    );
}

#[test]
fn an_event_a_full_object_cannot_hold_is_counted_as_dropped() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (a, _, o) = with_object(&mut c);
    for g in 0..16u16 {
        c.driver_mut().inject(pr(a, None, g, 0x1000, true));
    }
    assert_eq!(c.process_faults().unwrap(), 16);
    assert_eq!(c.dropped_events(), 0);
    c.driver_mut().inject(event(a, None, 0x5000));
    assert_eq!(c.process_faults().unwrap(), 1);
    assert_eq!(c.dropped_events(), 1);
    // Events are never answered, dropped or not.
    assert!(responds(&c).is_empty());
    assert_eq!(read(&mut c, o, 64).len(), 16);
}
