//! A model of attachment life cycles and fault delivery, checked against the
//! core over random interleavings of bind / bind_device / unbind /
//! attach_pasid / attach / detach_pasid / alloc and free of PASIDs /
//! teardown / fault injection / process_faults / fault-object read and
//! respond, with injected hardware refusals, over 3 devices on 2 instances.
//!
//! The model keeps its own table of who is attached where, and an epoch per
//! (device, PASID or RID) that moves at every change. A fault injected there
//! belongs to the epoch and target (handler, fault object or none) of that
//! moment. After every step:
//! - every fault a handler or the fault object hands out belongs to the
//!   current epoch of its attachment and to that handler or object;
//! - no group is answered twice, no event is answered, and a `Success`
//!   comes only from a handler or the user;
//! - every complete page-request group of an attachment that ended has been
//!   answered by the time the call returns;
//! - the core's attachments match the model, and refused calls change
//!   nothing.
//!
//! At the end everything is torn down: every complete group was answered
//! exactly once, and no PASID, domain, table page or driver state is left.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use common::TestHal;
use common::mock::{Call, Mock, Seen, TestCaps, core_over};
use iommu::core::{
    Access, AddressSpace, BondId, CpuFormat, DeviceId, DomainId, Fault, FaultHandler, FaultKind,
    FaultObjectId, FaultTarget, Iommu, PagingFlags, Response, SpaceId, UserFault,
};
use iommu::{Error, Object, PhysAddr};
use proptest::prelude::*;

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<16, 8>>;

const DEVS: [DeviceId; 3] = [
    DeviceId {
        instance: 0,
        id: 0x10,
    },
    DeviceId {
        instance: 0,
        id: 0x18,
    },
    DeviceId {
        instance: 1,
        id: 0x10,
    },
];

/// Where a fault goes, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    None,
    Handler(usize),
    Object,
}

/// What is attached at one (device, PASID or RID), as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Blocked,
    Identity,
    /// The paging domain of the device's instance.
    Paging,
    /// An SVA domain of space `space`, owned by a bond.
    Sva {
        space: usize,
    },
}

/// The handler cookie of the paging domain on instance 1 (instance 0's
/// routes to the fault object).
const PAGING1: usize = 101;

thread_local! {
    static SEEN: RefCell<Vec<(usize, Vec<Fault>)>> = const { RefCell::new(Vec::new()) };
}

fn record(cookie: usize, _: DomainId, group: &[Fault]) -> Response {
    SEEN.with(|s| s.borrow_mut().push((cookie, group.to_vec())));
    Response::Success
}

fn handler(cookie: usize) -> FaultTarget {
    FaultTarget::Handler(FaultHandler {
        func: record,
        cookie,
    })
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Bind {
        dev: usize,
        space: usize,
        fail: bool,
    },
    BindDevice {
        dev: usize,
        space: usize,
    },
    Unbind {
        pick: usize,
        fail: bool,
    },
    AttachPasid {
        dev: usize,
        pick: usize,
        dom: u8,
        fail: bool,
    },
    AttachRid {
        dev: usize,
        dom: u8,
        fail: bool,
    },
    DetachPasid {
        dev: usize,
        pick: usize,
        fail: bool,
    },
    AllocPasid {
        dev: usize,
    },
    FreePasid {
        pick: usize,
    },
    Teardown {
        space: usize,
    },
    Partial {
        dev: usize,
        pick: usize,
    },
    Last {
        dev: usize,
        pick: usize,
        close: bool,
    },
    Event {
        dev: usize,
        pick: usize,
    },
    Process,
    Read,
    Respond {
        pick: usize,
        success: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let dev = 0usize..3;
    let space = 0usize..2;
    // Few choices, so that the same device and PASID come up again and
    // again: a request raised before a change meets the next owner.
    let pick = 0usize..4;
    prop_oneof![
        3 => (dev.clone(), space.clone(), prop::bool::weighted(0.1))
            .prop_map(|(dev, space, fail)| Op::Bind { dev, space, fail }),
        1 => (dev.clone(), space.clone()).prop_map(|(dev, space)| Op::BindDevice { dev, space }),
        2 => (pick.clone(), prop::bool::weighted(0.1))
            .prop_map(|(pick, fail)| Op::Unbind { pick, fail }),
        3 => (dev.clone(), pick.clone(), 0u8..3, prop::bool::weighted(0.1))
            .prop_map(|(dev, pick, dom, fail)| Op::AttachPasid { dev, pick, dom, fail }),
        2 => (dev.clone(), 0u8..3, prop::bool::weighted(0.1))
            .prop_map(|(dev, dom, fail)| Op::AttachRid { dev, dom, fail }),
        2 => (dev.clone(), pick.clone(), prop::bool::weighted(0.1))
            .prop_map(|(dev, pick, fail)| Op::DetachPasid { dev, pick, fail }),
        2 => dev.clone().prop_map(|dev| Op::AllocPasid { dev }),
        1 => pick.clone().prop_map(|pick| Op::FreePasid { pick }),
        1 => space.prop_map(|space| Op::Teardown { space }),
        3 => (dev.clone(), pick.clone()).prop_map(|(dev, pick)| Op::Partial { dev, pick }),
        4 => (dev.clone(), pick.clone(), prop::bool::weighted(0.7))
            .prop_map(|(dev, pick, close)| Op::Last { dev, pick, close }),
        2 => (dev, pick.clone()).prop_map(|(dev, pick)| Op::Event { dev, pick }),
        3 => Just(Op::Process),
        2 => Just(Op::Read),
        2 => (pick, any::<bool>()).prop_map(|(pick, success)| Op::Respond { pick, success }),
    ]
}

/// A fault the test injected.
#[derive(Clone, Copy, Debug)]
struct Injected {
    dev: usize,
    at: Option<u32>,
    epoch: u64,
    target: Target,
    kind: FaultKind,
    last: bool,
}

#[derive(Clone, Copy, Debug)]
struct ModelBond {
    id: BondId,
    dev: usize,
    space: usize,
    at: Option<u32>,
    users: u32,
}

struct Space {
    id: SpaceId,
    cookie: usize,
    pasid: Option<u32>,
}

struct Model {
    slots: BTreeMap<(usize, Option<u32>), Slot>,
    epochs: BTreeMap<(usize, Option<u32>), u64>,
    bonds: Vec<ModelBond>,
    spaces: Vec<Space>,
    allocated: BTreeSet<u32>,
    /// Faults by their group index (unique per group).
    injected: BTreeMap<u16, Vec<Injected>>,
    open: BTreeMap<(usize, Option<u32>), u16>,
    next_group: u16,
    next_cookie: usize,
    /// Groups answered (group, response).
    answered: BTreeMap<u16, Response>,
    /// Groups a handler saw, or the user answered Success.
    handled: BTreeSet<u16>,
    /// Read fault-object groups: cookie -> group.
    read: BTreeMap<u32, u16>,
    /// How many driver calls were looked at.
    calls_seen: usize,
    /// Groups answered during the current step.
    answered_now: BTreeSet<u16>,
}

impl Model {
    fn slot(&self, dev: usize, at: Option<u32>) -> Option<Slot> {
        match (self.slots.get(&(dev, at)), at) {
            (Some(s), _) => Some(*s),
            (None, None) => Some(Slot::Blocked),
            (None, Some(_)) => None,
        }
    }

    fn epoch(&self, dev: usize, at: Option<u32>) -> u64 {
        self.epochs.get(&(dev, at)).copied().unwrap_or(0)
    }

    fn target(&self, dev: usize, at: Option<u32>) -> Target {
        match self.slot(dev, at) {
            Some(Slot::Paging) if DEVS[dev].instance == 0 => Target::Object,
            Some(Slot::Paging) => Target::Handler(PAGING1),
            Some(Slot::Sva { space }) => Target::Handler(self.spaces[space].cookie),
            _ => Target::None,
        }
    }

    fn bonded(&self, dev: usize, at: Option<u32>) -> bool {
        self.bonds.iter().any(|b| b.dev == dev && b.at == at)
    }

    /// The PASIDs an op may name: the embedder's, the spaces', and one
    /// nobody allocated.
    fn pasids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.allocated.iter().copied().collect();
        v.extend(self.spaces.iter().filter_map(|s| s.pasid));
        v.sort();
        v.dedup();
        v.push(0xee);
        v
    }

    fn pick(&self, pick: usize) -> u32 {
        let v = self.pasids();
        v[pick % v.len()]
    }

    /// The PASID or the RID.
    fn pick_at(&self, pick: usize) -> Option<u32> {
        let v = self.pasids();
        if pick % (v.len() + 1) == v.len() {
            None
        } else {
            Some(v[pick % (v.len() + 1)])
        }
    }

    /// An attachment changed: its epoch moves on.
    fn change(&mut self, dev: usize, at: Option<u32>, slot: Option<Slot>) -> (usize, Option<u32>) {
        match slot {
            Some(s) => {
                self.slots.insert((dev, at), s);
            }
            None => {
                self.slots.remove(&(dev, at));
            }
        }
        *self.epochs.entry((dev, at)).or_default() += 1;
        (dev, at)
    }
}

struct World<'a> {
    c: Box<Core<'a>>,
    m: Model,
    object: FaultObjectId,
    paging: [DomainId; 2],
}

impl World<'_> {
    fn domain(&self, dev: usize, dom: u8) -> (DomainId, Slot) {
        match dom {
            0 => (self.paging[DEVS[dev].instance as usize], Slot::Paging),
            1 => (DomainId::IDENTITY, Slot::Identity),
            _ => (DomainId::BLOCKED, Slot::Blocked),
        }
    }

    fn fail_next(&mut self, fail: bool) {
        if fail {
            self.c.driver_mut().fail_attach = Some(Error::Timeout { what: "injected" });
        }
    }

    fn inject(&mut self, dev: usize, at: Option<u32>, kind: FaultKind, group: u16, last: bool) {
        let d = DEVS[dev];
        let f = Fault {
            instance: d.instance,
            device: d.id,
            pasid: at,
            addr: 0x1000 * u64::from(group),
            access: Access::READ,
            group,
            last,
            kind,
            reason: 0,
        };
        let inj = Injected {
            dev,
            at,
            epoch: self.m.epoch(dev, at),
            target: self.m.target(dev, at),
            kind,
            last,
        };
        self.m.injected.entry(group).or_default().push(inj);
        self.c.driver_mut().inject(f);
    }

    fn new_group(&mut self) -> u16 {
        self.m.next_group += 1;
        self.m.next_group
    }

    /// Check what handlers saw and what the driver answered during a step,
    /// against the model as it was before the step's changes.
    fn check_deliveries(&mut self) -> Result<(), TestCaseError> {
        for (cookie, group) in SEEN.with(|s| s.take()) {
            for f in &group {
                let inj = self.m.injected[&f.group]
                    .iter()
                    .find(|i| i.last == f.last)
                    .copied()
                    .unwrap();
                prop_assert_eq!(
                    inj.epoch,
                    self.m.epoch(inj.dev, inj.at),
                    "fault {:?} delivered after its attachment ended",
                    f
                );
                prop_assert_eq!(
                    inj.target,
                    Target::Handler(cookie),
                    "{:?} to the wrong handler",
                    f
                );
            }
            let last = group[group.len() - 1];
            if last.kind != FaultKind::Unrecoverable {
                self.m.handled.insert(last.group);
            }
        }
        let calls = &self.c.driver().calls[self.m.calls_seen..];
        for call in calls {
            if let Call::Respond {
                device,
                pasid,
                group,
                response,
                ..
            } = *call
            {
                let inj = self.m.injected.get(&group).expect("a group the test made");
                let last = inj.iter().find(|i| i.last).expect("answered at its last");
                prop_assert!(
                    last.kind != FaultKind::Unrecoverable,
                    "an event was answered"
                );
                prop_assert_eq!((DEVS[last.dev].id, last.at), (device, pasid));
                prop_assert!(
                    self.m.answered.insert(group, response).is_none(),
                    "group {} answered twice",
                    group
                );
                self.m.answered_now.insert(group);
                if response == Response::Success {
                    prop_assert!(self.m.handled.contains(&group), "Success nobody gave");
                }
            }
        }
        self.m.calls_seen = self.c.driver().calls.len();
        Ok(())
    }

    /// Every complete group raised under an ended attachment was answered,
    /// and what the change itself answered was `Invalid` (a handler of the
    /// old attachment must not see its page requests while it ends).
    fn check_ended(&mut self, ended: &[(usize, Option<u32>)]) -> Result<(), TestCaseError> {
        for g in std::mem::take(&mut self.m.answered_now) {
            let Some(last) = self.m.injected[&g].iter().find(|i| i.last) else {
                continue;
            };
            if ended.contains(&(last.dev, last.at)) && last.epoch < self.m.epoch(last.dev, last.at)
            {
                prop_assert!(
                    self.m.answered[&g] != Response::Success,
                    "group {} of an ending attachment answered Success",
                    g
                );
            }
        }
        for (g, faults) in &self.m.injected {
            for inj in faults
                .iter()
                .filter(|i| i.last && i.kind != FaultKind::Unrecoverable)
            {
                let stale =
                    ended.contains(&(inj.dev, inj.at)) && inj.epoch < self.m.epoch(inj.dev, inj.at);
                if stale {
                    prop_assert!(
                        self.m.answered.contains_key(g),
                        "group {} of an ended attachment is unanswered",
                        g
                    );
                }
            }
        }
        Ok(())
    }

    /// The core's attachments are the model's.
    fn check_attachments(&self) -> Result<(), TestCaseError> {
        let pasids = self.m.pasids();
        for (dev, &id) in DEVS.iter().enumerate() {
            for at in pasids.iter().map(|p| Some(*p)).chain([None]) {
                let got = self.c.attached(id, at).unwrap();
                let want = self.m.slot(dev, at);
                let ok = match (got, want) {
                    (None, None) => true,
                    (Some(d), Some(Slot::Blocked)) => d == DomainId::BLOCKED,
                    (Some(d), Some(Slot::Identity)) => d == DomainId::IDENTITY,
                    (Some(d), Some(Slot::Paging)) => d == self.paging[DEVS[dev].instance as usize],
                    (Some(d), Some(Slot::Sva { space })) => self
                        .c
                        .space_domains(self.m.spaces[space].id)
                        .unwrap()
                        .contains(&d),
                    _ => false,
                };
                prop_assert!(
                    ok,
                    "dev {} at {:?}: core {:?}, model {:?}",
                    dev,
                    at,
                    got,
                    want
                );
            }
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let busy = |r: &Result<(), Error>| matches!(r, Err(Error::Busy { .. }));
        let injected = Err(Error::Timeout { what: "injected" });
        let mut ended = vec![];
        match op {
            Op::Bind { dev, space, fail } => {
                let sp = &self.m.spaces[space];
                let existing = self
                    .m
                    .bonds
                    .iter()
                    .position(|b| b.dev == dev && b.space == space && b.at.is_some());
                let conflict = sp
                    .pasid
                    .is_some_and(|p| self.m.slot(dev, Some(p)).is_some());
                let id = sp.id;
                let would_change = existing.is_none() && !conflict;
                self.fail_next(fail && would_change);
                let r = self.c.bind(DEVS[dev], id);
                self.check_deliveries()?;
                match (existing, conflict) {
                    (Some(i), _) => {
                        prop_assert_eq!(r, Ok(self.m.bonds[i].id));
                        self.m.bonds[i].users += 1;
                    }
                    (None, true) => prop_assert!(busy(&r.map(|_| ()))),
                    (None, false) if fail => {
                        prop_assert_eq!(r, Err(Error::Timeout { what: "injected" }))
                    }
                    (None, false) => {
                        let bond = r.unwrap();
                        let p = self.c.space_pasid(id).unwrap().unwrap();
                        prop_assert!(sp_fresh_or_same(&self.m.spaces[space], p));
                        prop_assert!(!self.m.allocated.contains(&p), "an embedder's PASID");
                        self.m.spaces[space].pasid = Some(p);
                        ended.push(self.m.change(dev, Some(p), Some(Slot::Sva { space })));
                        self.m.bonds.push(ModelBond {
                            id: bond,
                            dev,
                            space,
                            at: Some(p),
                            users: 1,
                        });
                    }
                }
            }
            Op::BindDevice { dev, space } => {
                let id = self.m.spaces[space].id;
                let existing = self
                    .m
                    .bonds
                    .iter()
                    .position(|b| b.dev == dev && b.space == space && b.at.is_none());
                let r = self.c.bind_device(DEVS[dev], id);
                self.check_deliveries()?;
                match existing {
                    Some(i) => {
                        prop_assert_eq!(r, Ok(self.m.bonds[i].id));
                        self.m.bonds[i].users += 1;
                    }
                    None if self.m.slot(dev, None) != Some(Slot::Blocked) => {
                        prop_assert!(busy(&r.map(|_| ())))
                    }
                    None => {
                        let bond = r.unwrap();
                        ended.push(self.m.change(dev, None, Some(Slot::Sva { space })));
                        self.m.bonds.push(ModelBond {
                            id: bond,
                            dev,
                            space,
                            at: None,
                            users: 1,
                        });
                    }
                }
            }
            Op::Unbind { pick, fail } => {
                if self.m.bonds.is_empty() {
                    return Ok(());
                }
                let i = pick % self.m.bonds.len();
                let b = self.m.bonds[i];
                self.fail_next(fail && b.users == 1);
                let r = self.c.unbind(b.id);
                self.check_deliveries()?;
                if b.users > 1 {
                    prop_assert_eq!(r, Ok(()));
                    self.m.bonds[i].users -= 1;
                } else if fail {
                    prop_assert_eq!(r, injected);
                } else {
                    prop_assert_eq!(r, Ok(()));
                    self.m.bonds.remove(i);
                    let slot = b.at.is_none().then_some(Slot::Blocked);
                    ended.push(self.m.change(b.dev, b.at, slot));
                }
            }
            Op::AttachPasid {
                dev,
                pick,
                dom,
                fail,
            } => {
                let p = self.m.pick(pick);
                let (id, slot) = self.domain(dev, dom);
                let known = self.m.pasids().contains(&p) && p != 0xee;
                let same = self.m.slot(dev, Some(p)) == Some(slot);
                self.fail_next(fail && known && !same && !self.m.bonded(dev, Some(p)));
                let r = self.c.attach_pasid(DEVS[dev], p, id);
                self.check_deliveries()?;
                if !known {
                    prop_assert_eq!(r, Err(Error::BadPasid { pasid: p }));
                } else if self.m.bonded(dev, Some(p)) {
                    prop_assert!(busy(&r));
                } else if same {
                    prop_assert_eq!(r, Ok(()));
                } else if fail {
                    prop_assert_eq!(r, injected);
                } else {
                    prop_assert_eq!(r, Ok(()));
                    ended.push(self.m.change(dev, Some(p), Some(slot)));
                }
            }
            Op::AttachRid { dev, dom, fail } => {
                let (id, slot) = self.domain(dev, dom);
                let same = self.m.slot(dev, None) == Some(slot);
                let bonded = self.m.bonded(dev, None);
                self.fail_next(fail && !same && !bonded);
                let r = self.c.attach(DEVS[dev], id);
                self.check_deliveries()?;
                if bonded {
                    prop_assert!(busy(&r));
                } else if same {
                    prop_assert_eq!(r, Ok(()));
                } else if fail {
                    prop_assert_eq!(r, injected);
                } else {
                    prop_assert_eq!(r, Ok(()));
                    ended.push(self.m.change(dev, None, Some(slot)));
                }
            }
            Op::DetachPasid { dev, pick, fail } => {
                let p = self.m.pick(pick);
                let present = self.m.slot(dev, Some(p)).is_some();
                let bonded = self.m.bonded(dev, Some(p));
                self.fail_next(fail && present && !bonded);
                let r = self.c.detach_pasid(DEVS[dev], p);
                self.check_deliveries()?;
                if !present {
                    prop_assert_eq!(
                        r,
                        Err(Error::NotFound {
                            what: Object::Attachment
                        })
                    );
                } else if bonded {
                    prop_assert!(busy(&r));
                } else if fail {
                    prop_assert_eq!(r, injected);
                } else {
                    prop_assert_eq!(r, Ok(()));
                    ended.push(self.m.change(dev, Some(p), None));
                }
            }
            Op::AllocPasid { dev } => {
                if self.m.allocated.len() >= 4 {
                    return Ok(());
                }
                let p = self.c.alloc_pasid(DEVS[dev]).unwrap();
                prop_assert!(
                    !self.m.pasids().contains(&p),
                    "PASID {} handed out twice",
                    p
                );
                prop_assert!(
                    self.m.slots.keys().all(|(_, at)| *at != Some(p)),
                    "PASID {} still attached",
                    p
                );
                self.m.allocated.insert(p);
            }
            Op::FreePasid { pick } => {
                let p = self.m.pick(pick);
                let r = self.c.free_pasid(p);
                let attached = self.m.slots.keys().any(|(_, at)| *at == Some(p));
                let owned = self.m.spaces.iter().any(|s| s.pasid == Some(p));
                if !self.m.allocated.contains(&p) && !owned {
                    prop_assert_eq!(r, Err(Error::BadPasid { pasid: p }));
                } else if attached || owned {
                    prop_assert!(busy(&r));
                } else {
                    prop_assert_eq!(r, Ok(()));
                    self.m.allocated.remove(&p);
                }
            }
            Op::Teardown { space } => {
                let sp = &self.m.spaces[space];
                let id = sp.id;
                let outside = sp.pasid.is_some_and(|p| {
                    (0..3).any(|d| self.m.slot(d, Some(p)).is_some() && !self.m.bonded(d, Some(p)))
                });
                let r = self.c.teardown_space(id);
                self.check_deliveries()?;
                if outside {
                    prop_assert!(busy(&r));
                } else {
                    prop_assert_eq!(r, Ok(()));
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        self.m.bonds.iter().partition(|b| b.space == space);
                    self.m.bonds = kept;
                    for b in gone {
                        let slot = b.at.is_none().then_some(Slot::Blocked);
                        ended.push(self.m.change(b.dev, b.at, slot));
                    }
                    // A new space takes its place: the next owner of its PASID.
                    self.m.next_cookie += 1;
                    let cookie = self.m.next_cookie;
                    self.m.spaces[space] = Space {
                        id: self
                            .c
                            .register_space(space_desc(cookie), handler(cookie))
                            .unwrap(),
                        cookie,
                        pasid: None,
                    };
                }
            }
            Op::Partial { dev, pick } => {
                let at = self.m.pick_at(pick);
                let g = self.new_group();
                self.m.open.insert((dev, at), g);
                self.inject(dev, at, FaultKind::PageRequest, g, false);
            }
            Op::Last { dev, pick, close } => {
                let at = self.m.pick_at(pick);
                let g = match self.m.open.remove(&(dev, at)) {
                    Some(g) if close => g,
                    _ => self.new_group(),
                };
                self.inject(dev, at, FaultKind::PageRequest, g, true);
            }
            Op::Event { dev, pick } => {
                let at = self.m.pick_at(pick);
                let g = self.new_group();
                self.inject(dev, at, FaultKind::Unrecoverable, g, true);
            }
            Op::Process => {
                self.c.process_faults().unwrap();
                self.check_deliveries()?;
            }
            Op::Read => {
                let blank = UserFault {
                    cookie: 0,
                    fault: Fault::EMPTY,
                };
                let mut out = [blank; 64];
                let n = self.c.fault_read(self.object, &mut out).unwrap();
                for u in &out[..n] {
                    let f = u.fault;
                    let inj = self.m.injected[&f.group]
                        .iter()
                        .find(|i| i.last == f.last)
                        .copied()
                        .unwrap();
                    prop_assert_eq!(inj.epoch, self.m.epoch(inj.dev, inj.at), "read late");
                    prop_assert_eq!(inj.target, Target::Object);
                    if f.last && f.kind != FaultKind::Unrecoverable {
                        self.m.read.insert(u.cookie, f.group);
                    }
                }
            }
            Op::Respond { pick, success } => {
                let Some((&cookie, &g)) = self.m.read.iter().nth(pick % self.m.read.len().max(1))
                else {
                    return Ok(());
                };
                let response = if success {
                    Response::Success
                } else {
                    Response::Invalid
                };
                if success {
                    self.m.handled.insert(g);
                }
                let r = self.c.fault_respond(self.object, cookie, response);
                self.check_deliveries()?;
                self.m.read.remove(&cookie);
                match self.m.answered.get(&g) {
                    Some(&got) if got == response && r.is_ok() => {}
                    Some(_) => prop_assert_eq!(
                        r,
                        Err(Error::NotFound {
                            what: Object::FaultCookie
                        }),
                        "a group answered already must refuse its cookie"
                    ),
                    None => prop_assert!(false, "respond sent nothing"),
                }
            }
        }
        self.check_deliveries()?;
        self.check_ended(&ended)?;
        self.check_attachments()
    }

    /// Tear everything down and check that nothing is left.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for space in 0..2 {
            let at_p = self.m.spaces[space].pasid;
            if let Some(p) = at_p {
                for (d, &id) in DEVS.iter().enumerate() {
                    if self.m.slot(d, Some(p)).is_some() && !self.m.bonded(d, Some(p)) {
                        self.c.detach_pasid(id, p).unwrap();
                    }
                }
            }
            self.c.teardown_space(self.m.spaces[space].id).unwrap();
        }
        for id in DEVS {
            self.c.detach(id).unwrap();
            for p in self.m.pasids() {
                let _ = self.c.detach_pasid(id, p);
            }
        }
        for p in std::mem::take(&mut self.m.allocated) {
            self.c.free_pasid(p).unwrap();
        }
        self.c.process_faults().unwrap();
        self.m.bonds.clear();
        self.check_deliveries()?;
        for (g, faults) in &self.m.injected {
            let complete = faults
                .iter()
                .any(|i| i.last && i.kind != FaultKind::Unrecoverable);
            prop_assert_eq!(
                self.m.answered.contains_key(g),
                complete,
                "group {} answered {:?}",
                g,
                self.m.answered.get(g)
            );
        }
        for d in self.paging {
            self.c.free_domain(d).unwrap();
        }
        self.c.free_fault_object(self.object).unwrap();
        prop_assert_eq!(self.c.pasids().in_use(), 0);
        prop_assert!(
            self.c.driver().live.is_empty(),
            "{:?}",
            self.c.driver().live
        );
        prop_assert!(
            self.c.driver().hw.values().all(|s| *s == Seen::Blocked),
            "{:?}",
            self.c.driver().hw
        );
        Ok(())
    }
}

fn sp_fresh_or_same(s: &Space, p: u32) -> bool {
    s.pasid.is_none_or(|q| q == p)
}

fn space_desc(cookie: usize) -> AddressSpace {
    AddressSpace {
        root: PhysAddr(0x100_0000 * cookie as u64),
        format: CpuFormat::X86_64 { five_level: false },
        asid: 0,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    SEEN.with(|s| s.take());
    let pool = TestHal::new(256);
    {
        let mock = Mock::new(2).with_pool(&pool);
        let devs: Vec<(DeviceId, u8, bool)> = DEVS.iter().map(|d| (*d, 8, false)).collect();
        let mut c: Box<Core<'_>> = core_over(&pool, mock, &devs);
        let object = c.alloc_fault_object().unwrap();
        let p0 = c.alloc_paging(DEVS[0], PagingFlags::empty()).unwrap();
        let p1 = c.alloc_paging(DEVS[2], PagingFlags::empty()).unwrap();
        c.set_fault_target(p0, FaultTarget::Object(object)).unwrap();
        c.set_fault_target(p1, handler(PAGING1)).unwrap();
        let spaces = (0..2)
            .map(|i| Space {
                id: c
                    .register_space(space_desc(200 + i), handler(200 + i))
                    .unwrap(),
                cookie: 200 + i,
                pasid: None,
            })
            .collect();
        let calls_seen = c.driver().calls.len();
        let mut w = World {
            c,
            m: Model {
                slots: BTreeMap::new(),
                epochs: BTreeMap::new(),
                bonds: vec![],
                spaces,
                allocated: BTreeSet::new(),
                injected: BTreeMap::new(),
                open: BTreeMap::new(),
                next_group: 0,
                next_cookie: 300,
                answered: BTreeMap::new(),
                handled: BTreeSet::new(),
                read: BTreeMap::new(),
                calls_seen,
                answered_now: BTreeSet::new(),
            },
            object,
            paging: [p0, p1],
        };
        for op in ops {
            w.step(op)?;
        }
        w.finish()?;
    }
    prop_assert_eq!(pool.counts().live_pages(), 0, "table pages leaked");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn attachment_life_cycles_deliver_each_fault_to_its_own_owner_once(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        run(ops)?;
    }
}
