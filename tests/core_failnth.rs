//! Fail-nth sweeps of the core: every operation that reaches an allocation
//! point is run with allocation N failing, N = 1, 2, ... until it succeeds,
//! each time in a freshly built world. The allocation points are the mock
//! driver's domain allocations (`fail_alloc_at`), the pool's table pages
//! (`fail_nth`) and, for a nested attach, the cache-tag slots of the nested
//! domain and its parent. Then every fixed capacity is filled and the next
//! request must be `Exhausted` and change nothing.
//!
//! A failing run must return its error and leave the fingerprint as it was:
//! the mock's live domains and its model of what each (instance, device,
//! PASID) translates through, the pool's live pages bit for bit, what is
//! attached at every device's RID and PASIDs, each domain's kind, users and
//! cache tags, the PASIDs in use, every space's PASID and SVA domains, every
//! bond. Driver calls are allowed only if they cancel out: a domain
//! allocation the core gives back (`Alloc` followed by `Free` of the same
//! tag) and attaches the mock refused `Incompatible`; anything else
//! (attach, detach, invalidation, wait, response) fails the sweep. The
//! refused allocation itself is not recorded by the mock. After each run the
//! world is torn down: no live domain in the mock, no live page in the pool,
//! no PASID in use.

mod common;

use std::collections::BTreeMap;

use common::TestHal;
use common::mock::{
    BondTuple, Call, Mock, Seen, TestCaps, VTD_S1, core_over, vtd_nested_caps, vtd_s1,
};
use iommu::core::{
    AddressSpace, BondId, CpuFormat, DeviceId, DeviceInfo, DomainId, DomainKind, FaultTarget,
    Iommu, PagingFlags, SpaceId,
};
use iommu::pgtable::Prot;
use iommu::{Error, Object};
use iommu::{Iova, PhysAddr};

type Core<'a, const D: usize, const V: usize> = Iommu<Mock<'a>, &'a TestHal, TestCaps<D, V>>;

const POOL_PAGES: usize = 256;
/// PASIDs the fingerprint looks at (every test stays below).
const PASIDS: u32 = 40;

/// What a test made, so the fingerprint and the teardown can find it.
#[derive(Clone, Debug, Default)]
struct World {
    devs: Vec<DeviceId>,
    /// Paging and nested domains (SVA domains are found through spaces).
    domains: Vec<DomainId>,
    spaces: Vec<SpaceId>,
    bonds: Vec<BondId>,
    /// PASIDs taken with `alloc_pasid`.
    pasids: Vec<u32>,
}

/// (instance, device, PASID) and what the mock translates it through.
type HwEntry = ((u16, u32, Option<u32>), Seen);
/// A domain's kind, users and sorted cache tags.
type DomainState = Result<(DomainKind, u32, Vec<String>), Error>;
/// A space's PASID and SVA domains.
type SpaceState = Result<(Option<u32>, Vec<DomainId>), Error>;

#[derive(Debug, PartialEq)]
struct Fingerprint {
    live: Vec<(u16, u32)>,
    hw: Vec<HwEntry>,
    pages: BTreeMap<u64, Vec<u64>>,
    attached: Vec<(DeviceId, Option<u32>, DomainId)>,
    domains: Vec<(DomainId, DomainState)>,
    in_use: u32,
    spaces: Vec<SpaceState>,
    bonds: Vec<Result<iommu::core::BondInfo, Error>>,
    devices: Vec<Result<DeviceInfo, Error>>,
}

fn fingerprint<const D: usize, const V: usize>(
    c: &Core<'_, D, V>,
    pool: &TestHal,
    w: &World,
) -> Fingerprint {
    let mut attached = Vec::new();
    for d in &w.devs {
        for p in core::iter::once(None).chain((1..PASIDS).map(Some)) {
            if let Ok(Some(id)) = c.attached(*d, p) {
                attached.push((*d, p, id));
            }
        }
    }
    let mut ids = w.domains.clone();
    for s in &w.spaces {
        if let Ok(ds) = c.space_domains(*s) {
            ids.extend_from_slice(ds);
        }
    }
    let domains = ids
        .iter()
        .map(|id| {
            let info = c.domain_kind(*id).and_then(|k| {
                let mut tags: Vec<String> = c.domain_tags(*id)?.map(|t| format!("{t:?}")).collect();
                tags.sort();
                Ok((k, c.domain_users(*id)?, tags))
            });
            (*id, info)
        })
        .collect();
    Fingerprint {
        live: c.driver().live.iter().copied().collect(),
        hw: c.driver().hw.iter().map(|(k, v)| (*k, *v)).collect(),
        pages: pool.snapshot(),
        attached,
        domains,
        in_use: c.pasids().in_use(),
        spaces: w
            .spaces
            .iter()
            .map(|s| Ok((c.space_pasid(*s)?, c.space_domains(*s)?.to_vec())))
            .collect(),
        bonds: w.bonds.iter().map(|b| c.bond_info(*b)).collect(),
        devices: w.devs.iter().map(|d| c.device(*d)).collect(),
    }
}

/// The calls of a failed run must cancel out (see the file's comment).
fn check_calls<const D: usize, const V: usize>(what: &str, c: &Core<'_, D, V>) {
    let calls = &c.driver().calls;
    for (i, call) in calls.iter().enumerate() {
        let ok = match *call {
            Call::Alloc { instance, tag, .. } => calls[i + 1..].contains(&Call::Free { instance, tag }),
            Call::Free { instance, tag } => calls[..i].iter().any(
                |c| matches!(*c, Call::Alloc { instance: j, tag: t, .. } if j == instance && t == tag),
            ),
            Call::Attach { new, .. } => new
                .tag()
                .is_some_and(|t| c.driver().incompatible.contains(&t)),
            _ => false,
        };
        assert!(
            ok,
            "{what}: a failed run made {call:?}; all calls: {calls:?}"
        );
    }
}

/// Undo everything a world holds and check nothing leaked.
fn teardown<const D: usize, const V: usize>(
    what: &str,
    mut c: Box<Core<'_, D, V>>,
    pool: &TestHal,
    w: &World,
) {
    for s in &w.spaces {
        match c.teardown_space(*s) {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("{what}: teardown_space: {e:?}"),
        }
    }
    for d in &w.devs {
        c.detach(*d).unwrap();
        for p in 1..PASIDS {
            if c.attached(*d, Some(p)).unwrap().is_some() {
                c.detach_pasid(*d, p).unwrap();
            }
        }
    }
    let mut left = w.domains.clone();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|d| match c.free_domain(*d) {
            Ok(()) | Err(Error::NotFound { .. }) => false,
            Err(Error::Busy { .. }) => true,
            Err(e) => panic!("{what}: free_domain: {e:?}"),
        });
        assert!(left.len() < before, "{what}: cannot free {left:?}");
    }
    for p in &w.pasids {
        c.free_pasid(*p).unwrap();
    }
    for d in &w.devs {
        c.remove_device(*d).unwrap();
    }
    assert!(
        c.driver().live.is_empty(),
        "{what}: driver domains leaked: {:?}",
        c.driver().live
    );
    assert!(
        c.driver().hw.values().all(|s| *s == Seen::Blocked),
        "{what}: still attached: {:?}",
        c.driver().hw
    );
    assert_eq!(c.pasids().in_use(), 0, "{what}: PASIDs leaked");
    drop(c);
    assert_eq!(pool.counts().live_pages(), 0, "{what}: table pages leaked");
}

type Setup<const D: usize, const V: usize> = fn(&TestHal) -> (Box<Core<'_, D, V>>, World);
type Op<const D: usize, const V: usize> = fn(&mut Core<'_, D, V>, &mut World) -> Result<(), Error>;

/// How many runs failed, per allocation point kind.
#[derive(Debug, PartialEq)]
struct Swept {
    driver: usize,
    pages: usize,
}

/// Run `op` in a fresh world from `setup` with driver allocation N failing,
/// N = 1.. until it succeeds; then the same with table page N.
fn sweep<const D: usize, const V: usize>(what: &str, setup: Setup<D, V>, op: Op<D, V>) -> Swept {
    let mut swept = Swept {
        driver: 0,
        pages: 0,
    };
    for pages in [false, true] {
        for n in 1.. {
            assert!(n < 64, "{what}: never succeeds");
            let pool = TestHal::new(POOL_PAGES);
            let (mut c, mut w) = setup(&pool);
            let before = fingerprint(&c, &pool, &w);
            let w_before = format!("{w:?}");
            c.driver_mut().clear();
            let (allocs, attempts) = (c.driver().allocs, pool.attempts());
            if pages {
                pool.fail_nth(n as u64);
            } else {
                c.driver_mut().fail_alloc_at = Some(allocs + n);
            }
            let r = op(&mut c, &mut w);
            pool.clear_failures();
            c.driver_mut().fail_alloc_at = None;
            let tried = if pages {
                (pool.attempts() - attempts) as usize
            } else {
                c.driver().allocs - allocs
            };
            let label = format!(
                "{what}, {} {n} failing",
                if pages { "page" } else { "driver allocation" }
            );
            match r {
                Ok(()) => {
                    assert!(tried < n, "{label}: succeeded although it was reached");
                    teardown(&label, c, &pool, &w);
                    break;
                }
                Err(e) => {
                    assert_eq!(e, Error::NoMemory, "{label}");
                    assert_eq!(tried, n, "{label}: failed before reaching it");
                    assert_eq!(fingerprint(&c, &pool, &w), before, "{label}: state changed");
                    assert_eq!(format!("{w:?}"), w_before);
                    check_calls(&label, &c);
                    if pages {
                        swept.pages += 1;
                    } else {
                        swept.driver += 1;
                    }
                    teardown(&label, c, &pool, &w);
                }
            }
        }
    }
    swept
}

// ----- the world most sweeps start from ---------------------------------------

fn space(n: u32) -> AddressSpace {
    AddressSpace {
        root: PhysAddr(0x8000_0000 + n as u64 * 0x1000),
        format: CpuFormat::X86_64 { five_level: false },
        asid: n,
    }
}

fn new_core<const D: usize, const V: usize>(pool: &TestHal, instances: u16) -> Box<Core<'_, D, V>> {
    let mut mock = Mock::new(instances).with_pool(pool);
    mock.nested = Some(vtd_nested_caps());
    core_over(pool, mock, &[])
}

fn register<const D: usize, const V: usize>(
    c: &mut Core<'_, D, V>,
    w: &mut World,
    instance: u16,
    id: u32,
    ats: bool,
) -> DeviceId {
    let dev = DeviceId { instance, id };
    c.register_device(DeviceInfo {
        dev,
        pasid_bits: 8,
        ats,
    })
    .unwrap();
    w.devs.push(dev);
    dev
}

const B: usize = 1;
const X: usize = 2;

/// Devices A (instance 0, ATS), B (instance 0), X (instance 1); a nest-parent
/// paging domain at A's RID with a mapping; another paging domain at a PASID
/// of B; space 0 bound to A; space 1 registered, unbound.
fn populated(pool: &TestHal) -> (Box<Core<'_, 16, 24>>, World) {
    let mut c = new_core(pool, 2);
    let mut w = World::default();
    let a = register(&mut c, &mut w, 0, 0x10, true);
    let b = register(&mut c, &mut w, 0, 0x18, false);
    register(&mut c, &mut w, 1, 0x10, false);
    let parent = c.alloc_paging(a, PagingFlags::NEST_PARENT).unwrap();
    w.domains.push(parent);
    c.attach(a, parent).unwrap();
    c.map(
        parent,
        Iova(0x10_0000),
        PhysAddr(0x20_0000),
        0x4000,
        Prot::READ | Prot::WRITE,
    )
    .unwrap();
    let other = c.alloc_paging(b, PagingFlags::empty()).unwrap();
    w.domains.push(other);
    let q = c.alloc_pasid(b).unwrap();
    w.pasids.push(q);
    c.attach_pasid(b, q, other).unwrap();
    let s0 = c.register_space(space(0), FaultTarget::None).unwrap();
    w.bonds.push(c.bind(a, s0).unwrap());
    w.spaces.push(s0);
    w.spaces
        .push(c.register_space(space(1), FaultTarget::None).unwrap());
    (c, w)
}

/// [`populated`], with the mock refusing space 0's SVA domain.
fn populated_incompatible(pool: &TestHal) -> (Box<Core<'_, 16, 24>>, World) {
    let (mut c, w) = populated(pool);
    let d = c.space_domains(w.spaces[0]).unwrap()[0];
    let t = c.domain_hw(d).unwrap().tag;
    c.driver_mut().incompatible.insert(t);
    (c, w)
}

#[test]
fn alloc_paging() {
    let s = sweep("alloc_paging", populated, |c, w| {
        let d = c.alloc_paging(w.devs[B], PagingFlags::empty())?;
        w.domains.push(d);
        Ok(())
    });
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 1
        },
        "the domain, then its root table"
    );
}

#[test]
fn alloc_paging_on_another_instance() {
    let s = sweep("alloc_paging (instance 1)", populated, |c, w| {
        let d = c.alloc_paging(
            w.devs[X],
            PagingFlags::NEST_PARENT | PagingFlags::DIRTY_TRACKING,
        )?;
        w.domains.push(d);
        Ok(())
    });
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 1
        }
    );
}

#[test]
fn alloc_nested() {
    let s = sweep("alloc_nested", populated, |c, w| {
        let d = c.alloc_nested(w.devs[B], w.domains[0], VTD_S1, &vtd_s1(0, 0x5000, 48, 0))?;
        w.domains.push(d);
        Ok(())
    });
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 0
        }
    );
}

#[test]
fn alloc_nested_and_attach_it() {
    let s = sweep("alloc_nested + attach", populated, |c, w| {
        let d = c.alloc_nested(w.devs[B], w.domains[0], VTD_S1, &vtd_s1(0, 0x5000, 48, 0))?;
        w.domains.push(d);
        c.attach(w.devs[B], d)
    });
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 0
        }
    );
}

#[test]
fn bind_fresh() {
    let s = sweep("bind (fresh space)", populated, |c, w| {
        w.bonds.push(c.bind(w.devs[B], w.spaces[1])?);
        Ok(())
    });
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 0
        }
    );
}

#[test]
fn bind_on_a_second_instance() {
    let s = sweep("bind (second instance)", populated, |c, w| {
        w.bonds.push(c.bind(w.devs[X], w.spaces[0])?);
        Ok(())
    });
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 0
        }
    );
}

#[test]
fn bind_after_an_incompatible_domain() {
    let s = sweep(
        "bind (existing domain refused)",
        populated_incompatible,
        |c, w| {
            w.bonds.push(c.bind(w.devs[B], w.spaces[0])?);
            Ok(())
        },
    );
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 0
        }
    );
}

#[test]
fn map_across_a_1g_boundary() {
    let s = sweep("map", populated, |c, w| {
        // 0x10_0000 is mapped: the L3 and GiB 0's L2 exist. New: GiB 0's
        // last L1, GiB 1's L2 and its first L1.
        c.map(
            w.domains[0],
            Iova(0x3fff_f000),
            PhysAddr(0x50_0000),
            0x2000,
            Prot::READ,
        )
    });
    assert_eq!(
        s,
        Swept {
            driver: 0,
            pages: 3
        }
    );
}

#[test]
fn map_into_a_fresh_domain() {
    let s = sweep("alloc_paging + map", populated, |c, w| {
        // A caller that gives the domain back when the map fails.
        let d = c.alloc_paging(w.devs[B], PagingFlags::empty())?;
        if let Err(e) = c.map(
            d,
            Iova(0x80_0000_0000),
            PhysAddr(0x50_0000),
            0x1000,
            Prot::READ | Prot::WRITE,
        ) {
            c.free_domain(d).unwrap();
            return Err(e);
        }
        w.domains.push(d);
        Ok(())
    });
    // Root, then L3, L2, L1.
    assert_eq!(
        s,
        Swept {
            driver: 1,
            pages: 4
        }
    );
}

// ----- a nested attach: its cache-tag slots ------------------------------------

/// A nested domain on a nest-parent, attached at the RIDs of `nested_users`
/// filler devices, the parent at `parent_users` more; the target device
/// (ATS) sits on a third paging domain.
fn nested_world(
    pool: &TestHal,
    nested_users: u32,
    parent_users: u32,
) -> (Box<Core<'_, 8, 40>>, World, DomainId) {
    let mut c = new_core(pool, 1);
    let mut w = World::default();
    let t = register(&mut c, &mut w, 0, 0x100, true);
    let parent = c.alloc_paging(t, PagingFlags::NEST_PARENT).unwrap();
    let nested = c
        .alloc_nested(t, parent, VTD_S1, &vtd_s1(0, 0x5000, 48, 0))
        .unwrap();
    let old = c.alloc_paging(t, PagingFlags::empty()).unwrap();
    w.domains.extend([nested, parent, old]);
    c.attach(t, old).unwrap();
    for i in 0..nested_users + parent_users {
        let f = register(&mut c, &mut w, 0, 0x200 + i, false);
        c.attach(f, if i < nested_users { nested } else { parent })
            .unwrap();
    }
    let count = |c: &Core<'_, 8, 40>, d| c.domain_tags(d).unwrap().count() as u32;
    assert_eq!(count(&c, nested), nested_users);
    assert_eq!(count(&c, parent), nested_users + parent_users);
    (c, w, nested)
}

#[test]
fn attach_nested_with_each_tag_slot_full_in_turn() {
    // The attach records, in order: the nested domain's IOTLB and device-TLB
    // tags, then the parent's nested-parent and device-TLB tags. Slot N is
    // the first that finds its domain full (16 tags).
    let fills = [(16, 0), (15, 0), (14, 2), (14, 1), (14, 0)];
    for (n, (nested_users, parent_users)) in fills.into_iter().enumerate() {
        let label = format!("nested attach, tag slot {} full", n + 1);
        let pool = TestHal::new(POOL_PAGES);
        let (mut c, w, nested) = nested_world(&pool, nested_users, parent_users);
        let t = w.devs[0];
        let before = fingerprint(&c, &pool, &w);
        c.driver_mut().clear();
        let r = c.attach(t, nested);
        if n + 1 == fills.len() {
            r.unwrap();
            assert_eq!(c.driver().calls.len(), 1, "{label}");
            assert_eq!(c.domain_tags(nested).unwrap().count(), 16);
            assert_eq!(c.domain_tags(w.domains[1]).unwrap().count(), 16);
        } else {
            assert_eq!(
                r,
                Err(Error::Exhausted {
                    what: Object::CacheTag
                }),
                "{label}"
            );
            assert_eq!(fingerprint(&c, &pool, &w), before, "{label}: state changed");
            assert!(
                c.driver().calls.is_empty(),
                "{label}: {:?}",
                c.driver().calls
            );
        }
        teardown(&label, c, &pool, &w);
    }
}

// ----- capacities ----------------------------------------------------------------

/// `op` must be refused `Exhausted { what }` and change nothing: no driver
/// call that does not cancel out, no page allocation attempt.
fn exhausted<const D: usize, const V: usize, T: core::fmt::Debug>(
    what: Object,
    c: &mut Core<'_, D, V>,
    pool: &TestHal,
    w: &World,
    op: impl FnOnce(&mut Core<'_, D, V>) -> Result<T, Error>,
) {
    let before = fingerprint(c, pool, w);
    c.driver_mut().clear();
    let attempts = pool.attempts();
    let r = op(c);
    assert_eq!(r.map(|_| ()), Err(Error::Exhausted { what }));
    assert_eq!(fingerprint(c, pool, w), before, "{what}: state changed");
    assert_eq!(pool.attempts(), attempts, "{what}: a page was asked for");
    check_calls(what.name(), c);
}

#[test]
fn domain_slots() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 4, 8>> = new_core(&pool, 2);
    let mut w = World::default();
    let a = register(&mut c, &mut w, 0, 0x10, true);
    let b = register(&mut c, &mut w, 0, 0x18, false);
    let x = register(&mut c, &mut w, 1, 0x10, false);
    let parent = c.alloc_paging(a, PagingFlags::NEST_PARENT).unwrap();
    c.attach(a, parent).unwrap();
    c.map(parent, Iova(0), PhysAddr(0x10_0000), 0x1000, Prot::READ)
        .unwrap();
    w.domains.push(parent);
    for _ in 0..3 {
        w.domains
            .push(c.alloc_paging(b, PagingFlags::empty()).unwrap());
    }
    let s = c.register_space(space(0), FaultTarget::None).unwrap();
    w.spaces.push(s);
    const SLOTS: Object = Object::Domain;
    exhausted(SLOTS, &mut c, &pool, &w, |c| {
        c.alloc_paging(x, PagingFlags::empty())
    });
    exhausted(SLOTS, &mut c, &pool, &w, |c| {
        c.alloc_nested(b, parent, VTD_S1, &vtd_s1(0, 0x5000, 48, 0))
    });
    exhausted(SLOTS, &mut c, &pool, &w, |c| c.bind(b, s));
    assert_eq!(c.space_pasid(s).unwrap(), None, "the fresh PASID went back");

    // One slot free: the first bind takes it, the second instance cannot.
    c.free_domain(w.domains.pop().unwrap()).unwrap();
    w.bonds.push(c.bind(b, s).unwrap());
    exhausted(SLOTS, &mut c, &pool, &w, |c| c.bind(x, s));
    assert!(
        c.space_pasid(s).unwrap().is_some(),
        "the space keeps its PASID"
    );
    teardown(SLOTS.name(), c, &pool, &w);
}

#[test]
fn device_slots() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 8, 4>> = new_core(&pool, 1);
    let mut w = World::default();
    for i in 0..4 {
        register(&mut c, &mut w, 0, i, i == 0);
    }
    let d = c.alloc_paging(w.devs[0], PagingFlags::empty()).unwrap();
    c.attach(w.devs[0], d).unwrap();
    w.domains.push(d);
    let fifth = DeviceInfo {
        dev: DeviceId {
            instance: 0,
            id: 99,
        },
        pasid_bits: 8,
        ats: false,
    };
    exhausted(Object::Device, &mut c, &pool, &w, |c| {
        c.register_device(fifth)
    });
    assert_eq!(
        c.device(fifth.dev),
        Err(Error::NotFound {
            what: Object::Device
        })
    );
    // A slot freed is a slot to use.
    let gone = w.devs.pop().unwrap();
    c.remove_device(gone).unwrap();
    c.register_device(fifth).unwrap();
    w.devs.push(fifth.dev);
    teardown("device slots", c, &pool, &w);
}

#[test]
fn bond_slots() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 16, 8>> = new_core(&pool, 1);
    let mut w = World::default();
    for i in 0..8 {
        register(&mut c, &mut w, 0, 0x10 + i, false);
    }
    for n in 0..8 {
        let s = c.register_space(space(n), FaultTarget::None).unwrap();
        w.spaces.push(s);
        for d in w.devs.clone() {
            w.bonds.push(c.bind(d, s).unwrap());
        }
    }
    assert_eq!(w.bonds.len(), 64);
    let s9 = c.register_space(space(9), FaultTarget::None).unwrap();
    w.spaces.push(s9);
    let d0 = w.devs[0];
    exhausted(Object::Bond, &mut c, &pool, &w, |c| c.bind(d0, s9));
    assert_eq!(c.space_pasid(s9).unwrap(), None);
    // Another user of an existing bond needs no slot.
    let again = c.bind(d0, w.spaces[0]).unwrap();
    assert_eq!(again, w.bonds[0]);
    assert_eq!(c.bond_info(again).unwrap().t().2, 2);
    c.unbind(again).unwrap();
    // One bond gone: the bind works.
    c.unbind(w.bonds[1]).unwrap();
    w.bonds.push(c.bind(d0, s9).unwrap());
    teardown("bond slots", c, &pool, &w);
}

#[test]
fn space_slots() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 8, 8>> = new_core(&pool, 1);
    let mut w = World::default();
    let a = register(&mut c, &mut w, 0, 0x10, false);
    for n in 0..16 {
        w.spaces
            .push(c.register_space(space(n), FaultTarget::None).unwrap());
    }
    w.bonds.push(c.bind(a, w.spaces[3]).unwrap());
    exhausted(Object::Space, &mut c, &pool, &w, |c| {
        c.register_space(space(16), FaultTarget::None)
    });
    teardown("address-space slots", c, &pool, &w);
}

#[test]
fn sva_domains_per_space() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 16, 8>> = new_core(&pool, 5);
    let mut w = World::default();
    for i in 0..5 {
        register(&mut c, &mut w, i, 0x10, false);
    }
    let s = c.register_space(space(0), FaultTarget::None).unwrap();
    w.spaces.push(s);
    for d in &w.devs[..4] {
        w.bonds.push(c.bind(*d, s).unwrap());
    }
    assert_eq!(c.space_domains(s).unwrap().len(), 4);
    let fifth = w.devs[4];
    exhausted(Object::SpaceDomain, &mut c, &pool, &w, |c| c.bind(fifth, s));
    assert!(c.driver().calls.is_empty());
    teardown("SVA domains of this address space", c, &pool, &w);
}

#[test]
fn pasid_attachments_per_device() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 8, 8>> = new_core(&pool, 1);
    let mut w = World::default();
    let a = register(&mut c, &mut w, 0, 0x10, false);
    let b = register(&mut c, &mut w, 0, 0x18, false);
    let d = c.alloc_paging(a, PagingFlags::empty()).unwrap();
    w.domains.push(d);
    // b binds the space first, so it has its PASID and a domain.
    let shared = c.register_space(space(0), FaultTarget::None).unwrap();
    w.spaces.push(shared);
    w.bonds.push(c.bind(b, shared).unwrap());
    let fresh = c.register_space(space(1), FaultTarget::None).unwrap();
    w.spaces.push(fresh);
    for _ in 0..16 {
        let p = c.alloc_pasid(a).unwrap();
        w.pasids.push(p);
        c.attach_pasid(a, p, d).unwrap();
    }
    let p = c.alloc_pasid(a).unwrap();
    w.pasids.push(p);
    const WHAT: Object = Object::Attachment;
    exhausted(WHAT, &mut c, &pool, &w, |c| c.attach_pasid(a, p, d));
    exhausted(WHAT, &mut c, &pool, &w, |c| c.bind(a, shared));
    // A fresh space allocates (and gives back) a domain and its PASID.
    exhausted(WHAT, &mut c, &pool, &w, |c| c.bind(a, fresh));
    assert_eq!(c.space_pasid(fresh).unwrap(), None);
    // Replacing what is at an attached PASID needs no new slot.
    c.attach_pasid(a, w.pasids[0], DomainId::IDENTITY).unwrap();
    teardown(WHAT.name(), c, &pool, &w);
}

#[test]
fn cache_tag_slots_per_domain() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 8, 24>> = new_core(&pool, 1);
    let mut w = World::default();
    for i in 0..17 {
        register(&mut c, &mut w, 0, 0x10 + i, false);
    }
    let d = c.alloc_paging(w.devs[0], PagingFlags::empty()).unwrap();
    w.domains.push(d);
    let s = c.register_space(space(0), FaultTarget::None).unwrap();
    w.spaces.push(s);
    for i in 0..16 {
        let dev = w.devs[i];
        c.attach(dev, d).unwrap();
        w.bonds.push(c.bind(dev, s).unwrap());
    }
    let last = w.devs[16];
    const WHAT: Object = Object::CacheTag;
    exhausted(WHAT, &mut c, &pool, &w, |c| c.attach(last, d));
    // A full SVA domain is not the end: bind allocates a second domain of
    // the same space for the 17th device.
    let first = c.space_domains(s).unwrap().to_vec();
    assert_eq!(first.len(), 1);
    w.bonds.push(c.bind(last, s).unwrap());
    let now = c.space_domains(s).unwrap().to_vec();
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], first[0]);
    assert_eq!(
        c.attached(last, c.space_pasid(s).unwrap()).unwrap(),
        Some(now[1])
    );
    teardown(WHAT.name(), c, &pool, &w);
}

#[test]
fn fault_object_slots() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 8, 8>> = new_core(&pool, 1);
    let w = World::default();
    let objs: Vec<_> = (0..4).map(|_| c.alloc_fault_object().unwrap()).collect();
    exhausted(Object::FaultObject, &mut c, &pool, &w, |c| {
        c.alloc_fault_object()
    });
    for o in objs {
        c.free_fault_object(o).unwrap();
    }
    teardown("fault objects", c, &pool, &w);
}

#[test]
fn instance_slots() {
    let pool = TestHal::new(POOL_PAGES);
    let mut c: Box<Core<'_, 8, 8>> = Box::new(Iommu::new(Mock::new(9).with_pool(&pool), &pool));
    for i in 0..8 {
        c.add_instance(i).unwrap();
    }
    let w = World::default();
    exhausted(Object::Instance, &mut c, &pool, &w, |c| c.add_instance(8));
    assert!(c.driver().calls.is_empty(), "not even probed");
    // The eight can still take devices; the ninth cannot.
    let dev = |instance| DeviceInfo {
        dev: DeviceId { instance, id: 1 },
        pasid_bits: 0,
        ats: false,
    };
    c.register_device(dev(7)).unwrap();
    assert_eq!(
        c.register_device(dev(8)),
        Err(Error::NotFound {
            what: Object::Instance
        })
    );
    c.remove_device(dev(7).dev).unwrap();
    teardown("instances", c, &pool, &w);
}
