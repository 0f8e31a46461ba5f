//! The edges of an attachment's life, over the recording mock driver: no
//! fault outlives the attachment it was raised under (hardware queue, parked
//! partials, fault-object groups), bonds own their attachments, teardown
//! frees only what nobody uses, and faults with a SubstreamID reach a nested
//! domain whose guest owns the device's PASIDs.

mod common;

use std::cell::RefCell;

use common::TestHal;
use common::mock::{Call, FAULTS, Mock, NestedCaps, SMMU_STE, TestCaps, core_over};
use iommu::core::{
    Access, AddressSpace, CpuFormat, DeviceId, DomainId, Fault, FaultHandler, FaultKind,
    FaultTarget, Iommu, PagingFlags, Response, UserFault,
};
use iommu::drivers::smmuv3::user::SmmuV3SteCaps;
use iommu::{Error, Object, PhysAddr};

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<16, 16>>;

const A: DeviceId = DeviceId {
    instance: 0,
    id: 0x10,
};
const B: DeviceId = DeviceId {
    instance: 0,
    id: 0x18,
};

fn core(pool: &TestHal) -> Box<Core<'_>> {
    let mut c = core_over(
        pool,
        Mock::new(1).with_pool(pool),
        &[(A, 8, false), (B, 8, false)],
    );
    c.driver_mut().clear();
    c
}

// ----- a recording handler -------------------------------------------------

type Seen = Vec<(usize, DomainId, Vec<Fault>)>;

thread_local! {
    static SEEN: RefCell<Seen> = const { RefCell::new(Vec::new()) };
}

/// Records what it was given and answers Success.
fn record(cookie: usize, domain: DomainId, group: &[Fault]) -> Response {
    SEEN.with(|s| s.borrow_mut().push((cookie, domain, group.to_vec())));
    Response::Success
}

fn handler(cookie: usize) -> FaultTarget {
    FaultTarget::Handler(FaultHandler {
        func: record,
        cookie,
    })
}

/// What the handlers saw since the last call, as (cookie, faults).
fn seen() -> Vec<(usize, Vec<Fault>)> {
    SEEN.with(|s| s.take())
        .into_iter()
        .map(|(c, _, g)| (c, g))
        .collect()
}

fn pr(d: DeviceId, pasid: Option<u32>, group: u16, addr: u64, last: bool) -> Fault {
    Fault {
        instance: d.instance,
        device: d.id,
        pasid,
        addr,
        access: Access::READ,
        group,
        last,
        kind: FaultKind::PageRequest,
        reason: 0,
    }
}

fn responses(c: &Core<'_>) -> Vec<(u32, Option<u32>, u16, Response)> {
    c.driver().responses()
}

fn space(c: &mut Core<'_>, root: u64, cookie: usize) -> iommu::core::SpaceId {
    let desc = AddressSpace {
        root: PhysAddr(root),
        format: CpuFormat::X86_64 { five_level: false },
        asid: 0,
    };
    c.register_space(desc, handler(cookie)).unwrap()
}

fn paging(c: &mut Core<'_>, d: DeviceId, cookie: usize) -> DomainId {
    let id = c.alloc_paging(d, PagingFlags::empty()).unwrap();
    c.set_fault_target(id, handler(cookie)).unwrap();
    id
}

// ----- 1. a page request in the hardware queue at the end of its attachment

/// Unbind and teardown: the space's PASID goes to the next space, and the
/// request raised under the first must not reach the second's handler.
#[test]
fn a_queued_request_at_unbind_never_reaches_the_pasids_next_owner() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s1 = space(&mut c, 0x10_0000, 1);
    let bond = c.bind(A, s1).unwrap();
    let p = c.space_pasid(s1).unwrap().unwrap();
    c.driver_mut().inject(pr(A, Some(p), 3, 0x4000, true));
    c.unbind(bond).unwrap();
    c.teardown_space(s1).unwrap();
    let s2 = space(&mut c, 0x20_0000, 2);
    c.bind(A, s2).unwrap();
    assert_eq!(c.space_pasid(s2), Ok(Some(p)), "the PASID was reused");
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![], "no handler saw the old request");
    assert_eq!(
        responses(&c),
        vec![(A.id, Some(p), 3, Response::Invalid)],
        "answered once, Invalid"
    );
}

#[test]
fn a_queued_request_at_teardown_never_reaches_the_pasids_next_owner() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s1 = space(&mut c, 0x10_0000, 1);
    c.bind(A, s1).unwrap();
    let p = c.space_pasid(s1).unwrap().unwrap();
    c.driver_mut().inject(pr(A, Some(p), 3, 0x4000, true));
    c.teardown_space(s1).unwrap();
    let s2 = space(&mut c, 0x20_0000, 2);
    c.bind(A, s2).unwrap();
    assert_eq!(c.space_pasid(s2), Ok(Some(p)));
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![]);
    assert_eq!(responses(&c), vec![(A.id, Some(p), 3, Response::Invalid)]);
}

#[test]
fn a_queued_request_at_detach_pasid_never_reaches_the_pasids_next_owner() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let d1 = paging(&mut c, A, 1);
    let d2 = paging(&mut c, A, 2);
    let p = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, p, d1).unwrap();
    c.driver_mut().inject(pr(A, Some(p), 3, 0x4000, true));
    c.detach_pasid(A, p).unwrap();
    c.free_pasid(p).unwrap();
    assert_eq!(c.alloc_pasid(A), Ok(p));
    c.attach_pasid(A, p, d2).unwrap();
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![]);
    assert_eq!(responses(&c), vec![(A.id, Some(p), 3, Response::Invalid)]);
}

// ----- 2. a parked partial group at the end of its attachment

/// The partial parked under the first owner must not be merged into the
/// next owner's group with the same index.
fn partial_then_last(retire: impl FnOnce(&mut Core<'_>, u32) -> u32) {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let d1 = paging(&mut c, A, 1);
    let p = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, p, d1).unwrap();
    c.driver_mut().inject(pr(A, Some(p), 5, 0x1000, false));
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![], "parked");
    let q = retire(&mut c, p);
    assert_eq!(q, p, "the PASID came back");
    let d2 = paging(&mut c, A, 2);
    c.attach_pasid(A, q, d2).unwrap();
    let last = pr(A, Some(q), 5, 0x2000, true);
    c.driver_mut().inject(last);
    c.process_faults().unwrap();
    assert_eq!(
        seen(),
        vec![(2, vec![last])],
        "the new owner's group holds only its own request"
    );
    assert_eq!(responses(&c), vec![(A.id, Some(q), 5, Response::Success)]);
}

#[test]
fn a_parked_partial_does_not_survive_detach_pasid() {
    partial_then_last(|c, p| {
        c.detach_pasid(A, p).unwrap();
        c.free_pasid(p).unwrap();
        c.alloc_pasid(A).unwrap()
    });
}

#[test]
fn a_parked_partial_does_not_survive_unbind_and_teardown() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s1 = space(&mut c, 0x10_0000, 1);
    let bond = c.bind(A, s1).unwrap();
    let p = c.space_pasid(s1).unwrap().unwrap();
    c.driver_mut().inject(pr(A, Some(p), 5, 0x1000, false));
    c.process_faults().unwrap();
    c.unbind(bond).unwrap();
    c.teardown_space(s1).unwrap();
    let s2 = space(&mut c, 0x20_0000, 2);
    c.bind(A, s2).unwrap();
    assert_eq!(c.space_pasid(s2), Ok(Some(p)));
    let last = pr(A, Some(p), 5, 0x2000, true);
    c.driver_mut().inject(last);
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![(2, vec![last])]);
    assert_eq!(responses(&c), vec![(A.id, Some(p), 5, Response::Success)]);
}

#[test]
fn a_parked_partial_does_not_survive_teardown() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s1 = space(&mut c, 0x10_0000, 1);
    c.bind(A, s1).unwrap();
    let p = c.space_pasid(s1).unwrap().unwrap();
    c.driver_mut().inject(pr(A, Some(p), 5, 0x1000, false));
    c.process_faults().unwrap();
    c.teardown_space(s1).unwrap();
    let s2 = space(&mut c, 0x20_0000, 2);
    c.bind(A, s2).unwrap();
    let last = pr(A, Some(p), 5, 0x2000, true);
    c.driver_mut().inject(last);
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![(2, vec![last])]);
}

// ----- 3. stale partials and the shared queue

#[test]
fn partials_of_a_detached_pasid_do_not_crowd_out_another_devices_group() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let d1 = paging(&mut c, A, 1);
    let p = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, p, d1).unwrap();
    for g in 0..FAULTS as u16 {
        c.driver_mut()
            .inject(pr(A, Some(p), g, 0x1000 * g as u64, false));
    }
    c.process_faults().unwrap();
    c.detach_pasid(A, p).unwrap();
    let db = paging(&mut c, B, 7);
    c.attach(B, db).unwrap();
    let f = pr(B, None, 1, 0x9000, true);
    c.driver_mut().inject(f);
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![(7, vec![f])]);
    assert_eq!(responses(&c), vec![(B.id, None, 1, Response::Success)]);
}

/// Partial requests at a PASID nothing is attached at have no group to join:
/// they are not parked, so they cannot fill the queue either.
#[test]
fn partials_at_an_unattached_pasid_are_not_parked() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    for g in 0..(2 * FAULTS) as u16 {
        c.driver_mut().inject(pr(A, Some(9), g, 0x1000, false));
    }
    c.process_faults().unwrap();
    let db = paging(&mut c, B, 7);
    c.attach(B, db).unwrap();
    let f = pr(B, None, 1, 0x9000, true);
    c.driver_mut().inject(f);
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![(7, vec![f])]);
    assert_eq!(responses(&c), vec![(B.id, None, 1, Response::Success)]);
}

// ----- 4. fault-object groups at detach

#[test]
fn read_fault_object_groups_are_answered_invalid_at_detach_and_a_late_answer_is_refused() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let o = c.alloc_fault_object().unwrap();
    let d1 = c.alloc_paging(A, PagingFlags::empty()).unwrap();
    c.set_fault_target(d1, FaultTarget::Object(o)).unwrap();
    let p = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, p, d1).unwrap();
    let read_one = pr(A, Some(p), 1, 0x1000, true);
    let unread = pr(A, Some(p), 2, 0x2000, true);
    c.driver_mut().inject(read_one);
    c.process_faults().unwrap();
    let mut out = [UserFault {
        cookie: 0,
        fault: read_one,
    }; 4];
    assert_eq!(c.fault_read(o, &mut out), Ok(1));
    let cookie = out[0].cookie;
    c.driver_mut().inject(unread);
    c.process_faults().unwrap();
    assert_eq!(responses(&c), vec![]);
    c.detach_pasid(A, p).unwrap();
    let mut got = responses(&c);
    got.sort_by_key(|r| r.2);
    assert_eq!(
        got,
        vec![
            (A.id, Some(p), 1, Response::Invalid),
            (A.id, Some(p), 2, Response::Invalid)
        ],
        "read and unread groups answered once each at detach"
    );
    assert_eq!(
        c.fault_respond(o, cookie, Response::Success),
        Err(Error::NotFound {
            what: Object::FaultCookie
        })
    );
    assert_eq!(c.fault_read(o, &mut out), Ok(0), "nothing left to read");
    // The PASID's next owner gets nothing of it.
    c.free_pasid(p).unwrap();
    let d2 = paging(&mut c, A, 2);
    let q = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, q, d2).unwrap();
    c.driver_mut().clear();
    c.process_faults().unwrap();
    assert_eq!(responses(&c), vec![]);
    assert_eq!(seen(), vec![]);
}

// ----- 5 and 6. a bond owns its attachment

#[test]
fn attach_pasid_cannot_replace_a_bonds_domain() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s = space(&mut c, 0x10_0000, 1);
    let bond = c.bind(A, s).unwrap();
    let p = c.space_pasid(s).unwrap().unwrap();
    let sva = c.attached(A, Some(p)).unwrap().unwrap();
    let other = paging(&mut c, A, 2);
    c.driver_mut().clear();
    assert!(matches!(
        c.attach_pasid(A, p, other),
        Err(Error::Busy { .. })
    ));
    assert_eq!(c.attached(A, Some(p)), Ok(Some(sva)));
    assert!(c.driver().calls.is_empty(), "the hardware was not touched");
    c.unbind(bond).unwrap();
    assert_eq!(c.attached(A, Some(p)), Ok(None));
    assert_eq!(c.domain_users(other), Ok(0));
    assert_eq!(
        c.domain_kind(sva),
        Err(Error::NotFound {
            what: Object::Domain
        }),
        "the SVA domain went with the bond"
    );
}

#[test]
fn detach_pasid_cannot_break_a_bond() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s = space(&mut c, 0x10_0000, 1);
    let bond = c.bind(A, s).unwrap();
    let p = c.space_pasid(s).unwrap().unwrap();
    c.driver_mut().clear();
    assert!(matches!(c.detach_pasid(A, p), Err(Error::Busy { .. })));
    assert!(c.driver().calls.is_empty());
    c.unbind(bond).unwrap();
    c.teardown_space(s).unwrap();
    assert_eq!(c.pasids().in_use(), 0, "the PASID went back");
    assert!(c.driver().live.is_empty(), "the SVA domain was freed");
}

// ----- 7. teardown and a PASID still attached elsewhere

#[test]
fn teardown_refuses_while_the_spaces_pasid_is_attached_outside_its_bonds() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s = space(&mut c, 0x10_0000, 1);
    let bond = c.bind(A, s).unwrap();
    let p = c.space_pasid(s).unwrap().unwrap();
    let d = paging(&mut c, B, 2);
    c.attach_pasid(B, p, d).unwrap();
    c.driver_mut().clear();
    assert!(matches!(c.teardown_space(s), Err(Error::Busy { .. })));
    assert!(c.driver().calls.is_empty(), "nothing was unbound");
    assert!(c.pasids().is_used(p));
    assert!(c.bond_info(bond).is_ok());
    assert_eq!(c.attached(B, Some(p)), Ok(Some(d)));
    c.detach_pasid(B, p).unwrap();
    c.teardown_space(s).unwrap();
    assert!(!c.pasids().is_used(p));
}

// ----- 8. SMMUv3 nesting: the guest owns the device's PASIDs

fn nested_with_substreams(c: &mut Core<'_>, cd_max: u64) -> DomainId {
    c.driver_mut().nested = Some(NestedCaps::SmmuV3(SmmuV3SteCaps {
        ssid_bits: 16,
        oas_bits: 44,
        two_level_cd: false,
    }));
    let parent = c.alloc_paging(A, PagingFlags::NEST_PARENT).unwrap();
    // V, Config S1 translate, S1CDMax, a CD table at 0x8000.
    let w0: u64 = 1 | (0b101 << 1) | 0x8000 | (cd_max << 59);
    let mut bytes = w0.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0u64.to_le_bytes());
    c.alloc_nested(A, parent, SMMU_STE, &bytes).unwrap()
}

#[test]
fn a_fault_with_a_substream_reaches_the_nested_domain_at_the_rid() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let n = nested_with_substreams(&mut c, 4);
    c.set_fault_target(n, handler(6)).unwrap();
    c.attach(A, n).unwrap();
    let f = pr(A, Some(5), 2, 0x3000, true);
    c.driver_mut().clear();
    c.driver_mut().inject(f);
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![(6, vec![f])]);
    assert_eq!(responses(&c), vec![(A.id, Some(5), 2, Response::Success)]);
}

#[test]
fn without_substreams_a_fault_with_a_pasid_does_not_reach_the_rid_domain() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let n = nested_with_substreams(&mut c, 0);
    c.set_fault_target(n, handler(6)).unwrap();
    c.attach(A, n).unwrap();
    c.driver_mut().clear();
    c.driver_mut().inject(pr(A, Some(5), 2, 0x3000, true));
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![]);
    assert_eq!(responses(&c), vec![(A.id, Some(5), 2, Response::Invalid)]);
    assert!(
        c.driver()
            .calls
            .iter()
            .all(|c| !matches!(c, Call::Alloc { .. }))
    );
}

// ----- what every change guarantees ------------------------------------------

/// Each change asks the driver to flush the device's faults after the
/// hardware change and drains the instance before it returns.
#[test]
fn every_change_flushes_the_devices_faults_after_the_hardware_change() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    c.driver_mut().record_flushes = true;
    let d = paging(&mut c, A, 1);
    let p = c.alloc_pasid(A).unwrap();
    let flush = vec![
        Call::FlushFaults {
            instance: 0,
            device: A.id,
        },
        Call::Drain(0),
    ];
    let kinds = |c: &mut Core<'_>| -> Vec<Call> {
        std::mem::take(&mut c.driver_mut().calls)
            .into_iter()
            .map(|call| match call {
                Call::Attach { .. } | Call::DetachPasid { .. } => Call::Probe(9),
                other => other,
            })
            .collect()
    };
    let after_change: Vec<Call> = [vec![Call::Probe(9)], flush.clone()].concat();
    kinds(&mut c);
    c.attach(A, d).unwrap();
    assert_eq!(kinds(&mut c), after_change, "attach");
    c.attach_pasid(A, p, d).unwrap();
    assert_eq!(kinds(&mut c), after_change, "attach_pasid");
    c.attach_pasid(A, p, DomainId::IDENTITY).unwrap();
    assert_eq!(kinds(&mut c), after_change, "replace");
    c.detach_pasid(A, p).unwrap();
    assert_eq!(kinds(&mut c), after_change, "detach_pasid");
    c.detach(A).unwrap();
    assert_eq!(kinds(&mut c), after_change, "detach");
    c.remove_device(A).unwrap();
    assert_eq!(kinds(&mut c), flush, "remove_device");
    // Re-attaching what is attached changes nothing and flushes nothing.
    c.attach(B, d).unwrap();
    kinds(&mut c);
    c.attach(B, d).unwrap();
    assert_eq!(kinds(&mut c), vec![]);
}

/// A request raised while nothing was attached must not reach the domain
/// attached afterwards.
#[test]
fn a_fault_from_before_an_attach_never_reaches_the_new_domain() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let p = c.alloc_pasid(A).unwrap();
    c.driver_mut().inject(pr(A, Some(p), 1, 0x1000, true));
    c.driver_mut().inject(pr(A, None, 2, 0x2000, true));
    let d = paging(&mut c, A, 1);
    c.attach_pasid(A, p, d).unwrap();
    c.attach(A, d).unwrap();
    assert_eq!(
        responses(&c),
        vec![
            (A.id, Some(p), 1, Response::Invalid),
            (A.id, None, 2, Response::Invalid)
        ]
    );
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![]);
    assert_eq!(responses(&c).len(), 2, "nothing more");
}

/// Replacing a domain: the old one's requests are answered Invalid at the
/// replace, its events still reach it during the call, and the new one sees
/// only what comes after.
#[test]
fn a_replace_answers_the_old_domains_requests_and_hands_it_its_events() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let d1 = paging(&mut c, A, 1);
    let d2 = paging(&mut c, A, 2);
    let p = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, p, d1).unwrap();
    let partial = pr(A, Some(p), 4, 0x1000, false);
    c.driver_mut().inject(partial);
    c.process_faults().unwrap();
    let ev = Fault {
        kind: FaultKind::Unrecoverable,
        ..pr(A, Some(p), 0, 0x5000, true)
    };
    c.driver_mut().inject(pr(A, Some(p), 3, 0x3000, true));
    c.driver_mut().inject(ev);
    c.attach_pasid(A, p, d2).unwrap();
    assert_eq!(
        seen(),
        vec![(1, vec![ev])],
        "the event reached the old domain"
    );
    assert_eq!(responses(&c), vec![(A.id, Some(p), 3, Response::Invalid)]);
    let after = pr(A, Some(p), 4, 0x6000, true);
    c.driver_mut().inject(after);
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![(2, vec![after])], "without the old partial");
}

#[test]
fn remove_device_drains_the_hardware_queue_first() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let d = paging(&mut c, A, 1);
    c.attach(A, d).unwrap();
    c.detach(A).unwrap();
    c.driver_mut().inject(pr(A, None, 1, 0x1000, true));
    c.driver_mut().inject(pr(B, None, 2, 0x2000, true));
    c.remove_device(A).unwrap();
    // B's request was drained with A's and routed: nothing is attached at B.
    assert_eq!(
        responses(&c),
        vec![
            (A.id, None, 1, Response::Invalid),
            (B.id, None, 2, Response::Invalid)
        ]
    );
    c.process_faults().unwrap();
    assert_eq!(responses(&c).len(), 2);
}

// ----- a flush that fails --------------------------------------------------

/// The driver's flush fails after the detach was made: the detach stands and
/// the error is returned; the PASID's requests are answered on sight, the
/// freed PASID is not handed out again, and the next successful flush
/// releases it.
#[test]
fn a_failed_flush_quarantines_the_pasid_until_a_later_flush() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let d = paging(&mut c, A, 1);
    let p = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, p, d).unwrap();
    c.driver_mut().inject(pr(A, Some(p), 1, 0x1000, true));
    c.driver_mut().fail_flush = true;
    assert_eq!(
        c.detach_pasid(A, p),
        Err(Error::Timeout {
            what: "mock fault flush"
        })
    );
    assert_eq!(c.attached(A, Some(p)), Ok(None), "the detach stands");
    assert_eq!(c.domain_users(d), Ok(0));
    c.free_pasid(p).unwrap();
    assert!(c.pasids().is_used(p), "held back");
    let q = c.alloc_pasid(A).unwrap();
    assert_ne!(q, p, "not handed out");
    assert_eq!(c.attach_pasid(A, p, d), Err(Error::BadPasid { pasid: p }));
    assert_eq!(c.free_pasid(p), Err(Error::BadPasid { pasid: p }));
    // While the flush keeps failing, changes at the device are refused
    // (old and new faults would mix) and process_faults reports it, but
    // the request is still answered, once, and reaches no handler.
    assert!(c.attach_pasid(A, q, d).is_err());
    assert_eq!(c.attached(A, Some(q)), Ok(None));
    assert_eq!(
        c.process_faults(),
        Err(Error::Timeout {
            what: "mock fault flush"
        })
    );
    assert_eq!(responses(&c), vec![(A.id, Some(p), 1, Response::Invalid)]);
    assert_eq!(seen(), vec![]);
    // The flush works again: the PASID comes back.
    c.driver_mut().fail_flush = false;
    c.process_faults().unwrap();
    assert!(!c.pasids().is_used(p));
    c.attach_pasid(A, q, d).unwrap();
    c.free_pasid(q).unwrap_err();
    assert_eq!(responses(&c).len(), 1);
}

/// A drain that fails during the flush of an unbind: the unbind is done and
/// the error returned; a teardown then completes, and the PASID is released
/// once a drain works.
#[test]
fn a_failed_drain_at_unbind_still_lets_teardown_complete() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s = space(&mut c, 0x10_0000, 1);
    let bond = c.bind(A, s).unwrap();
    let p = c.space_pasid(s).unwrap().unwrap();
    c.driver_mut().fail_drain = true;
    assert!(matches!(c.unbind(bond), Err(Error::Hardware { .. })));
    assert_eq!(
        c.bond_info(bond),
        Err(Error::NotFound { what: Object::Bond })
    );
    c.teardown_space(s).unwrap();
    assert!(
        c.pasids().is_used(p),
        "held back until its faults are flushed"
    );
    assert!(c.driver().live.is_empty(), "the SVA domain was freed");
    c.driver_mut().fail_drain = false;
    c.process_faults().unwrap();
    assert_eq!(c.pasids().in_use(), 0);
}

// ----- an error changes nothing ----------------------------------------------

/// The hardware refuses the detach of an unbind: nothing changed (the bond
/// keeps its users), and teardown afterwards releases everything.
#[test]
fn teardown_after_a_failed_detach_releases_everything() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s = space(&mut c, 0x10_0000, 1);
    let ba = c.bind(A, s).unwrap();
    c.bind(A, s).unwrap();
    let bb = c.bind(B, s).unwrap();
    let before = (c.bond_info(ba), c.bond_info(bb), c.pasids().in_use());
    c.driver_mut().fail_attach = Some(Error::Timeout { what: "mock" });
    assert_eq!(c.teardown_space(s), Err(Error::Timeout { what: "mock" }));
    assert_eq!(
        (c.bond_info(ba), c.bond_info(bb), c.pasids().in_use()),
        before,
        "the first release failed: nothing changed"
    );
    assert_eq!(c.bond_info(ba).unwrap().users, 2);
    c.teardown_space(s).unwrap();
    assert_eq!(c.pasids().in_use(), 0);
    assert!(c.driver().live.is_empty());
    assert!(c.driver().hw.is_empty(), "nothing attached in hardware");
    assert_eq!(pool.counts().live_pages(), 0);
}

// ----- whole-device bonds ----------------------------------------------------

const N: DeviceId = DeviceId {
    instance: 0,
    id: 0x20,
};

#[test]
fn a_device_without_pasids_binds_whole_at_its_requester_id() {
    let pool = TestHal::new(64);
    let mut c = core_over(
        &pool,
        Mock::new(1).with_pool(&pool),
        &[(A, 8, false), (N, 0, false)],
    );
    let s = space(&mut c, 0x10_0000, 1);
    assert!(matches!(c.bind(N, s), Err(Error::Unsupported { .. })));
    let d = paging(&mut c, N, 2);
    c.attach(N, d).unwrap();
    assert!(
        matches!(c.bind_device(N, s), Err(Error::Busy { .. })),
        "the requester ID is in use"
    );
    c.detach(N).unwrap();
    c.driver_mut().clear();
    let bond = c.bind_device(N, s).unwrap();
    let info = c.bond_info(bond).unwrap();
    assert_eq!(info.pasid, None);
    assert_eq!(c.attached(N, None), Ok(Some(info.domain)));
    assert_eq!(c.space_pasid(s), Ok(None), "no PASID was taken");
    assert!(matches!(
        c.driver().calls.last(),
        Some(Call::Attach { pasid: None, .. })
    ));
    // The same entry writer serves A at the space's PASID, with the same
    // domain.
    let ba = c.bind(A, s).unwrap();
    assert_eq!(c.bond_info(ba).unwrap().domain, info.domain);
    // Same pair again: one more user.
    assert_eq!(c.bind_device(N, s), Ok(bond));
    assert_eq!(c.bond_info(bond).unwrap().users, 2);
    // The bond owns the requester ID.
    assert!(matches!(c.attach(N, d), Err(Error::Busy { .. })));
    assert!(matches!(c.detach(N), Err(Error::Busy { .. })));
    // Untagged faults go to the space's handler.
    let f = pr(N, None, 1, 0x7000, true);
    c.driver_mut().inject(f);
    c.process_faults().unwrap();
    assert_eq!(seen(), vec![(1, vec![f])]);
    // invalidate_range reaches the requester ID's tag.
    c.driver_mut().clear();
    c.invalidate_range(s, 0x1000, 0x2000).unwrap();
    assert!(
        c.driver()
            .invalidations()
            .iter()
            .any(|t| t.device == N.id && t.pasid.is_none())
    );
    c.unbind(bond).unwrap();
    c.unbind(bond).unwrap();
    assert_eq!(c.attached(N, None), Ok(Some(DomainId::BLOCKED)));
    c.attach(N, d).unwrap();
    c.detach(N).unwrap();
    c.teardown_space(s).unwrap();
    assert!(
        c.driver()
            .live
            .iter()
            .all(|&(_, t)| Some(t) != c.domain_hw(info.domain).ok().map(|h| h.tag))
    );
    assert_eq!(c.pasids().in_use(), 0);
}

// ----- a guest that owns the device's PASIDs -----------------------------------

#[test]
fn the_core_attaches_nothing_at_a_pasid_the_guest_owns() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let n = nested_with_substreams(&mut c, 4);
    let d = paging(&mut c, A, 1);
    let p = c.alloc_pasid(A).unwrap();
    c.attach_pasid(A, p, d).unwrap();
    assert!(
        matches!(c.attach(A, n), Err(Error::Busy { .. })),
        "PASIDs are attached"
    );
    c.detach_pasid(A, p).unwrap();
    c.attach(A, n).unwrap();
    assert!(matches!(c.attach_pasid(A, p, d), Err(Error::Busy { .. })));
    // Ending the nested attachment retires its PASID-tagged faults too.
    c.set_fault_target(n, handler(6)).unwrap();
    c.driver_mut().clear();
    c.driver_mut().inject(pr(A, Some(5), 1, 0x1000, true));
    c.detach(A).unwrap();
    assert_eq!(responses(&c), vec![(A.id, Some(5), 1, Response::Invalid)]);
    assert_eq!(seen(), vec![]);
    c.attach_pasid(A, p, d).unwrap();
}

/// Teardown ends every attachment of the space in one call: a request of
/// the second device is answered Invalid while the first device's bond is
/// released, not handed to the space's handler.
#[test]
fn teardown_answers_every_bonds_requests_invalid() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let s = space(&mut c, 0x10_0000, 1);
    c.bind(A, s).unwrap();
    c.bind(B, s).unwrap();
    let p = c.space_pasid(s).unwrap().unwrap();
    c.driver_mut().inject(pr(B, Some(p), 1, 0x1000, true));
    c.teardown_space(s).unwrap();
    assert_eq!(seen(), vec![]);
    assert_eq!(responses(&c), vec![(B.id, Some(p), 1, Response::Invalid)]);
}
