//! I/O page-fault grouping and responses against a recording responder.

use iommu::core::iopf::{
    Access, Fault, FaultKind, FaultQueue, FaultResponder, FixedFaultQueue, Response,
};
use iommu::{Error, Object};

#[derive(Default)]
struct Rec(Vec<(u16, u32, Option<u32>, u16, Response)>);

impl FaultResponder for Rec {
    fn respond(
        &mut self,
        i: u16,
        d: u32,
        p: Option<u32>,
        g: u16,
        r: Response,
    ) -> Result<(), Error> {
        self.0.push((i, d, p, g, r));
        Ok(())
    }
}

fn pr(device: u32, pasid: u32, group: u16, addr: u64, last: bool) -> Fault {
    Fault {
        instance: 0,
        device,
        pasid: Some(pasid),
        addr,
        access: Access::READ | Access::WRITE,
        group,
        last,
        kind: FaultKind::PageRequest,
        reason: 0,
    }
}

fn event(device: u32, addr: u64) -> Fault {
    Fault {
        kind: FaultKind::Unrecoverable,
        last: true,
        pasid: None,
        ..pr(device, 0, 0, addr, true)
    }
}

#[test]
fn partials_wait_for_their_last_and_each_group_gets_one_response() {
    let mut q: FixedFaultQueue<16> = FaultQueue::new();
    let mut r = Rec::default();
    // Two groups of device 8 interleaved, and an event.
    q.report(pr(8, 1, 3, 0x1000, false), &mut r).unwrap();
    q.report(pr(8, 1, 4, 0x9000, false), &mut r).unwrap();
    q.report(pr(8, 1, 3, 0x2000, false), &mut r).unwrap();
    let mut seen = vec![];
    // Nothing complete yet: no handler call, no response.
    assert_eq!(
        q.handle(
            |g| {
                seen.push(g.to_vec());
                Response::Success
            },
            &mut r
        )
        .unwrap(),
        0
    );
    q.report(event(9, 0xdead_0000), &mut r).unwrap();
    q.report(pr(8, 1, 3, 0x3000, true), &mut r).unwrap();
    let n = q
        .handle(
            |g| {
                seen.push(g.to_vec());
                if g[0].kind == FaultKind::Unrecoverable {
                    Response::Failure
                } else {
                    Response::Success
                }
            },
            &mut r,
        )
        .unwrap();
    assert_eq!(n, 2, "the event and group 3");
    assert_eq!(seen[0], vec![event(9, 0xdead_0000)]);
    let addrs: Vec<u64> = seen[1].iter().map(|f| f.addr).collect();
    assert_eq!(
        addrs,
        vec![0x1000, 0x2000, 0x3000],
        "group 3 in arrival order, last last"
    );
    assert_eq!(
        r.0,
        vec![(0, 8, Some(1), 3, Response::Success)],
        "one response, none for the event"
    );
    assert_eq!(q.len(), 1, "group 4's partial stays parked");
    q.report(pr(8, 1, 4, 0xa000, true), &mut r).unwrap();
    q.handle(|_| Response::Invalid, &mut r).unwrap();
    assert_eq!(r.0[1], (0, 8, Some(1), 4, Response::Invalid));
    assert!(q.is_empty());
}

#[test]
fn same_group_number_on_other_pasid_or_device_is_another_group() {
    let mut q: FixedFaultQueue<8> = FaultQueue::new();
    let mut r = Rec::default();
    q.report(pr(8, 1, 3, 0x1000, false), &mut r).unwrap();
    q.report(pr(8, 2, 3, 0x2000, true), &mut r).unwrap();
    q.report(pr(16, 1, 3, 0x3000, true), &mut r).unwrap();
    let mut sizes = vec![];
    q.handle(
        |g| {
            sizes.push(g.len());
            Response::Success
        },
        &mut r,
    )
    .unwrap();
    assert_eq!(sizes, vec![1, 1]);
    assert_eq!(r.0.len(), 2);
    assert_eq!(q.len(), 1, "pasid 1's partial is still waiting");
}

#[test]
fn overflow_drops_partials_and_answers_failure_once_for_their_group() {
    let mut q: FixedFaultQueue<2> = FaultQueue::new();
    let mut r = Rec::default();
    q.report(pr(8, 1, 1, 0x1000, false), &mut r).unwrap();
    q.report(pr(8, 1, 2, 0x2000, false), &mut r).unwrap();
    // Full: group 2's next partial is dropped with the rest of group 2.
    q.report(pr(8, 1, 2, 0x3000, false), &mut r).unwrap();
    assert_eq!(q.len(), 1);
    // More of group 2 is dropped quietly; its last gets Failure at once.
    q.report(pr(8, 1, 2, 0x4000, false), &mut r).unwrap();
    q.report(pr(8, 1, 2, 0x5000, true), &mut r).unwrap();
    assert_eq!(r.0, vec![(0, 8, Some(1), 2, Response::Failure)]);
    // The handler never sees group 2.
    q.report(pr(8, 1, 1, 0x6000, true), &mut r).unwrap();
    let mut groups = vec![];
    q.handle(
        |g| {
            groups.push(g[0].group);
            Response::Success
        },
        &mut r,
    )
    .unwrap();
    assert_eq!(groups, vec![1]);
    assert_eq!(r.0.len(), 2);
}

#[test]
fn a_last_request_that_finds_no_room_is_answered_failure() {
    let mut q: FixedFaultQueue<1> = FaultQueue::new();
    let mut r = Rec::default();
    q.report(pr(8, 1, 1, 0x1000, false), &mut r).unwrap();
    q.report(pr(16, 1, 7, 0x2000, true), &mut r).unwrap();
    assert_eq!(r.0, vec![(0, 16, Some(1), 7, Response::Failure)]);
    assert_eq!(
        q.report(event(9, 0), &mut r),
        Err(Error::Exhausted {
            what: Object::QueuedFault
        })
    );
    assert_eq!(q.len(), 1);
}

#[test]
fn removing_a_device_answers_invalid_once_per_complete_group_and_discards_the_rest() {
    let mut q: FixedFaultQueue<16> = FaultQueue::new();
    let mut r = Rec::default();
    q.report(pr(8, 1, 1, 0x1000, false), &mut r).unwrap();
    q.report(pr(8, 1, 1, 0x2000, false), &mut r).unwrap();
    q.report(pr(8, 2, 5, 0x3000, true), &mut r).unwrap();
    q.report(event(8, 0x4000), &mut r).unwrap();
    q.report(pr(16, 1, 1, 0x5000, true), &mut r).unwrap();
    assert_eq!(q.remove_device(0, 8, &mut r), Ok(1), "one event dropped");
    assert_eq!(
        r.0,
        vec![(0, 8, Some(2), 5, Response::Invalid)],
        "the complete group once; the partial group never completed"
    );
    assert_eq!(q.len(), 1, "only device 16's fault is left");
    let mut n = 0;
    q.handle(
        |g| {
            assert_eq!(g[0].device, 16);
            n += 1;
            Response::Success
        },
        &mut r,
    )
    .unwrap();
    assert_eq!(n, 1);
    // The discarded partial group's last request finds nothing to join.
    q.report(pr(8, 1, 1, 0x6000, true), &mut r).unwrap();
    let mut groups = vec![];
    q.handle(
        |g| {
            groups.push(g.to_vec());
            Response::Success
        },
        &mut r,
    )
    .unwrap();
    assert_eq!(groups, vec![vec![pr(8, 1, 1, 0x6000, true)]]);
}

/// Retiring one PASID's faults leaves the device's others alone, and a group
/// lost to overflow at that PASID is forgotten rather than failed later.
#[test]
fn retiring_a_pasid_touches_only_its_faults() {
    let mut q: FixedFaultQueue<2> = FaultQueue::new();
    let mut r = Rec::default();
    q.report(pr(8, 1, 1, 0x1000, false), &mut r).unwrap();
    q.report(pr(8, 2, 2, 0x2000, false), &mut r).unwrap();
    // Full: this partial's group is remembered as lost.
    q.report(pr(8, 1, 3, 0x3000, false), &mut r).unwrap();
    assert_eq!(
        q.retire(|i, d, p| i == 0 && d == 8 && p == Some(1), &mut r),
        Ok(0)
    );
    assert!(r.0.is_empty(), "partial groups are not answered");
    assert_eq!(q.len(), 1, "PASID 2's partial stays");
    // The lost group's last request is not answered Failure any more.
    q.report(pr(8, 1, 3, 0x4000, true), &mut r).unwrap();
    assert!(r.0.is_empty());
    assert_eq!(q.len(), 2);
}
