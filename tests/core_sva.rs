//! Shared virtual addressing in the core, over the recording mock driver:
//! the space's one global PASID, bonds and their user counts, SVA domain
//! reuse per instance (and a new one when the driver refuses), unbind and
//! teardown, refusals that change nothing, and range invalidation.

mod common;

use common::TestHal;
use common::mock::{BondTuple, Call, Mock, Seen, TestCaps, core_over};
use iommu::core::{
    AddressSpace, CacheTag, CpuFormat, DeviceId, DeviceInfo, DomainId, DomainKind, FaultTarget,
    Iommu, PagingFlags, SpaceId, TagKind,
};
use iommu::{Error, Object};
use iommu::{Iova, PhysAddr};

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<16, 16>>;

/// A core over a two-instance mock, both instances added, no calls recorded.
fn core(pool: &TestHal) -> Box<Core<'_>> {
    let mut c = core_over(pool, Mock::new(2).with_pool(pool), &[]);
    c.driver_mut().clear();
    c
}

fn dev(c: &mut Core<'_>, instance: u16, id: u32, pasid_bits: u8, ats: bool) -> DeviceId {
    let dev = DeviceId { instance, id };
    c.register_device(DeviceInfo {
        dev,
        pasid_bits,
        ats,
    })
    .unwrap();
    dev
}

fn space(n: u32) -> AddressSpace {
    AddressSpace {
        root: PhysAddr(0x8000_0000 + n as u64 * 0x1000),
        format: CpuFormat::X86_64 { five_level: false },
        asid: n,
    }
}

fn tag_of(c: &Core<'_>, d: DomainId) -> u32 {
    c.domain_hw(d).unwrap().tag
}

fn sva_seen(c: &Core<'_>, d: DomainId, n: u32) -> Seen {
    Seen::Sva {
        tag: tag_of(c, d),
        root: (space(n).root).0,
    }
}

fn attach_call(dev: DeviceId, pasid: Option<u32>, new: Seen, old: Seen) -> Call {
    Call::Attach {
        instance: dev.instance,
        device: dev.id,
        pasid,
        new,
        old,
    }
}

fn iotlb(dev: DeviceId, tag: u32, pasid: Option<u32>, kind: TagKind) -> CacheTag {
    CacheTag {
        instance: dev.instance,
        id: tag,
        pasid,
        device: dev.id,
        kind,
    }
}

/// A space's PASID and SVA domains.
type SpaceState = Result<(Option<u32>, Vec<DomainId>), Error>;
/// (instance, device, PASID) and what the mock translates it through.
type HwEntry = ((u16, u32, Option<u32>), Seen);

/// Everything SVA-related a refused call must leave alone.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    in_use: u32,
    spaces: Vec<SpaceState>,
    attached: Vec<Option<DomainId>>,
    live: Vec<(u16, u32)>,
    hw: Vec<HwEntry>,
}

fn fingerprint(c: &Core<'_>, devs: &[DeviceId], spaces: &[SpaceId]) -> Fingerprint {
    Fingerprint {
        in_use: c.pasids().in_use(),
        spaces: spaces
            .iter()
            .map(|s| Ok((c.space_pasid(*s)?, c.space_domains(*s)?.to_vec())))
            .collect(),
        attached: devs
            .iter()
            .flat_map(|d| {
                core::iter::once(None)
                    .chain((1..32).map(Some))
                    .map(|p| c.attached(*d, p).unwrap())
            })
            .collect(),
        live: c.driver().live.iter().copied().collect(),
        hw: c.driver().hw.iter().map(|(k, v)| (*k, *v)).collect(),
    }
}

#[test]
fn first_bind_takes_the_lowest_free_pasid_and_a_second_device_shares_it() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let b = dev(&mut c, 0, 0x18, 8, false);
    // PASIDs 1 and 3 are taken, 2 is free again.
    assert_eq!(c.alloc_pasid(a).unwrap(), 1);
    assert_eq!(c.alloc_pasid(a).unwrap(), 2);
    assert_eq!(c.alloc_pasid(a).unwrap(), 3);
    c.free_pasid(2).unwrap();
    let start = c.pasids().in_use();

    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    assert_eq!(
        c.space_pasid(s).unwrap(),
        None,
        "no PASID before the first bind"
    );
    assert!(c.space_domains(s).unwrap().is_empty());
    assert!(
        c.driver().calls.is_empty(),
        "registering touches no hardware"
    );

    let ba = c.bind(a, s).unwrap();
    assert_eq!(c.space_pasid(s).unwrap(), Some(2));
    assert_eq!(c.pasids().in_use(), start + 1);
    let (d, pasid, users) = c.bond_info(ba).unwrap().t();
    assert_eq!((pasid, users), (2, 1));
    assert_eq!(c.domain_kind(d).unwrap(), DomainKind::Sva);
    assert_eq!(c.domain_instance(d).unwrap(), 0);
    assert_eq!(c.space_domains(s).unwrap(), &[d]);
    let t = tag_of(&c, d);
    assert_eq!(
        c.driver().calls,
        vec![
            Call::Alloc {
                instance: 0,
                device: 0x10,
                kind: "sva",
                tag: t
            },
            attach_call(a, Some(2), sva_seen(&c, d, 1), Seen::Blocked),
        ]
    );
    assert_eq!(c.attached(a, Some(2)).unwrap(), Some(d));
    assert_eq!(
        c.attached(a, None).unwrap(),
        Some(DomainId::BLOCKED),
        "the RID is untouched"
    );

    c.driver_mut().clear();
    let bb = c.bind(b, s).unwrap();
    assert_ne!(ba, bb);
    assert_eq!(c.bond_info(bb).unwrap().t(), (d, 2, 1));
    assert_eq!(
        c.driver().calls,
        vec![attach_call(b, Some(2), sva_seen(&c, d, 1), Seen::Blocked)],
        "the existing SVA domain is reused: no allocation"
    );
    assert_eq!(c.pasids().in_use(), start + 1, "no second PASID");
    assert_eq!(c.domain_users(d).unwrap(), 2);
    assert_eq!(c.space_domains(s).unwrap(), &[d]);
    assert_eq!(
        c.driver().hw.get(&(0, 0x18, Some(2))),
        Some(&sva_seen(&c, d, 1))
    );
    let mut tags: Vec<CacheTag> = c.domain_tags(d).unwrap().copied().collect();
    tags.sort_by_key(|t| t.device);
    assert_eq!(
        tags,
        vec![
            iotlb(a, t, Some(2), TagKind::Iotlb),
            iotlb(b, t, Some(2), TagKind::Iotlb)
        ]
    );
}

#[test]
fn the_pasid_fits_the_first_device_and_narrower_devices_are_refused() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let wide = dev(&mut c, 0, 0x10, 20, false);
    let narrow = dev(&mut c, 0, 0x20, 2, false);
    for want in 1..=3 {
        assert_eq!(c.alloc_pasid(wide).unwrap(), want);
    }
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let s2 = c.register_space(space(2), FaultTarget::None).unwrap();
    let devs = [wide, narrow];
    let before = fingerprint(&c, &devs, &[s, s2]);
    // Every PASID below 2^2 is taken.
    assert_eq!(
        c.bind(narrow, s),
        Err(Error::Exhausted {
            what: Object::Pasid
        })
    );
    assert_eq!(fingerprint(&c, &devs, &[s, s2]), before);
    assert!(c.driver().calls.is_empty());

    c.free_pasid(3).unwrap();
    let bn = c.bind(narrow, s).unwrap();
    assert_eq!(c.bond_info(bn).unwrap().t().1, 3);
    let bw = c.bind(wide, s).unwrap();
    assert_eq!(c.bond_info(bw).unwrap().t().1, 3, "the space's PASID");

    // A space first bound by the wide device gets 4, beyond the narrow one.
    let bw2 = c.bind(wide, s2).unwrap();
    assert_eq!(c.space_pasid(s2).unwrap(), Some(4));
    c.driver_mut().clear();
    let before = fingerprint(&c, &devs, &[s, s2]);
    assert_eq!(c.bind(narrow, s2), Err(Error::BadPasid { pasid: 4 }));
    assert_eq!(fingerprint(&c, &devs, &[s, s2]), before);
    assert!(c.driver().calls.is_empty());
    // Also on an instance where the space has no domain yet: refused before
    // any domain is allocated.
    let narrow_x = dev(&mut c, 1, 0x20, 2, false);
    let devs = [wide, narrow, narrow_x];
    let before = fingerprint(&c, &devs, &[s, s2]);
    assert_eq!(c.bind(narrow_x, s2), Err(Error::BadPasid { pasid: 4 }));
    assert_eq!(fingerprint(&c, &devs, &[s, s2]), before);
    assert!(c.driver().calls.is_empty(), "{:?}", c.driver().calls);
    assert_eq!(c.bond_info(bw2).unwrap().t().2, 1);
}

#[test]
fn binding_the_same_pair_again_counts_users_without_driver_calls() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let b1 = c.bind(a, s).unwrap();
    let (d, p, _) = c.bond_info(b1).unwrap().t();
    c.driver_mut().clear();
    let in_use = c.pasids().in_use();
    let b2 = c.bind(a, s).unwrap();
    assert_eq!(b1, b2);
    assert_eq!(c.bond_info(b1).unwrap().t(), (d, p, 2));
    assert!(c.driver().calls.is_empty());
    assert_eq!(c.pasids().in_use(), in_use);
    assert_eq!(c.domain_users(d).unwrap(), 1, "one attachment");

    // First unbind: one user left, nothing happens in hardware.
    c.unbind(b1).unwrap();
    assert_eq!(c.bond_info(b1).unwrap().t(), (d, p, 1));
    assert!(c.driver().calls.is_empty());
    assert_eq!(c.attached(a, Some(p)).unwrap(), Some(d));

    // Second: released.
    let t = tag_of(&c, d);
    let seen = sva_seen(&c, d, 1);
    c.unbind(b1).unwrap();
    assert_eq!(
        c.driver().calls,
        vec![
            Call::DetachPasid {
                instance: 0,
                device: 0x10,
                pasid: p,
                old: seen
            },
            Call::Free {
                instance: 0,
                tag: t
            },
        ]
    );
    assert_eq!(c.bond_info(b1), Err(Error::NotFound { what: Object::Bond }));
    assert_eq!(c.unbind(b1), Err(Error::NotFound { what: Object::Bond }));
    assert_eq!(c.attached(a, Some(p)).unwrap(), None);
    assert!(c.driver().live.is_empty());
    assert!(c.driver().hw.is_empty());

    // A new bind of the pair is a new bond (the old id stays dead).
    let b3 = c.bind(a, s).unwrap();
    assert_ne!(b3, b1);
    assert_eq!(
        c.bond_info(b3).unwrap().t().1,
        p,
        "the space kept its PASID"
    );
    assert_eq!(c.bond_info(b3).unwrap().t().2, 1);
    assert_eq!(c.bond_info(b1), Err(Error::NotFound { what: Object::Bond }));
}

#[test]
fn an_incompatible_domain_makes_a_second_sva_domain_on_the_instance() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let b = dev(&mut c, 0, 0x18, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let (d1, p, _) = c.bond_info(ba).unwrap().t();
    let t1 = tag_of(&c, d1);
    c.driver_mut().incompatible.insert(t1);
    c.driver_mut().clear();

    let bb = c.bind(b, s).unwrap();
    let (d2, p2, users) = c.bond_info(bb).unwrap().t();
    assert_ne!(d1, d2);
    assert_eq!((p2, users), (p, 1));
    let t2 = tag_of(&c, d2);
    assert_eq!(
        c.driver().calls,
        vec![
            attach_call(b, Some(p), sva_seen(&c, d1, 1), Seen::Blocked),
            Call::Alloc {
                instance: 0,
                device: 0x18,
                kind: "sva",
                tag: t2
            },
            attach_call(b, Some(p), sva_seen(&c, d2, 1), Seen::Blocked),
        ]
    );
    assert_eq!(c.space_domains(s).unwrap(), &[d1, d2]);
    assert_eq!(c.attached(b, Some(p)).unwrap(), Some(d2));
    assert_eq!(c.domain_users(d1).unwrap(), 1);
    assert_eq!(c.domain_users(d2).unwrap(), 1);
    assert!(
        c.domain_tags(d1).unwrap().all(|t| t.device == 0x10),
        "the refused attach left no tag behind"
    );

    // Unbinding the second device frees only its domain.
    c.driver_mut().clear();
    c.unbind(bb).unwrap();
    assert_eq!(
        c.driver().calls,
        vec![
            Call::DetachPasid {
                instance: 0,
                device: 0x18,
                pasid: p,
                old: Seen::Sva {
                    tag: t2,
                    root: (space(1).root).0
                }
            },
            Call::Free {
                instance: 0,
                tag: t2
            },
        ]
    );
    assert_eq!(c.space_domains(s).unwrap(), &[d1]);
    assert_eq!(
        c.domain_kind(d2),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
}

#[test]
fn a_device_on_another_instance_gets_its_own_domain_without_trying_the_first() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let x = dev(&mut c, 1, 0x10, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let (d0, p, _) = c.bond_info(ba).unwrap().t();
    c.driver_mut().clear();
    let bx = c.bind(x, s).unwrap();
    let (d1, px, _) = c.bond_info(bx).unwrap().t();
    assert_ne!(d0, d1);
    assert_eq!(px, p, "one PASID for the space on every instance");
    assert_eq!(c.domain_instance(d1).unwrap(), 1);
    let t = tag_of(&c, d1);
    assert_eq!(
        c.driver().calls,
        vec![
            Call::Alloc {
                instance: 1,
                device: 0x10,
                kind: "sva",
                tag: t
            },
            attach_call(x, Some(p), sva_seen(&c, d1, 1), Seen::Blocked),
        ],
        "no attach of instance 0's domain on instance 1"
    );
    assert_eq!(c.space_domains(s).unwrap(), &[d0, d1]);
    assert_eq!(
        c.driver().hw.get(&(0, 0x10, Some(p))),
        Some(&sva_seen(&c, d0, 1))
    );
    assert_eq!(
        c.driver().hw.get(&(1, 0x10, Some(p))),
        Some(&sva_seen(&c, d1, 1))
    );
}

#[test]
fn unbind_detaches_and_frees_the_domain_only_when_no_device_uses_it() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let b = dev(&mut c, 0, 0x18, 8, false);
    let start = c.pasids().in_use();
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let bb = c.bind(b, s).unwrap();
    let (d, p, _) = c.bond_info(ba).unwrap().t();
    let seen = sva_seen(&c, d, 1);
    let t = tag_of(&c, d);
    c.driver_mut().clear();
    c.unbind(ba).unwrap();
    assert_eq!(
        c.driver().calls,
        vec![Call::DetachPasid {
            instance: 0,
            device: 0x10,
            pasid: p,
            old: seen
        }],
        "b still uses the domain: no free"
    );
    assert_eq!(c.domain_users(d).unwrap(), 1);
    assert!(c.domain_tags(d).unwrap().all(|t| t.device == 0x18));
    c.driver_mut().clear();
    c.unbind(bb).unwrap();
    assert_eq!(
        c.driver().calls,
        vec![
            Call::DetachPasid {
                instance: 0,
                device: 0x18,
                pasid: p,
                old: seen
            },
            Call::Free {
                instance: 0,
                tag: t
            },
        ]
    );
    assert!(c.space_domains(s).unwrap().is_empty());
    assert_eq!(c.space_pasid(s).unwrap(), Some(p), "kept until teardown");
    assert_eq!(c.pasids().in_use(), start + 1);
    assert_eq!(
        c.free_pasid(p),
        Err(Error::Busy {
            what: "PASID in use"
        })
    );
    assert!(c.driver().live.is_empty());
    assert!(c.driver().hw.is_empty());

    // Binding again reuses the PASID with a fresh domain.
    c.driver_mut().clear();
    let b2 = c.bind(b, s).unwrap();
    assert_eq!(c.bond_info(b2).unwrap().t().1, p);
    assert!(matches!(
        c.driver().calls[0],
        Call::Alloc { kind: "sva", .. }
    ));
    c.teardown_space(s).unwrap();
    assert_eq!(c.pasids().in_use(), start);
}

#[test]
fn teardown_unbinds_every_device_and_frees_domains_and_pasid() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let b = dev(&mut c, 0, 0x18, 8, true);
    let x = dev(&mut c, 1, 0x10, 8, false);
    let start = c.pasids().in_use();
    let other = c.register_space(space(2), FaultTarget::None).unwrap();
    let bo = c.bind(a, other).unwrap();
    let po = c.bond_info(bo).unwrap().t().1;
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let bb = c.bind(b, s).unwrap();
    assert_eq!(c.bind(b, s).unwrap(), bb, "two users");
    let bx = c.bind(x, s).unwrap();
    let (d0, p, _) = c.bond_info(ba).unwrap().t();
    let d1 = c.bond_info(bx).unwrap().t().0;
    let (t0, t1) = (tag_of(&c, d0), tag_of(&c, d1));
    assert_eq!(c.pasids().in_use(), start + 2);

    c.driver_mut().clear();
    c.teardown_space(s).unwrap();
    let calls = c.driver().calls.clone();
    let detached: Vec<(u16, u32, u32)> = calls
        .iter()
        .filter_map(|c| match *c {
            Call::DetachPasid {
                instance,
                device,
                pasid,
                ..
            } => Some((instance, device, pasid)),
            _ => None,
        })
        .collect();
    assert_eq!(detached.len(), 3, "{calls:?}");
    for want in [(0, 0x10, p), (0, 0x18, p), (1, 0x10, p)] {
        assert!(detached.contains(&want), "{want:?} not detached: {calls:?}");
    }
    let mut freed: Vec<(u16, u32)> = calls
        .iter()
        .filter_map(|c| match *c {
            Call::Free { instance, tag } => Some((instance, tag)),
            _ => None,
        })
        .collect();
    freed.sort();
    assert_eq!(freed, vec![(0, t0), (1, t1)]);
    assert!(
        calls
            .iter()
            .all(|c| matches!(c, Call::DetachPasid { .. } | Call::Free { .. })),
        "{calls:?}"
    );
    // Each domain is freed after its last detach.
    let last_detach = |inst: u16| {
        calls
            .iter()
            .rposition(|c| matches!(c, Call::DetachPasid { instance, .. } if *instance == inst))
    };
    let free_at = |tag: u32| {
        calls
            .iter()
            .position(|c| matches!(c, Call::Free { tag: t, .. } if *t == tag))
    };
    assert!(last_detach(0) < free_at(t0));
    assert!(last_detach(1) < free_at(t1));

    assert_eq!(
        c.pasids().in_use(),
        start + 1,
        "only the other space's PASID"
    );
    assert!(!c.pasids().is_used(p));
    let gone = Error::NotFound {
        what: Object::Space,
    };
    assert_eq!(c.space_pasid(s), Err(gone));
    assert_eq!(c.space_domains(s).map(|d| d.to_vec()), Err(gone));
    for bond in [ba, bb, bx] {
        assert_eq!(
            c.bond_info(bond),
            Err(Error::NotFound { what: Object::Bond })
        );
    }
    for (d, pasid) in [(a, p), (b, p), (x, p)] {
        assert_eq!(c.attached(d, Some(pasid)).unwrap(), None);
    }
    assert_eq!(c.bind(a, s), Err(gone));
    assert_eq!(c.teardown_space(s), Err(gone));
    assert_eq!(c.invalidate_range(s, 0, 0x1000), Err(gone));
    // The other space is untouched.
    assert_eq!(c.bond_info(bo).unwrap().t().1, po);
    assert_eq!(
        c.attached(a, Some(po)).unwrap(),
        Some(c.bond_info(bo).unwrap().t().0)
    );
    assert_eq!(c.driver().live.len(), 1);

    // The PASID goes to the next space.
    let s3 = c.register_space(space(3), FaultTarget::None).unwrap();
    c.bind(x, s3).unwrap();
    assert_eq!(c.space_pasid(s3).unwrap(), Some(p));
    c.teardown_space(s3).unwrap();
    c.teardown_space(other).unwrap();
    assert_eq!(c.pasids().in_use(), start);
    assert!(c.driver().live.is_empty());
    assert!(c.driver().hw.is_empty());
}

#[test]
fn teardown_of_a_space_never_bound_touches_no_hardware() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let start = c.pasids().in_use();
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    c.teardown_space(s).unwrap();
    assert!(c.driver().calls.is_empty());
    assert_eq!(c.pasids().in_use(), start);
    // The slot is reused under a new name.
    let s2 = c.register_space(space(1), FaultTarget::None).unwrap();
    assert_ne!(s, s2);
    assert!(c.space_pasid(s).is_err());
    assert_eq!(c.space_pasid(s2).unwrap(), None);
}

#[test]
fn register_space_refuses_bad_descriptions() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let mut bad = space(1);
    bad.root.0 += 0x800;
    assert_eq!(
        c.register_space(bad, FaultTarget::None),
        Err(Error::Unaligned {
            value: bad.root.0,
            align: 0x1000
        })
    );
    let o = c.alloc_fault_object().unwrap();
    assert!(matches!(
        c.register_space(space(1), FaultTarget::Object(o)),
        Err(Error::Unsupported { .. })
    ));
    // Neither took a slot: all 16 can still be registered.
    for n in 0..16 {
        c.register_space(space(n), FaultTarget::None).unwrap();
    }
    assert!(matches!(
        c.register_space(space(99), FaultTarget::None),
        Err(Error::Exhausted { .. })
    ));
}

#[test]
fn a_device_without_pasids_is_unsupported_and_nothing_changes() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let none = dev(&mut c, 0, 0x20, 0, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let fresh = c.register_space(space(2), FaultTarget::None).unwrap();
    c.bind(a, s).unwrap();
    c.driver_mut().clear();
    let devs = [a, none];
    let before = fingerprint(&c, &devs, &[s, fresh]);
    for sp in [s, fresh] {
        assert!(matches!(c.bind(none, sp), Err(Error::Unsupported { .. })));
        assert_eq!(fingerprint(&c, &devs, &[s, fresh]), before);
    }
    assert!(c.driver().calls.is_empty());
    // Unknown device or space.
    let ghost = DeviceId {
        instance: 0,
        id: 0x99,
    };
    assert_eq!(
        c.bind(ghost, s),
        Err(Error::NotFound {
            what: Object::Device
        })
    );
    let dead = c.register_space(space(3), FaultTarget::None).unwrap();
    c.teardown_space(dead).unwrap();
    assert_eq!(
        c.bind(a, dead),
        Err(Error::NotFound {
            what: Object::Space
        })
    );
    assert!(c.driver().calls.is_empty());
    assert_eq!(fingerprint(&c, &devs, &[s, fresh]), before);
}

#[test]
fn a_pasid_used_by_another_attachment_is_busy_and_nothing_changes() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let b = dev(&mut c, 0, 0x18, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let (d, p, _) = c.bond_info(ba).unwrap().t();
    // b has its own domain at the space's PASID.
    let pd = c.alloc_paging(b, PagingFlags::empty()).unwrap();
    c.attach_pasid(b, p, pd).unwrap();
    c.driver_mut().clear();
    let devs = [a, b];
    let before = fingerprint(&c, &devs, &[s]);
    assert!(matches!(c.bind(b, s), Err(Error::Busy { .. })));
    assert_eq!(fingerprint(&c, &devs, &[s]), before);
    assert!(c.driver().calls.is_empty());
    assert_eq!(c.attached(b, Some(p)).unwrap(), Some(pd));
    assert_eq!(c.domain_users(d).unwrap(), 1);

    // No stale bond was left: once the PASID is free, the bind is new.
    c.detach_pasid(b, p).unwrap();
    let bb = c.bind(b, s).unwrap();
    assert_eq!(c.bond_info(bb).unwrap().t(), (d, p, 1));
}

#[test]
fn a_failed_fresh_bind_gives_its_pasid_back_and_leaves_no_domain() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let devs = [a];
    let before = fingerprint(&c, &devs, &[s]);

    // The driver cannot allocate the domain.
    let n = c.driver().allocs;
    c.driver_mut().fail_alloc_at = Some(n + 1);
    assert_eq!(c.bind(a, s), Err(Error::NoMemory));
    assert_eq!(fingerprint(&c, &devs, &[s]), before);
    assert!(c.driver().calls.is_empty());

    // The driver refuses the attach.
    c.driver_mut().fail_attach = Some(Error::Hardware {
        register: "mock",
        value: 7,
    });
    assert_eq!(
        c.bind(a, s),
        Err(Error::Hardware {
            register: "mock",
            value: 7
        })
    );
    assert_eq!(fingerprint(&c, &devs, &[s]), before);
    let calls = c.driver().calls.clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let Call::Alloc { tag, .. } = calls[0] else {
        panic!("{calls:?}")
    };
    assert!(matches!(calls[1], Call::Attach { .. }));
    assert_eq!(calls[2], Call::Free { instance: 0, tag });

    // Then it works, at the lowest PASID (nothing leaked).
    let b = c.bind(a, s).unwrap();
    assert_eq!(c.bond_info(b).unwrap().t().1, 1);
    assert_eq!(c.bond_info(b).unwrap().t().2, 1);
}

#[test]
fn a_failed_bind_on_a_space_with_a_pasid_keeps_it_and_its_domains() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let b = dev(&mut c, 0, 0x18, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let (d1, p, _) = c.bond_info(ba).unwrap().t();
    let t1 = tag_of(&c, d1);
    let devs = [a, b];
    let before = fingerprint(&c, &devs, &[s]);

    // The reused domain's attach fails (not Incompatible): no new domain.
    c.driver_mut().clear();
    c.driver_mut().fail_attach = Some(Error::Timeout { what: "mock" });
    assert_eq!(c.bind(b, s), Err(Error::Timeout { what: "mock" }));
    assert_eq!(fingerprint(&c, &devs, &[s]), before);
    assert_eq!(
        c.driver().calls,
        vec![attach_call(b, Some(p), sva_seen(&c, d1, 1), Seen::Blocked)]
    );

    // Both the old and the new domain are refused: the new one is freed.
    c.driver_mut().clear();
    c.driver_mut().incompatible.insert(t1);
    c.driver_mut().incompatible.insert(t1 + 1);
    assert!(matches!(c.bind(b, s), Err(Error::Incompatible { .. })));
    assert_eq!(fingerprint(&c, &devs, &[s]), before);
    assert_eq!(c.space_domains(s).unwrap(), &[d1]);
    let calls = c.driver().calls.clone();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(
        calls[1],
        Call::Alloc {
            instance: 0,
            device: 0x18,
            kind: "sva",
            tag: t1 + 1
        }
    );
    assert_eq!(
        calls[3],
        Call::Free {
            instance: 0,
            tag: t1 + 1
        }
    );
    assert_eq!(c.domain_users(d1).unwrap(), 1);
    assert_eq!(c.bond_info(ba).unwrap().t(), (d1, p, 1));
}

#[test]
fn invalidate_range_reaches_every_tag_of_every_domain_with_one_wait_per_instance() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, true);
    let b = dev(&mut c, 0, 0x18, 8, false);
    let x = dev(&mut c, 1, 0x10, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let other = c.register_space(space(2), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let (d1, p, _) = c.bond_info(ba).unwrap().t();
    let t1 = tag_of(&c, d1);
    c.driver_mut().incompatible.insert(t1);
    let bb = c.bind(b, s).unwrap();
    let d2 = c.bond_info(bb).unwrap().t().0;
    let bx = c.bind(x, s).unwrap();
    let d3 = c.bond_info(bx).unwrap().t().0;
    // A device of the other space must not be reached.
    c.bind(b, other).unwrap();
    assert_eq!(c.space_domains(s).unwrap(), &[d1, d2, d3]);
    let (t2, t3) = (tag_of(&c, d2), tag_of(&c, d3));

    c.driver_mut().clear();
    c.invalidate_range(s, 0x40_0000, 0x40_3000).unwrap();
    let inv = |tag: CacheTag| Call::Invalidate {
        tag,
        range: Some((0x40_0000, 0x40_3000)),
        page_size: 0x1000,
        tables: true,
    };
    let pool_live = pool.counts().live_pages();
    assert_eq!(
        c.driver().calls,
        vec![
            inv(iotlb(a, t1, Some(p), TagKind::Iotlb)),
            inv(iotlb(b, t2, Some(p), TagKind::Iotlb)),
            inv(iotlb(a, t1, Some(p), TagKind::DevTlb)),
            Call::Wait {
                instance: 0,
                live_pages: pool_live
            },
            inv(iotlb(x, t3, Some(p), TagKind::Iotlb)),
            Call::Wait {
                instance: 1,
                live_pages: pool_live
            },
        ]
    );

    // Empty or reversed ranges are refused before anything is sent.
    c.driver_mut().clear();
    for (start, end) in [(0x5000, 0x5000), (0x6000, 0x5000)] {
        assert_eq!(
            c.invalidate_range(s, start, end),
            Err(Error::OutOfRange {
                what: "range end",
                value: end
            })
        );
    }
    assert!(c.driver().calls.is_empty());

    // A wait failure is reported.
    c.driver_mut().fail_wait = Some(1);
    assert!(matches!(
        c.invalidate_range(s, 0, 0x1000),
        Err(Error::Timeout { .. })
    ));
    c.driver_mut().fail_wait = None;

    // Nothing bound: nothing to invalidate.
    c.teardown_space(s).unwrap();
    let s2 = c.register_space(space(3), FaultTarget::None).unwrap();
    c.driver_mut().clear();
    c.invalidate_range(s2, 0, 0x1000).unwrap();
    assert!(c.driver().calls.is_empty());
}

#[test]
fn sva_domains_attach_only_at_pasids_and_free_only_when_unused() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let a = dev(&mut c, 0, 0x10, 8, false);
    let s = c.register_space(space(1), FaultTarget::None).unwrap();
    let ba = c.bind(a, s).unwrap();
    let (d, _, _) = c.bond_info(ba).unwrap().t();
    c.driver_mut().clear();
    assert!(matches!(c.attach(a, d), Err(Error::Incompatible { .. })));
    assert!(matches!(c.free_domain(d), Err(Error::Busy { .. })));
    assert!(matches!(
        c.map(
            d,
            Iova(0),
            PhysAddr(0x1000),
            0x1000,
            iommu::pgtable::Prot::READ
        ),
        Err(Error::Unsupported { .. })
    ));
    assert!(c.driver().calls.is_empty());
    c.unbind(ba).unwrap();
    assert!(c.driver().live.is_empty());
}
