//! Domains and attach of the core (`Iommu`) over the recording mock driver:
//! every behaviour is checked against the exact calls the driver received,
//! the mock's model of what each (instance, device, PASID) translates
//! through, the cache tags of every domain, and the page pool.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TestHal;
use common::mock::{
    BondTuple, Call, Mock, PASIDS_PER_DEVICE, SMMU_STE, Seen, TAGS_PER_DOMAIN, TestCaps, UserInv,
    VTD_INV, VTD_S1, core_over, vtd_inv, vtd_nested_caps as vtd_caps, vtd_s1,
};
use common::walk::RefFormat;
use iommu::core::{
    AddressSpace, CpuFormat, DeviceId, DomainId, DomainKind, FaultTarget, InvalidateOutcome, Iommu,
    IommuDriver, PagingFlags, TagKind,
};
use iommu::drivers::vtd::regs::LargePages;
use iommu::drivers::vtd::user::VtdS1Inv;
use iommu::pgtable::AnyFormat;
use iommu::pgtable::{ArmS1, ArmS2, Gather, MairIndices, Prot, VtdSl, X86_64};
use iommu::{Error, Object};
use iommu::{Iova, PhysAddr};
use proptest::prelude::*;

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<16, 8>>;

/// Instance 0, 8 PASID bits, no ATS.
const A: DeviceId = DeviceId {
    instance: 0,
    id: 0x10,
};
/// Instance 0, 8 PASID bits, ATS.
const B: DeviceId = DeviceId {
    instance: 0,
    id: 0x11,
};
/// Instance 1, 8 PASID bits, ATS.
const C: DeviceId = DeviceId {
    instance: 1,
    id: 0x20,
};
/// Instance 0, no PASID support.
const N: DeviceId = DeviceId {
    instance: 0,
    id: 0x12,
};
/// Instance 0, 2 PASID bits (PASIDs 1..=3).
const NARROW: DeviceId = DeviceId {
    instance: 0,
    id: 0x13,
};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const PAGE: u64 = 4096;
const M2: u64 = 0x20_0000;

/// A core over a 2-instance mock with the devices above registered and the
/// setup calls forgotten.
fn setup(pool: &TestHal) -> Box<Core<'_>> {
    let mut m = Mock::new(2).with_pool(pool);
    m.nested = Some(vtd_caps());
    let devices = [
        (A, 8, false),
        (B, 8, true),
        (C, 8, true),
        (N, 0, false),
        (NARROW, 2, false),
    ];
    let mut core: Box<Core<'_>> = core_over(pool, m, &devices);
    core.driver_mut().clear();
    core
}

/// The calls since the last `take`.
fn take(core: &mut Core<'_>) -> Vec<Call> {
    std::mem::take(&mut core.driver_mut().calls)
}

fn live(core: &Core<'_>) -> u64 {
    core.hal().counts().live_pages()
}

/// A domain with what the driver sees of it.
#[derive(Clone, Copy, Debug)]
struct Dom {
    id: DomainId,
    tag: u32,
    seen: Seen,
}

/// Allocate a paging domain for `dev`, checking the driver call and that
/// exactly one root allocation was made; the root is read off the pool.
fn paging(core: &mut Core<'_>, dev: DeviceId, flags: PagingFlags) -> Dom {
    let before = core.hal().live();
    take(core);
    let id = core.alloc_paging(dev, flags).unwrap();
    let new: Vec<_> = core
        .hal()
        .live()
        .into_iter()
        .filter(|x| !before.contains(x))
        .collect();
    assert_eq!(new.len(), 1, "one root allocation: {new:?}");
    let tag = core.domain_hw(id).unwrap().tag;
    assert_eq!(
        take(core),
        vec![Call::Alloc {
            instance: dev.instance,
            device: dev.id,
            kind: "paging",
            tag
        }]
    );
    Dom {
        id,
        tag,
        seen: Seen::Paging {
            tag,
            root: new[0].0,
        },
    }
}

fn nested(core: &mut Core<'_>, dev: DeviceId, parent: &Dom) -> Dom {
    let Seen::Paging {
        tag: parent_tag,
        root,
    } = parent.seen
    else {
        panic!("parent must be paging");
    };
    take(core);
    let id = core
        .alloc_nested(dev, parent.id, VTD_S1, &vtd_s1(0, 0x5000, 48, 0))
        .unwrap();
    let tag = core.domain_hw(id).unwrap().tag;
    assert_eq!(
        take(core),
        vec![Call::Alloc {
            instance: dev.instance,
            device: dev.id,
            kind: "nested",
            tag
        }]
    );
    assert_eq!(core.domain_kind(id), Ok(DomainKind::Nested));
    Dom {
        id,
        tag,
        seen: Seen::Nested {
            tag,
            parent_tag,
            parent_root: root,
        },
    }
}

const SPACE: AddressSpace = AddressSpace {
    root: PhysAddr(0x7700_0000),
    format: CpuFormat::X86_64 { five_level: false },
    asid: 3,
};

type T = (u16, u32, Option<u32>, u32, TagKind);

fn tg(dev: DeviceId, id: u32, pasid: Option<u32>, kind: TagKind) -> T {
    (dev.instance, id, pasid, dev.id, kind)
}

fn tagset(core: &Core<'_>, d: DomainId) -> BTreeSet<T> {
    core.domain_tags(d)
        .unwrap()
        .map(|t| (t.instance, t.id, t.pasid, t.device, t.kind))
        .collect()
}

fn tags_in_order(core: &Core<'_>, d: DomainId) -> Vec<T> {
    core.domain_tags(d)
        .unwrap()
        .map(|t| (t.instance, t.id, t.pasid, t.device, t.kind))
        .collect()
}

fn set<const K: usize>(v: [T; K]) -> BTreeSet<T> {
    v.into_iter().collect()
}

fn hw(core: &Core<'_>) -> BTreeMap<(u16, u32, Option<u32>), Seen> {
    core.driver().hw.clone()
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

/// Calls as a set, where their order is not specified.
fn unordered(calls: &[Call]) -> BTreeSet<String> {
    calls.iter().map(|c| format!("{c:?}")).collect()
}

fn inv(t: T, range: (u64, u64), page_size: u64, tables: bool) -> Call {
    Call::Invalidate {
        tag: iommu::core::CacheTag {
            instance: t.0,
            id: t.1,
            pasid: t.2,
            device: t.3,
            kind: t.4,
        },
        range: Some(range),
        page_size,
        tables,
    }
}

// ---------------------------------------------------------------------------
// 1. Domains.

#[test]
fn alloc_paging_asks_the_driver_and_builds_a_table_in_its_format() {
    let formats: [(AnyFormat, RefFormat, usize); 4] = [
        (
            AnyFormat::VtdSl(VtdSl::new(48, LargePages::all()).unwrap()),
            RefFormat::VtdSl { levels: 4 },
            1,
        ),
        (
            AnyFormat::X86_64(X86_64::new(false)),
            RefFormat::X86 { levels: 4 },
            1,
        ),
        (
            AnyFormat::ArmS1(ArmS1::new(MairIndices::default(), 48).unwrap()),
            RefFormat::ArmS1 {
                idx_wb: 1,
                idx_nc: 0,
                idx_dev: 2,
            },
            1,
        ),
        (
            AnyFormat::ArmS2(ArmS2::new(40, 48).unwrap()),
            RefFormat::ArmS2 { ias: 40 },
            2,
        ),
    ];
    for (format, reference, root_pages) in formats {
        let pool = TestHal::new(256);
        let mut core = setup(&pool);
        core.driver_mut().format = format;
        let start = live(&core);
        let before = pool.live();
        let d = core.alloc_paging(A, PagingFlags::empty()).unwrap();
        let tag = core.domain_hw(d).unwrap().tag;
        assert_eq!(
            take(&mut core),
            vec![Call::Alloc {
                instance: 0,
                device: A.id,
                kind: "paging",
                tag
            }]
        );
        assert_eq!(core.domain_hw(d).unwrap().format, Some(format));
        assert_eq!(core.domain_hw(d).unwrap().private.private, tag as u64 * 10);
        assert_eq!(core.domain_kind(d), Ok(DomainKind::Paging));
        assert_eq!(core.domain_instance(d), Ok(0));
        assert_eq!(core.domain_users(d), Ok(0));
        assert_eq!(core.domain_tags(d).unwrap().count(), 0);
        let new: Vec<_> = pool
            .live()
            .into_iter()
            .filter(|x| !before.contains(x))
            .collect();
        assert_eq!(new.len(), 1, "{format:?}");
        assert_eq!(new[0].1, root_pages, "{format:?}: root pages");
        let root = new[0].0;
        // The table the core builds is walked by the hardware in the driver's
        // format: the reference walker finds the mapping.
        core.map(d, Iova(0x40_0000), PhysAddr(0x8000_0000), PAGE, RW)
            .unwrap();
        let leaf = reference.walk(&pool, root, 0x40_0123).expect("mapped");
        assert_eq!(leaf.phys, 0x8000_0123, "{format:?}");
        assert_eq!(
            core.iova_to_phys(d, Iova(0x40_0123)),
            Ok(Some(PhysAddr(0x8000_0123)))
        );
        assert!(take(&mut core).is_empty(), "no caching mode: map is silent");
        // Attach shows the same root to the driver.
        core.attach(A, d).unwrap();
        assert_eq!(
            take(&mut core),
            vec![attach_call(
                A,
                None,
                Seen::Paging { tag, root },
                Seen::Blocked
            )]
        );
        core.detach(A).unwrap();
        take(&mut core);
        core.free_domain(d).unwrap();
        assert_eq!(take(&mut core), vec![Call::Free { instance: 0, tag }]);
        assert_eq!(live(&core), start, "{format:?}: every table page back");
        assert!(core.driver().live.is_empty());
    }
}

#[test]
fn free_domain_gives_every_table_page_back() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let start = live(&core);
    let d = paging(&mut core, A, PagingFlags::empty());
    // Mappings spread over several tables, a 2 MiB block included.
    for (iova, len) in [
        (0x1000, PAGE),
        (0x40_0000, M2),
        (0x4000_0000, 3 * PAGE),
        (0x80_0000_0000, PAGE),
    ] {
        core.map(
            d.id,
            Iova(iova),
            PhysAddr(0x9000_0000 + iova % 0x1000_0000),
            len,
            RW,
        )
        .unwrap();
    }
    assert!(live(&core) > start + 4);
    take(&mut core);
    core.free_domain(d.id).unwrap();
    assert_eq!(
        take(&mut core),
        vec![Call::Free {
            instance: 0,
            tag: d.tag
        }]
    );
    assert_eq!(live(&core), start);
    assert!(core.driver().live.is_empty());
    assert_eq!(
        core.domain_kind(d.id),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
}

#[test]
fn attached_domains_nest_parents_and_static_domains_cannot_be_freed() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let q = paging(&mut core, A, PagingFlags::empty());
    core.attach(A, p.id).unwrap();
    let pasid = core.alloc_pasid(B).unwrap();
    core.attach_pasid(B, pasid, q.id).unwrap();
    take(&mut core);
    let snap = pool.snapshot();
    let (hw0, tp, tq) = (hw(&core), tagset(&core, p.id), tagset(&core, q.id));
    let busy = Error::Busy {
        what: "domain is attached",
    };
    assert_eq!(core.free_domain(p.id), Err(busy));
    assert_eq!(
        core.free_domain(q.id),
        Err(busy),
        "attached at a PASID only"
    );
    assert!(take(&mut core).is_empty());
    assert_eq!(hw(&core), hw0);
    assert_eq!(tagset(&core, p.id), tp);
    assert_eq!(tagset(&core, q.id), tq);
    assert_eq!(core.attached(A, None), Ok(Some(p.id)));
    assert_eq!(core.attached(B, Some(pasid)), Ok(Some(q.id)));
    assert_eq!(core.domain_users(p.id), Ok(1));
    assert_eq!(pool.snapshot(), snap);
    // A nest parent with a nested child, attached nowhere.
    core.detach(A).unwrap();
    let n = nested(&mut core, A, &p);
    take(&mut core);
    assert_eq!(
        core.free_domain(p.id),
        Err(Error::Busy {
            what: "domain is the parent of nested domains"
        })
    );
    assert!(take(&mut core).is_empty());
    assert_eq!(core.domain_kind(p.id), Ok(DomainKind::Paging));
    core.free_domain(n.id).unwrap();
    core.free_domain(p.id).unwrap();
    assert_eq!(
        take(&mut core),
        vec![
            Call::Free {
                instance: 0,
                tag: n.tag
            },
            Call::Free {
                instance: 0,
                tag: p.tag
            }
        ]
    );
    for s in [DomainId::BLOCKED, DomainId::IDENTITY] {
        assert_eq!(
            core.free_domain(s),
            Err(Error::Unsupported {
                what: "freeing the static Blocked / Identity domains"
            })
        );
    }
    assert!(take(&mut core).is_empty());
    assert_eq!(core.domain_kind(DomainId::BLOCKED), Ok(DomainKind::Blocked));
    assert_eq!(
        core.domain_kind(DomainId::IDENTITY),
        Ok(DomainKind::Identity)
    );
}

#[test]
fn a_stale_domain_id_is_not_found_even_after_its_slot_is_reused() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let old = paging(&mut core, A, PagingFlags::NEST_PARENT);
    core.free_domain(old.id).unwrap();
    // The lowest free slot is the one just freed: the new domain reuses it.
    let new = paging(&mut core, A, PagingFlags::NEST_PARENT);
    assert_ne!(old.id, new.id);
    core.map(new.id, Iova(0x1000), PhysAddr(0x5000), PAGE, RW)
        .unwrap();
    core.attach(A, new.id).unwrap();
    let pasid = core.alloc_pasid(A).unwrap();
    take(&mut core);
    let snap = pool.snapshot();
    let nf = Err(Error::NotFound {
        what: Object::Domain,
    });
    let mut g = Gather::new();
    assert_eq!(core.attach(B, old.id), nf);
    assert_eq!(core.attach_pasid(A, pasid, old.id), nf);
    assert_eq!(core.free_domain(old.id), nf);
    assert_eq!(
        core.map(old.id, Iova(0x2000), PhysAddr(0x5000), PAGE, RW),
        nf
    );
    assert_eq!(core.unmap(old.id, Iova(0x1000), PAGE, &mut g), nf);
    assert_eq!(core.unmap_sync(old.id, Iova(0x1000), PAGE), nf);
    assert_eq!(core.sync(old.id, &mut g), nf);
    assert_eq!(
        core.iova_to_phys(old.id, Iova(0x1000)),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
    assert_eq!(
        core.domain_kind(old.id),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
    assert_eq!(
        core.domain_hw(old.id),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
    assert_eq!(
        core.domain_users(old.id),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
    assert!(core.domain_tags(old.id).is_err());
    assert_eq!(core.set_fault_target(old.id, FaultTarget::None), nf);
    assert_eq!(
        core.alloc_nested(A, old.id, VTD_S1, &vtd_s1(0, 0, 48, 0)),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
    assert_eq!(
        core.invalidate_user(old.id, VTD_INV, &[], 24, 0),
        Err(Error::NotFound {
            what: Object::Domain
        })
    );
    assert!(take(&mut core).is_empty());
    assert_eq!(pool.snapshot(), snap);
    // The new domain is untouched by all of that.
    assert_eq!(
        core.iova_to_phys(new.id, Iova(0x1000)),
        Ok(Some(PhysAddr(0x5000)))
    );
    assert_eq!(core.domain_users(new.id), Ok(1));
    assert_eq!(core.attached(A, None), Ok(Some(new.id)));
    assert_eq!(core.attached(A, Some(pasid)), Ok(None));
}

#[test]
fn alloc_paging_failures_take_nothing() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let start = live(&core);
    // The driver refuses.
    core.driver_mut().fail_alloc_at = Some(1);
    assert_eq!(
        core.alloc_paging(A, PagingFlags::empty()),
        Err(Error::NoMemory)
    );
    assert!(take(&mut core).is_empty());
    // The table's root cannot be allocated: the driver's domain is given back.
    pool.fail_nth(1);
    assert_eq!(
        core.alloc_paging(A, PagingFlags::empty()),
        Err(Error::NoMemory)
    );
    let calls = take(&mut core);
    let Call::Alloc { tag, .. } = calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        calls,
        vec![
            Call::Alloc {
                instance: 0,
                device: A.id,
                kind: "paging",
                tag
            },
            Call::Free { instance: 0, tag }
        ]
    );
    assert!(core.driver().live.is_empty());
    assert_eq!(live(&core), start);
    // No slot was used by either failure: all 16 can still be allocated.
    let ids: Vec<_> = (0..16)
        .map(|_| core.alloc_paging(A, PagingFlags::empty()).unwrap())
        .collect();
    take(&mut core);
    assert_eq!(
        core.alloc_paging(A, PagingFlags::empty()),
        Err(Error::Exhausted {
            what: Object::Domain
        })
    );
    assert!(take(&mut core).is_empty(), "the driver is not asked");
    for d in ids {
        core.free_domain(d).unwrap();
    }
    assert_eq!(live(&core), start);
}

// ---------------------------------------------------------------------------
// 2. Attach at the requester ID.

#[test]
fn attach_replaces_in_one_step_and_reattach_is_a_no_op() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let a = paging(&mut core, A, PagingFlags::empty());
    let b = paging(&mut core, A, PagingFlags::empty());
    let key = (0, A.id, None);

    core.attach(A, a.id).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(A, None, a.seen, Seen::Blocked)]
    );
    assert_eq!(hw(&core).get(&key), Some(&a.seen));
    assert_eq!(core.attached(A, None), Ok(Some(a.id)));
    assert_eq!(core.domain_users(a.id), Ok(1));

    core.attach(A, b.id).unwrap();
    assert_eq!(take(&mut core), vec![attach_call(A, None, b.seen, a.seen)]);
    assert_eq!(hw(&core).get(&key), Some(&b.seen));
    assert_eq!(core.attached(A, None), Ok(Some(b.id)));
    assert_eq!(core.domain_users(a.id), Ok(0));
    assert_eq!(core.domain_users(b.id), Ok(1));
    assert!(tagset(&core, a.id).is_empty());
    assert_eq!(
        tagset(&core, b.id),
        set([tg(A, b.tag, None, TagKind::Iotlb)])
    );

    core.attach(A, b.id).unwrap();
    assert!(take(&mut core).is_empty(), "same domain again: no call");
    assert_eq!(core.domain_users(b.id), Ok(1), "not counted twice");
    assert_eq!(tags_in_order(&core, b.id).len(), 1);

    core.detach(A).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(A, None, Seen::Blocked, b.seen)]
    );
    assert_eq!(core.attached(A, None), Ok(Some(DomainId::BLOCKED)));
    assert_eq!(hw(&core).get(&key), Some(&Seen::Blocked));
    assert_eq!(core.domain_users(b.id), Ok(0));
    assert!(tagset(&core, b.id).is_empty());
    core.detach(A).unwrap();
    core.attach(A, DomainId::BLOCKED).unwrap();
    assert!(take(&mut core).is_empty(), "already Blocked");

    // Identity.
    core.attach(A, DomainId::IDENTITY).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(A, None, Seen::Identity, Seen::Blocked)]
    );
    assert_eq!(core.attached(A, None), Ok(Some(DomainId::IDENTITY)));
    core.attach(A, DomainId::IDENTITY).unwrap();
    assert!(take(&mut core).is_empty());
    core.attach(A, a.id).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(A, None, a.seen, Seen::Identity)]
    );
    core.attach(A, DomainId::IDENTITY).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(A, None, Seen::Identity, a.seen)]
    );
    assert!(tagset(&core, a.id).is_empty());
    assert_eq!(core.domain_users(a.id), Ok(0));
}

#[test]
fn a_domain_of_another_instance_is_incompatible_without_a_driver_call() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d0 = paging(&mut core, A, PagingFlags::empty());
    let d1 = paging(&mut core, C, PagingFlags::empty());
    let pc = core.alloc_pasid(C).unwrap();
    let pa = core.alloc_pasid(A).unwrap();
    take(&mut core);
    let inc = Err(Error::Incompatible {
        what: "domain belongs to another IOMMU instance",
    });
    assert_eq!(core.attach(C, d0.id), inc);
    assert_eq!(core.attach(A, d1.id), inc);
    assert_eq!(core.attach_pasid(C, pc, d0.id), inc);
    assert_eq!(core.attach_pasid(A, pa, d1.id), inc);
    assert!(take(&mut core).is_empty());
    assert!(hw(&core).is_empty());
    assert_eq!(core.attached(C, None), Ok(Some(DomainId::BLOCKED)));
    assert_eq!(core.attached(C, Some(pc)), Ok(None));
    assert!(tagset(&core, d0.id).is_empty() && tagset(&core, d1.id).is_empty());
    // So a paging domain never spans two instances: its syncs wait on one.
    core.attach(C, d1.id).unwrap();
    core.attach(A, d0.id).unwrap();
    assert_eq!(core.domain_users(d0.id), Ok(1));
    assert_eq!(core.domain_users(d1.id), Ok(1));
}

#[test]
fn an_sva_domain_attaches_at_its_spaces_pasid_only() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let space = core.register_space(SPACE, FaultTarget::None).unwrap();
    let bond = core.bind(A, space).unwrap();
    let (sva, sp, users) = core.bond_info(bond).unwrap().t();
    assert_eq!(users, 1);
    assert_eq!(core.space_pasid(space), Ok(Some(sp)));
    assert_eq!(core.domain_kind(sva), Ok(DomainKind::Sva));
    let tag = core.domain_hw(sva).unwrap().tag;
    let seen = Seen::Sva {
        tag,
        root: SPACE.root.0,
    };
    assert_eq!(
        take(&mut core),
        vec![
            Call::Alloc {
                instance: 0,
                device: A.id,
                kind: "sva",
                tag
            },
            attach_call(A, Some(sp), seen, Seen::Blocked)
        ]
    );
    let inc = Err(Error::Incompatible {
        what: "an SVA domain attaches at its address space's PASID only",
    });
    assert_eq!(core.attach(A, sva), inc);
    assert_eq!(core.attach(B, sva), inc);
    // Nor at another PASID.
    let other = core.alloc_pasid(B).unwrap();
    assert_eq!(core.attach_pasid(B, other, sva), inc);
    core.free_pasid(other).unwrap();
    assert!(take(&mut core).is_empty());
    assert_eq!(core.attached(B, None), Ok(Some(DomainId::BLOCKED)));
    assert_eq!(core.domain_users(sva), Ok(1));
    // At the space's PASID of another device it is fine.
    let p = sp;
    core.attach_pasid(B, p, sva).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(B, Some(p), seen, Seen::Blocked)]
    );
    assert_eq!(
        tagset(&core, sva),
        set([
            tg(A, tag, Some(sp), TagKind::Iotlb),
            tg(B, tag, Some(p), TagKind::Iotlb),
            tg(B, tag, Some(p), TagKind::DevTlb),
        ])
    );
    core.detach_pasid(B, p).unwrap();
    core.unbind(bond).unwrap();
    assert_eq!(
        take(&mut core),
        vec![
            Call::DetachPasid {
                instance: 0,
                device: B.id,
                pasid: p,
                old: seen
            },
            Call::DetachPasid {
                instance: 0,
                device: A.id,
                pasid: sp,
                old: seen
            },
            Call::Free { instance: 0, tag }
        ]
    );
    core.teardown_space(space).unwrap();
    assert!(core.driver().live.is_empty());
}

#[test]
fn a_bind_whose_attach_fails_leaves_nothing_behind() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let space = core.register_space(SPACE, FaultTarget::None).unwrap();
    let in_use = core.pasids().in_use();
    core.driver_mut().fail_attach = Some(Error::Timeout { what: "mock" });
    assert_eq!(core.bind(A, space), Err(Error::Timeout { what: "mock" }));
    let calls = take(&mut core);
    let Call::Alloc { tag, .. } = calls[0] else {
        panic!("{calls:?}")
    };
    let seen = Seen::Sva {
        tag,
        root: SPACE.root.0,
    };
    assert_eq!(
        calls,
        vec![
            Call::Alloc {
                instance: 0,
                device: A.id,
                kind: "sva",
                tag
            },
            attach_call(A, Some(1), seen, Seen::Blocked),
            Call::Free { instance: 0, tag }
        ]
    );
    assert_eq!(core.pasids().in_use(), in_use, "the fresh PASID went back");
    assert_eq!(core.space_pasid(space), Ok(None));
    assert_eq!(core.space_domains(space).unwrap().len(), 0);
    assert!(core.driver().live.is_empty());
    assert!(hw(&core).is_empty());
    assert_eq!(core.attached(A, Some(1)), Ok(None));
}

// ---------------------------------------------------------------------------
// 3. Attach at a PASID.

#[test]
fn attach_pasid_takes_every_domain_kind_and_passes_the_old_one() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let n = nested(&mut core, A, &p);
    let space = core.register_space(SPACE, FaultTarget::None).unwrap();
    // The SVA domain comes from a bind of another device.
    let bond = core.bind(B, space).unwrap();
    // A's PASID is the space's: the only one its SVA domain attaches at.
    let (sva, pasid, _) = core.bond_info(bond).unwrap().t();
    let sva_seen = Seen::Sva {
        tag: core.domain_hw(sva).unwrap().tag,
        root: SPACE.root.0,
    };
    take(&mut core);
    let key = (0, A.id, Some(pasid));
    let steps: [(DomainId, Seen); 6] = [
        (p.id, p.seen),
        (n.id, n.seen),
        (DomainId::IDENTITY, Seen::Identity),
        (sva, sva_seen),
        (DomainId::BLOCKED, Seen::Blocked),
        (p.id, p.seen),
    ];
    // A's tags at this PASID, on the three domains that can hold them.
    let at = |core: &Core<'_>| {
        [p.id, n.id, sva].map(|d| {
            tagset(core, d)
                .into_iter()
                .filter(|t| t.2 == Some(pasid) && t.3 == A.id)
                .collect::<Vec<_>>()
        })
    };
    let sva_tag = sva_seen.tag().unwrap();
    let tags_after: [[Vec<T>; 3]; 6] = [
        [
            vec![tg(A, p.tag, Some(pasid), TagKind::Iotlb)],
            vec![],
            vec![],
        ],
        [
            vec![tg(A, n.tag, Some(pasid), TagKind::NestedParent)],
            vec![tg(A, n.tag, Some(pasid), TagKind::Iotlb)],
            vec![],
        ],
        [vec![], vec![], vec![]],
        [
            vec![],
            vec![],
            vec![tg(A, sva_tag, Some(pasid), TagKind::Iotlb)],
        ],
        [vec![], vec![], vec![]],
        [
            vec![tg(A, p.tag, Some(pasid), TagKind::Iotlb)],
            vec![],
            vec![],
        ],
    ];
    let mut old = Seen::Blocked;
    for ((id, seen), tags) in steps.into_iter().zip(tags_after) {
        core.attach_pasid(A, pasid, id).unwrap();
        assert_eq!(
            take(&mut core),
            vec![attach_call(A, Some(pasid), seen, old)],
            "{seen:?} replacing {old:?}"
        );
        assert_eq!(core.attached(A, Some(pasid)), Ok(Some(id)));
        assert_eq!(hw(&core).get(&key), Some(&seen));
        assert_eq!(core.attached(A, None), Ok(Some(DomainId::BLOCKED)));
        assert_eq!(at(&core), tags, "{seen:?}");
        // Same domain again: nothing.
        core.attach_pasid(A, pasid, id).unwrap();
        assert!(take(&mut core).is_empty());
        assert_eq!(at(&core), tags, "{seen:?}");
        old = seen;
    }
    assert_eq!(core.domain_users(p.id), Ok(1));
    assert_eq!(core.domain_users(n.id), Ok(0));
    assert_eq!(core.domain_users(sva), Ok(1), "B's bond only");
    assert_eq!(
        tagset(&core, p.id),
        set([tg(A, p.tag, Some(pasid), TagKind::Iotlb)])
    );
    assert!(tagset(&core, n.id).is_empty());
    // detach_pasid passes the old domain and leaves nothing at the PASID.
    core.detach_pasid(A, pasid).unwrap();
    assert_eq!(
        take(&mut core),
        vec![Call::DetachPasid {
            instance: 0,
            device: A.id,
            pasid,
            old: p.seen
        }]
    );
    assert_eq!(core.attached(A, Some(pasid)), Ok(None));
    assert_eq!(hw(&core).get(&key), None);
    assert!(tagset(&core, p.id).is_empty());
    assert_eq!(core.domain_users(p.id), Ok(0));
    // Nothing there any more.
    assert_eq!(
        core.detach_pasid(A, pasid),
        Err(Error::NotFound {
            what: Object::Attachment
        })
    );
    assert!(take(&mut core).is_empty());
    // Blocked attached at a PASID is an attachment too, and detaches.
    core.attach_pasid(A, pasid, DomainId::BLOCKED).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(A, Some(pasid), Seen::Blocked, Seen::Blocked)]
    );
    assert_eq!(core.attached(A, Some(pasid)), Ok(Some(DomainId::BLOCKED)));
    core.detach_pasid(A, pasid).unwrap();
    assert_eq!(
        take(&mut core),
        vec![Call::DetachPasid {
            instance: 0,
            device: A.id,
            pasid,
            old: Seen::Blocked
        }]
    );
    assert_eq!(core.attached(A, Some(pasid)), Ok(None));
}

#[test]
fn bad_pasids_are_refused_without_a_driver_call() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d = paging(&mut core, A, PagingFlags::empty());
    // PASIDs 1..=4 allocated through A: 4 is beyond NARROW's 2 bits.
    let ps: Vec<u32> = (0..4).map(|_| core.alloc_pasid(A).unwrap()).collect();
    assert_eq!(ps, vec![1, 2, 3, 4]);
    take(&mut core);
    let cases: [(DeviceId, u32, DomainId); 9] = [
        (A, 0, d.id),
        (A, 0, DomainId::IDENTITY),
        (A, 5, d.id), // never allocated
        (A, 256, d.id),
        (A, 1 << 20, d.id),
        (A, u32::MAX, d.id),
        (NARROW, 4, d.id), // allocated, but >= 2^2
        (NARROW, 4, DomainId::BLOCKED),
        (N, 1, d.id), // the device has no PASIDs
    ];
    for (dev, pasid, dom) in cases {
        assert_eq!(
            core.attach_pasid(dev, pasid, dom),
            Err(Error::BadPasid { pasid }),
            "{dev:?} {pasid}"
        );
    }
    // A PASID checks before the domain does.
    let stale = paging(&mut core, A, PagingFlags::empty());
    core.free_domain(stale.id).unwrap();
    take(&mut core);
    assert_eq!(
        core.attach_pasid(A, 0, stale.id),
        Err(Error::BadPasid { pasid: 0 })
    );
    assert!(take(&mut core).is_empty());
    assert!(hw(&core).is_empty());
    assert!(tagset(&core, d.id).is_empty());
    for dev in [A, NARROW, N] {
        for p in 0..=5 {
            assert_eq!(core.attached(dev, Some(p)), Ok(None));
        }
    }
    // Within the narrow width it works.
    core.attach_pasid(NARROW, 3, d.id).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(NARROW, Some(3), d.seen, Seen::Blocked)]
    );
}

#[test]
fn pasid_attachments_per_device_are_bounded_and_pasids_stay_while_attached() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d = paging(&mut core, A, PagingFlags::empty());
    let ps: Vec<u32> = (0..=PASIDS_PER_DEVICE)
        .map(|_| core.alloc_pasid(A).unwrap())
        .collect();
    for &p in &ps[..PASIDS_PER_DEVICE] {
        core.attach_pasid(A, p, d.id).unwrap();
    }
    assert_eq!(core.domain_users(d.id), Ok(PASIDS_PER_DEVICE as u32));
    take(&mut core);
    let last = ps[PASIDS_PER_DEVICE];
    let tags = tagset(&core, d.id);
    assert_eq!(
        core.attach_pasid(A, last, DomainId::IDENTITY),
        Err(Error::Exhausted {
            what: Object::Attachment
        })
    );
    assert!(take(&mut core).is_empty());
    assert_eq!(core.attached(A, Some(last)), Ok(None));
    assert_eq!(tagset(&core, d.id), tags);
    // Replacing at an attached PASID needs no new slot.
    core.attach_pasid(A, ps[0], DomainId::IDENTITY).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(A, Some(ps[0]), Seen::Identity, d.seen)]
    );
    // Other devices are not limited by A's attachments.
    core.attach_pasid(B, last, DomainId::IDENTITY).unwrap();
    take(&mut core);
    // free_pasid is refused while anything is attached at the PASID.
    for p in [ps[0], ps[1], last] {
        assert_eq!(
            core.free_pasid(p),
            Err(Error::Busy {
                what: "PASID in use"
            })
        );
        assert!(core.pasids().is_used(p));
    }
    for p in [ps[0], ps[1]] {
        core.detach_pasid(A, p).unwrap();
        core.free_pasid(p).unwrap();
        assert!(!core.pasids().is_used(p));
        assert_eq!(core.free_pasid(p), Err(Error::BadPasid { pasid: p }));
    }
    // A freed PASID cannot be attached at any more.
    assert_eq!(
        core.attach_pasid(A, ps[0], d.id),
        Err(Error::BadPasid { pasid: ps[0] })
    );
}

// ---------------------------------------------------------------------------
// 4. Cache tags.

#[test]
fn tags_follow_attachments_exactly() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d = paging(&mut core, A, PagingFlags::empty());
    let p = core.alloc_pasid(B).unwrap();
    let t = d.tag;
    core.attach(A, d.id).unwrap();
    assert_eq!(tagset(&core, d.id), set([tg(A, t, None, TagKind::Iotlb)]));
    core.attach(B, d.id).unwrap();
    assert_eq!(
        tagset(&core, d.id),
        set([
            tg(A, t, None, TagKind::Iotlb),
            tg(B, t, None, TagKind::Iotlb),
            tg(B, t, None, TagKind::DevTlb),
        ]),
        "same domain on two devices: a tag each (and B's device TLB)"
    );
    core.attach_pasid(B, p, d.id).unwrap();
    assert_eq!(tags_in_order(&core, d.id).len(), 5);
    assert!(tagset(&core, d.id).contains(&tg(B, t, Some(p), TagKind::DevTlb)));
    core.detach(B).unwrap();
    assert_eq!(
        tagset(&core, d.id),
        set([
            tg(A, t, None, TagKind::Iotlb),
            tg(B, t, Some(p), TagKind::Iotlb),
            tg(B, t, Some(p), TagKind::DevTlb),
        ])
    );
    core.detach_pasid(B, p).unwrap();
    assert_eq!(tagset(&core, d.id), set([tg(A, t, None, TagKind::Iotlb)]));
    core.attach(A, DomainId::IDENTITY).unwrap();
    assert!(tagset(&core, d.id).is_empty());
    assert_eq!(core.domain_users(d.id), Ok(0));
}

#[test]
fn a_nested_attach_tags_its_parent() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let n = nested(&mut core, B, &p);
    core.attach(B, n.id).unwrap();
    assert_eq!(
        take(&mut core),
        vec![attach_call(B, None, n.seen, Seen::Blocked)]
    );
    let Seen::Nested {
        parent_tag,
        parent_root,
        ..
    } = n.seen
    else {
        unreachable!()
    };
    assert_eq!(
        Seen::Paging {
            tag: parent_tag,
            root: parent_root
        },
        p.seen
    );
    assert_eq!(
        tagset(&core, n.id),
        set([
            tg(B, n.tag, None, TagKind::Iotlb),
            tg(B, n.tag, None, TagKind::DevTlb),
        ])
    );
    assert_eq!(
        tagset(&core, p.id),
        set([
            tg(B, n.tag, None, TagKind::NestedParent),
            tg(B, n.tag, None, TagKind::DevTlb),
        ]),
        "the parent's tags name the nested domain's tag"
    );
    assert_eq!(core.domain_users(p.id), Ok(0), "the parent is not attached");
    core.attach(A, n.id).unwrap();
    assert!(tagset(&core, p.id).contains(&tg(A, n.tag, None, TagKind::NestedParent)));
    assert_eq!(tags_in_order(&core, p.id).len(), 3, "A has no ATS");
    // Replacing the nested domain by its parent at B: parent's own tags.
    core.attach(B, p.id).unwrap();
    assert_eq!(
        tagset(&core, p.id),
        set([
            tg(A, n.tag, None, TagKind::NestedParent),
            tg(B, p.tag, None, TagKind::Iotlb),
            tg(B, p.tag, None, TagKind::DevTlb),
        ])
    );
    assert_eq!(
        tagset(&core, n.id),
        set([tg(A, n.tag, None, TagKind::Iotlb)])
    );
    core.detach(A).unwrap();
    core.detach(B).unwrap();
    assert!(tagset(&core, p.id).is_empty());
    assert!(tagset(&core, n.id).is_empty());
}

#[test]
fn a_failed_attach_changes_nothing() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let q = paging(&mut core, A, PagingFlags::empty());
    let n = nested(&mut core, B, &p);
    let pasid = core.alloc_pasid(B).unwrap();
    core.attach(B, q.id).unwrap();
    core.attach_pasid(B, pasid, p.id).unwrap();
    take(&mut core);
    let snapshot = |core: &Core<'_>| {
        (
            hw(core),
            [p.id, q.id, n.id].map(|d| tags_in_order(core, d)),
            [p.id, q.id, n.id].map(|d| core.domain_users(d).unwrap()),
            core.attached(B, None).unwrap(),
            core.attached(B, Some(pasid)).unwrap(),
            core.attached(A, None).unwrap(),
        )
    };
    let before = snapshot(&core);
    let timeout = Error::Timeout {
        what: "mock attach",
    };
    type Op = fn(&mut Core<'_>, [DomainId; 3], u32) -> Result<(), Error>;
    let ops: [(&str, Op, Call); 6] = [
        (
            "replace at the RID",
            |c, [p, ..], _| c.attach(B, p),
            attach_call(B, None, p.seen, q.seen),
        ),
        (
            "nested at the RID",
            |c, [.., n], _| c.attach(B, n),
            attach_call(B, None, n.seen, q.seen),
        ),
        (
            "detach the RID",
            |c, _, _| c.detach(B),
            attach_call(B, None, Seen::Blocked, q.seen),
        ),
        (
            "replace at the PASID",
            |c, [_, _, n], pasid| c.attach_pasid(B, pasid, n),
            attach_call(B, Some(pasid), n.seen, p.seen),
        ),
        (
            "identity at the PASID",
            |c, _, pasid| c.attach_pasid(B, pasid, DomainId::IDENTITY),
            attach_call(B, Some(pasid), Seen::Identity, p.seen),
        ),
        (
            "detach the PASID",
            |c, _, pasid| c.detach_pasid(B, pasid),
            Call::DetachPasid {
                instance: 0,
                device: B.id,
                pasid,
                old: p.seen,
            },
        ),
    ];
    for (what, op, call) in ops {
        core.driver_mut().fail_attach = Some(timeout);
        assert_eq!(
            op(&mut core, [p.id, q.id, n.id], pasid),
            Err(timeout),
            "{what}"
        );
        assert_eq!(take(&mut core), vec![call], "{what}");
        assert_eq!(snapshot(&core), before, "{what}");
    }
    // The driver refusing the domain (Incompatible) changes nothing either.
    for d in [p, n] {
        core.driver_mut().incompatible.insert(d.tag);
        let r = core.attach(A, d.id);
        assert_eq!(
            r,
            Err(Error::Incompatible {
                what: "mock: told to refuse this domain"
            })
        );
        assert_eq!(
            take(&mut core),
            vec![attach_call(A, None, d.seen, Seen::Blocked)]
        );
        assert_eq!(snapshot(&core), before);
    }
    core.driver_mut().incompatible.clear();
    // And afterwards the same operations work.
    core.attach(B, n.id).unwrap();
    assert_eq!(take(&mut core), vec![attach_call(B, None, n.seen, q.seen)]);
}

#[test]
fn full_tag_slots_refuse_an_attach_and_roll_back_partial_tags() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let n = nested(&mut core, B, &p);
    // A (no ATS) at 16 PASIDs: 16 IOTLB tags, the parent is full.
    let ps: Vec<u32> = (0..TAGS_PER_DOMAIN)
        .map(|_| core.alloc_pasid(A).unwrap())
        .collect();
    for &x in &ps {
        core.attach_pasid(A, x, p.id).unwrap();
    }
    assert_eq!(tags_in_order(&core, p.id).len(), TAGS_PER_DOMAIN);
    take(&mut core);
    let tags_p = tags_in_order(&core, p.id);
    let full = Err(Error::Exhausted {
        what: Object::CacheTag,
    });
    assert_eq!(core.attach(B, p.id), full);
    // The nested domain's own tags fit; its parent's NestedParent tag does
    // not: both are refused and the nested domain's tags rolled back.
    assert_eq!(core.attach(B, n.id), full);
    assert!(take(&mut core).is_empty());
    assert!(tagset(&core, n.id).is_empty());
    assert_eq!(tags_in_order(&core, p.id), tags_p);
    assert_eq!(core.attached(B, None), Ok(Some(DomainId::BLOCKED)));
    assert_eq!(core.domain_users(n.id), Ok(0));
    // One slot freed: the nested domain (one parent tag, B's device TLB on
    // the parent would be the second) still does not fit; A does.
    core.detach_pasid(A, ps[0]).unwrap();
    core.attach(A, n.id).unwrap();
    assert_eq!(tags_in_order(&core, p.id).len(), TAGS_PER_DOMAIN);
    assert!(tagset(&core, p.id).contains(&tg(A, n.tag, None, TagKind::NestedParent)));
}

// ---------------------------------------------------------------------------
// 5. map / unmap / sync.

/// Expected invalidation of `range` through the tags of `d` (in the order
/// the domain holds them, IOTLB, then nested-parent, then device-TLB tags).
fn flush_calls(
    core: &Core<'_>,
    d: DomainId,
    range: (u64, u64),
    pgsize: u64,
    tables: bool,
) -> Vec<Call> {
    let mut tags = tags_in_order(core, d);
    tags.sort_by_key(|t| t.4);
    tags.into_iter()
        .map(|t| inv(t, range, pgsize, tables))
        .collect()
}

#[test]
fn unmap_sync_invalidates_every_tag_and_waits_once_before_freeing_tables() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d = paging(&mut core, A, PagingFlags::empty());
    let p = core.alloc_pasid(B).unwrap();
    core.attach(B, d.id).unwrap(); // IOTLB + device TLB
    core.attach(A, d.id).unwrap(); // IOTLB
    core.attach_pasid(B, p, d.id).unwrap(); // IOTLB + device TLB
    core.map(d.id, Iova(0x20_0000), PhysAddr(0x8000_0000), 2 * PAGE, RW)
        .unwrap();
    core.map(d.id, Iova(0x60_0000), PhysAddr(0x9000_0000), M2, RW)
        .unwrap();
    take(&mut core);
    let start = live(&core);

    // One of two pages: no table freed, no page released.
    let expect = flush_calls(&core, d.id, (0x20_0000, 0x20_1000), PAGE, false);
    core.unmap_sync(d.id, Iova(0x20_0000), PAGE).unwrap();
    let mut want = expect.clone();
    want.push(Call::Wait {
        instance: 0,
        live_pages: start,
    });
    let calls = take(&mut core);
    assert_eq!(calls, want);
    assert_eq!(calls.len(), 6, "5 tags, 1 wait");
    assert_eq!(
        calls[..5]
            .iter()
            .map(|c| match c {
                Call::Invalidate { tag, .. } => tag.kind,
                _ => unreachable!(),
            })
            .collect::<Vec<_>>(),
        [
            TagKind::Iotlb,
            TagKind::Iotlb,
            TagKind::Iotlb,
            TagKind::DevTlb,
            TagKind::DevTlb
        ]
    );
    assert_eq!(live(&core), start);

    // The last page of its leaf table: the table is freed, after the wait.
    core.unmap_sync(d.id, Iova(0x20_1000), PAGE).unwrap();
    let mut want = flush_calls(&core, d.id, (0x20_1000, 0x20_2000), PAGE, true);
    want.push(Call::Wait {
        instance: 0,
        live_pages: start,
    });
    assert_eq!(take(&mut core), want);
    assert_eq!(live(&core), start - 1);

    // The 2 MiB block, the last mapping: its page size, and the two upper
    // tables go too.
    core.unmap_sync(d.id, Iova(0x60_0000), M2).unwrap();
    let mut want = flush_calls(&core, d.id, (0x60_0000, 0x80_0000), M2, true);
    want.push(Call::Wait {
        instance: 0,
        live_pages: start - 1,
    });
    assert_eq!(take(&mut core), want);
    assert_eq!(live(&core), start - 3);
    assert_eq!(core.iova_to_phys(d.id, Iova(0x60_0000)), Ok(None));
}

#[test]
fn an_unattached_domain_unmaps_without_invalidation() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d = paging(&mut core, A, PagingFlags::empty());
    core.map(d.id, Iova(0x1000), PhysAddr(0x8000_0000), PAGE, RW)
        .unwrap();
    let start = live(&core);
    take(&mut core);
    core.unmap_sync(d.id, Iova(0x1000), PAGE).unwrap();
    assert!(take(&mut core).is_empty());
    assert_eq!(live(&core), start - 3);
}

#[test]
fn a_failed_wait_frees_nothing_and_a_second_sync_frees() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d = paging(&mut core, A, PagingFlags::empty());
    core.attach(B, d.id).unwrap();
    core.map(d.id, Iova(0x30_0000), PhysAddr(0x8000_0000), PAGE, RW)
        .unwrap();
    take(&mut core);
    let start = live(&core);
    let mut g = Gather::new();
    core.unmap(d.id, Iova(0x30_0000), PAGE, &mut g).unwrap();
    assert!(
        take(&mut core).is_empty(),
        "unmap alone tells the driver nothing"
    );
    assert_eq!(g.freed_pages(), 3);
    assert_eq!(live(&core), start);
    core.driver_mut().fail_wait = Some(0);
    let expect = flush_calls(&core, d.id, (0x30_0000, 0x30_1000), PAGE, true);
    assert_eq!(
        core.sync(d.id, &mut g),
        Err(Error::Timeout {
            what: "mock completion"
        })
    );
    let mut want = expect.clone();
    want.push(Call::Wait {
        instance: 0,
        live_pages: start,
    });
    assert_eq!(take(&mut core), want);
    assert_eq!(live(&core), start, "nothing freed");
    assert_eq!(g.freed_pages(), 3, "the gather keeps its pages");
    assert_eq!(g.range(), Some((0x30_0000, 0x30_1000)));
    core.driver_mut().fail_wait = None;
    core.sync(d.id, &mut g).unwrap();
    assert_eq!(take(&mut core), want);
    assert_eq!(live(&core), start - 3);
    assert_eq!(g.freed_pages(), 0);
    assert_eq!(g.range(), None);
    // A sync of the now empty gather says nothing to the driver.
    core.sync(d.id, &mut g).unwrap();
    assert!(take(&mut core).is_empty());

    // unmap_sync with a failing wait: the range is unmapped, its tables are
    // leaked rather than freed while the IOMMU might walk them.
    core.map(d.id, Iova(0x30_0000), PhysAddr(0x8000_0000), PAGE, RW)
        .unwrap();
    let before = live(&core);
    core.driver_mut().fail_wait = Some(0);
    assert!(matches!(
        core.unmap_sync(d.id, Iova(0x30_0000), PAGE),
        Err(Error::Timeout { .. })
    ));
    core.driver_mut().fail_wait = None;
    assert_eq!(core.iova_to_phys(d.id, Iova(0x30_0000)), Ok(None));
    assert_eq!(live(&core), before, "leaked, not freed");
    core.detach(B).unwrap();
    core.free_domain(d.id).unwrap();
    assert_eq!(
        pool.counts().live_pages(),
        3,
        "only the leaked tables remain"
    );
}

#[test]
fn unmapping_a_nest_parent_reaches_its_nested_domains() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let n = nested(&mut core, A, &p);
    let pasid = core.alloc_pasid(B).unwrap();
    core.attach(A, n.id).unwrap();
    core.attach_pasid(B, pasid, n.id).unwrap();
    core.map(p.id, Iova(0x10_0000), PhysAddr(0x8000_0000), PAGE, RW)
        .unwrap();
    take(&mut core);
    let start = live(&core);
    core.unmap_sync(p.id, Iova(0x10_0000), PAGE).unwrap();
    let r = (0x10_0000, 0x10_1000);
    let calls = take(&mut core);
    let nt = n.tag;
    // The two NestedParent tags (in the parent's order), then B's device TLB.
    assert_eq!(
        unordered(&calls[..2]),
        unordered(&[
            inv(tg(A, nt, None, TagKind::NestedParent), r, PAGE, true),
            inv(tg(B, nt, Some(pasid), TagKind::NestedParent), r, PAGE, true),
        ])
    );
    assert_eq!(
        calls[2],
        inv(tg(B, nt, Some(pasid), TagKind::DevTlb), r, PAGE, true)
    );
    assert_eq!(
        calls[3..],
        [Call::Wait {
            instance: 0,
            live_pages: start
        }]
    );
    assert_eq!(calls, {
        let mut w = flush_calls(&core, p.id, r, PAGE, true);
        w.push(Call::Wait {
            instance: 0,
            live_pages: start,
        });
        w
    });
    assert_eq!(live(&core), start - 3);
}

/// A paging domain never spans instances (attach refuses it), so the
/// per-instance batching of one flush shows through an address space whose
/// SVA domains live on two instances.
#[test]
fn a_flush_over_two_instances_waits_once_on_each() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let space = core.register_space(SPACE, FaultTarget::None).unwrap();
    for dev in [A, C, B] {
        core.bind(dev, space).unwrap();
    }
    let doms = core.space_domains(space).unwrap().to_vec();
    assert_eq!(doms.len(), 2, "one SVA domain per instance");
    assert_eq!(core.domain_instance(doms[0]), Ok(0));
    assert_eq!(core.domain_instance(doms[1]), Ok(1));
    let pasid = core.space_pasid(space).unwrap();
    let (t0, t1) = (
        core.domain_hw(doms[0]).unwrap().tag,
        core.domain_hw(doms[1]).unwrap().tag,
    );
    take(&mut core);
    let r = (0x1000, 0x3000);
    let l = live(&core);
    core.invalidate_range(space, r.0, r.1).unwrap();
    let calls = take(&mut core);
    // Instance 0: A's IOTLB and B's IOTLB (either order), B's device TLB,
    // one wait; then instance 1 likewise.
    assert_eq!(
        unordered(&calls[..2]),
        unordered(&[
            inv(tg(A, t0, pasid, TagKind::Iotlb), r, PAGE, true),
            inv(tg(B, t0, pasid, TagKind::Iotlb), r, PAGE, true),
        ])
    );
    assert_eq!(
        calls[2..],
        [
            inv(tg(B, t0, pasid, TagKind::DevTlb), r, PAGE, true),
            Call::Wait {
                instance: 0,
                live_pages: l
            },
            inv(tg(C, t1, pasid, TagKind::Iotlb), r, PAGE, true),
            inv(tg(C, t1, pasid, TagKind::DevTlb), r, PAGE, true),
            Call::Wait {
                instance: 1,
                live_pages: l
            },
        ]
    );
    // A failed wait on the first instance stops there.
    core.driver_mut().fail_wait = Some(0);
    assert_eq!(
        core.invalidate_range(space, r.0, r.1),
        Err(Error::Timeout {
            what: "mock completion"
        })
    );
    let calls = take(&mut core);
    assert_eq!(calls.len(), 4);
    assert_eq!(core.driver().waits(), Vec::<u16>::new());
    assert!(matches!(calls[3], Call::Wait { instance: 0, .. }));
    core.driver_mut().fail_wait = None;
    core.teardown_space(space).unwrap();
    assert!(core.driver().live.is_empty());
}

#[test]
fn caching_mode_makes_map_invalidate_the_new_range() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let d = paging(&mut core, A, PagingFlags::empty());
    let unattached = paging(&mut core, A, PagingFlags::empty());
    core.attach(A, d.id).unwrap();
    core.attach(B, d.id).unwrap();
    take(&mut core);
    // Without caching mode map says nothing.
    core.map(d.id, Iova(0x1000), PhysAddr(0x8000_0000), PAGE, RW)
        .unwrap();
    assert!(take(&mut core).is_empty());
    core.driver_mut().flush_on_map = true;
    let l = live(&core);
    core.map(d.id, Iova(0x40_0000), PhysAddr(0x8040_0000), 2 * M2, RW)
        .unwrap();
    let mut want = flush_calls(&core, d.id, (0x40_0000, 0x80_0000), PAGE, true);
    assert_eq!(want.len(), 3);
    want.push(Call::Wait {
        instance: 0,
        live_pages: l,
    });
    assert_eq!(take(&mut core), want);
    // A refused map invalidates nothing.
    assert_eq!(
        core.map(d.id, Iova(0x40_0000), PhysAddr(0x8040_0000), PAGE, RW),
        Err(Error::Overlap { iova: 0x40_0000 })
    );
    assert!(take(&mut core).is_empty());
    // A domain attached nowhere has nothing cached.
    core.map(unattached.id, Iova(0x1000), PhysAddr(0x8000_0000), PAGE, RW)
        .unwrap();
    assert!(take(&mut core).is_empty());
    // A failed invalidation: the mapping stays, the error is returned.
    core.driver_mut().fail_wait = Some(0);
    assert_eq!(
        core.map(d.id, Iova(0x2000), PhysAddr(0x8000_2000), PAGE, RW),
        Err(Error::Timeout {
            what: "mock completion"
        })
    );
    assert_eq!(
        core.iova_to_phys(d.id, Iova(0x2000)),
        Ok(Some(PhysAddr(0x8000_2000)))
    );
}

#[test]
fn only_paging_domains_map() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let n = nested(&mut core, A, &p);
    let space = core.register_space(SPACE, FaultTarget::None).unwrap();
    let bond = core.bind(A, space).unwrap();
    let (sva, _, _) = core.bond_info(bond).unwrap().t();
    take(&mut core);
    let snap = pool.snapshot();
    let no_table = Error::Unsupported {
        what: "mapping into a domain without an I/O page table",
    };
    for d in [n.id, sva, DomainId::BLOCKED, DomainId::IDENTITY] {
        assert_eq!(
            core.map(d, Iova(0x1000), PhysAddr(0x2000), PAGE, RW),
            Err(no_table),
            "{d:?}"
        );
        let mut g = Gather::new();
        assert_eq!(
            core.unmap(d, Iova(0x1000), PAGE, &mut g),
            Err(no_table),
            "{d:?}"
        );
        assert_eq!(
            core.unmap_sync(d, Iova(0x1000), PAGE),
            Err(no_table),
            "{d:?}"
        );
        assert_eq!(
            core.iova_to_phys(d, Iova(0x1000)),
            Err(Error::Unsupported {
                what: "lookups in a domain without an I/O page table"
            }),
            "{d:?}"
        );
    }
    assert!(take(&mut core).is_empty());
    assert_eq!(pool.snapshot(), snap);
}

// ---------------------------------------------------------------------------
// 6. Nested.

#[test]
fn alloc_nested_checks_its_parent_the_driver_and_the_user_data() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let plain = paging(&mut core, A, PagingFlags::DIRTY_TRACKING);
    let good = vtd_s1(0, 0x5000, 48, 0);
    take(&mut core);
    let allocs = core.driver().allocs;
    let not_parent = Err(Error::Incompatible {
        what: "parent is not a nest-parent paging domain",
    });
    assert_eq!(core.alloc_nested(A, plain.id, VTD_S1, &good), not_parent);
    let n = nested(&mut core, A, &p);
    take(&mut core);
    let allocs = allocs + 1;
    assert_eq!(
        core.alloc_nested(A, n.id, VTD_S1, &good),
        not_parent,
        "a nested domain cannot parent"
    );
    assert_eq!(
        core.alloc_nested(C, p.id, VTD_S1, &good),
        Err(Error::Incompatible {
            what: "parent belongs to another IOMMU instance"
        })
    );
    // Bad user data: the parser's typed error.
    let bad: [(Vec<u8>, Error); 9] = [
        (
            vtd_s1(1 << 3, 0x5000, 48, 0),
            Error::InvalidField {
                field: "flags",
                value: 8,
            },
        ),
        (
            vtd_s1(0, 0x5008, 48, 0),
            Error::InvalidField {
                field: "pgtbl_addr",
                value: 0x5008,
            },
        ),
        (
            vtd_s1(0, 1 << 48, 48, 0),
            Error::InvalidField {
                field: "pgtbl_addr",
                value: 1 << 48,
            },
        ),
        (
            vtd_s1(0, 0x5000, 39, 0),
            Error::InvalidField {
                field: "addr_width",
                value: 39,
            },
        ),
        (
            vtd_s1(0, 0x5000, 48, 7),
            Error::InvalidField {
                field: "__reserved",
                value: 7,
            },
        ),
        (
            {
                let mut v = good.clone();
                v.extend_from_slice(&[0, 0, 1]);
                v
            },
            Error::InvalidField {
                field: "trailing bytes",
                value: 26,
            },
        ),
        (
            good[..23].to_vec(),
            Error::OutOfRange {
                what: "user data length",
                value: 23,
            },
        ),
        (
            vtd_s1(1, 0x5000, 48, 0),
            Error::Unsupported { what: "flags.SRE" },
        ),
        (
            vtd_s1(0, 0x5000, 57, 0),
            Error::Unsupported { what: "addr_width" },
        ),
    ];
    for (data, err) in &bad {
        assert_eq!(core.alloc_nested(A, p.id, VTD_S1, data), Err(*err));
    }
    assert_eq!(
        core.alloc_nested(A, p.id, SMMU_STE, &[0; 16]),
        // The driver does not take the other driver's format.
        Err(Error::InvalidField {
            field: "data_type",
            value: SMMU_STE.into()
        })
    );
    // A driver that cannot nest.
    core.driver_mut().nested = None;
    assert_eq!(
        core.alloc_nested(A, p.id, VTD_S1, &good),
        Err(Error::Unsupported {
            what: "nested translation"
        })
    );
    core.driver_mut().nested = Some(vtd_caps());
    assert!(take(&mut core).is_empty(), "no Call::Alloc for any of them");
    assert_eq!(core.driver().allocs, allocs);
    assert_eq!(core.domain_users(p.id), Ok(0));
    // No slot was used: 16 - 3 domains can still be allocated.
    let mut extra = vec![];
    while let Ok(d) = core.alloc_nested(A, p.id, VTD_S1, &good) {
        extra.push(d);
    }
    assert_eq!(extra.len(), 16 - 3);
    // Trailing zero bytes (a newer, larger struct) are accepted.
    core.free_domain(extra.pop().unwrap()).unwrap();
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 8]);
    extra.push(core.alloc_nested(A, p.id, VTD_S1, &longer).unwrap());
    assert_eq!(
        core.free_domain(p.id),
        Err(Error::Busy {
            what: "domain is the parent of nested domains"
        })
    );
    for d in extra {
        core.free_domain(d).unwrap();
    }
    core.free_domain(n.id).unwrap();
    core.free_domain(p.id).unwrap();
    // A good nested domain shows its parent's tag and root at attach.
    let p = paging(&mut core, B, PagingFlags::NEST_PARENT);
    let n = nested(&mut core, B, &p);
    core.attach(B, n.id).unwrap();
    let Seen::Paging { tag, root } = p.seen else {
        unreachable!()
    };
    assert_eq!(
        take(&mut core),
        vec![attach_call(
            B,
            None,
            Seen::Nested {
                tag: n.tag,
                parent_tag: tag,
                parent_root: root
            },
            Seen::Blocked
        )]
    );
}

#[test]
fn invalidate_user_hands_valid_entries_to_the_driver_in_order_then_waits() {
    let pool = TestHal::new(256);
    let mut core = setup(&pool);
    let p = paging(&mut core, A, PagingFlags::NEST_PARENT);
    let n = nested(&mut core, A, &p);
    core.attach(A, n.id).unwrap();
    take(&mut core);
    let e = [
        vtd_inv(0x1000, 1, 0, 0),
        vtd_inv(0, u64::MAX, 0, 0),
        vtd_inv(0x40_0000, 16, 1, 0),
    ];
    let parsed = [
        VtdS1Inv::Range {
            addr: 0x1000,
            npages: 1,
            leaf: false,
        },
        VtdS1Inv::All,
        VtdS1Inv::Range {
            addr: 0x40_0000,
            npages: 16,
            leaf: true,
        },
    ];
    let user = |i: usize| Call::InvalidateUser {
        tag: n.tag,
        inv: UserInv::Vtd(parsed[i]),
    };
    let wait = Call::Wait {
        instance: 0,
        live_pages: live(&core),
    };
    let ty = VTD_INV;
    let all = e.concat();
    assert_eq!(
        core.invalidate_user(n.id, ty, &all, 24, 3),
        Ok(InvalidateOutcome {
            handled: 3,
            error: None
        })
    );
    assert_eq!(
        take(&mut core),
        vec![user(0), user(1), user(2), wait.clone()]
    );
    // Longer entries with zero padding.
    let padded: Vec<u8> = e
        .iter()
        .flat_map(|x| x.iter().copied().chain([0u8; 8]))
        .collect();
    assert_eq!(
        core.invalidate_user(n.id, ty, &padded, 32, 3),
        Ok(InvalidateOutcome {
            handled: 3,
            error: None
        })
    );
    assert_eq!(
        take(&mut core),
        vec![user(0), user(1), user(2), wait.clone()]
    );
    // A bad entry at k: the first k reach the driver, then the wait.
    let bad = vtd_inv(0x1000, 1, 2, 0);
    for k in 0..3 {
        let mut entries = e.clone();
        entries[k] = bad.clone();
        let data = entries.concat();
        assert_eq!(
            core.invalidate_user(n.id, ty, &data, 24, 3),
            Ok(InvalidateOutcome {
                handled: k,
                error: Some((
                    k,
                    Error::InvalidField {
                        field: "flags",
                        value: 2
                    }
                ))
            }),
            "bad entry at {k}"
        );
        let mut want: Vec<Call> = (0..k).map(user).collect();
        if k > 0 {
            want.push(wait.clone());
        }
        assert_eq!(take(&mut core), want, "bad entry at {k}");
    }
    // The array ends early: the incomplete entry is refused.
    assert_eq!(
        core.invalidate_user(n.id, ty, &all[..60], 24, 3),
        Ok(InvalidateOutcome {
            handled: 2,
            error: Some((
                2,
                Error::OutOfRange {
                    what: "user data length",
                    value: 12
                }
            ))
        })
    );
    assert_eq!(take(&mut core), vec![user(0), user(1), wait.clone()]);
    // The driver refuses entry k: same shape; it did see entry k.
    for k in 1..3 {
        core.driver_mut().fail_user_inv_at = Some(k);
        assert_eq!(
            core.invalidate_user(n.id, ty, &all, 24, 3),
            Ok(InvalidateOutcome {
                handled: k,
                error: Some((
                    k,
                    Error::Hardware {
                        register: "mock CMDQ_CONS.ERR",
                        value: 2
                    }
                ))
            })
        );
        let mut want: Vec<Call> = (0..=k).map(user).collect();
        want.push(wait.clone());
        assert_eq!(take(&mut core), want, "driver error at {k}");
    }
    core.driver_mut().fail_user_inv_at = None;
    // The final wait fails: reported at index `handled`.
    core.driver_mut().fail_wait = Some(0);
    assert_eq!(
        core.invalidate_user(n.id, ty, &all, 24, 3),
        Ok(InvalidateOutcome {
            handled: 3,
            error: Some((
                3,
                Error::Timeout {
                    what: "mock completion"
                }
            ))
        })
    );
    assert_eq!(
        take(&mut core),
        vec![user(0), user(1), user(2), wait.clone()]
    );
    core.driver_mut().fail_wait = None;
    // Nothing to do: nothing sent, not even a wait.
    assert_eq!(
        core.invalidate_user(n.id, ty, &[], 24, 0),
        Ok(InvalidateOutcome {
            handled: 0,
            error: None
        })
    );
    assert_eq!(
        core.invalidate_user(n.id, ty, &all, 16, 3),
        Ok(InvalidateOutcome {
            handled: 0,
            error: Some((
                0,
                Error::OutOfRange {
                    what: "entry_len",
                    value: 16
                }
            ))
        })
    );
    assert!(take(&mut core).is_empty());
    // Only a nested domain takes user invalidations.
    for d in [p.id, DomainId::IDENTITY, DomainId::BLOCKED] {
        assert_eq!(
            core.invalidate_user(d, ty, &all, 24, 3),
            Err(Error::Incompatible {
                what: "user invalidation needs a nested domain"
            }),
            "{d:?}"
        );
    }
    assert!(take(&mut core).is_empty());
}

// ---------------------------------------------------------------------------
// 7. hw_info.

#[test]
fn hw_info_is_the_drivers_for_known_devices_only() {
    let pool = TestHal::new(16);
    let mut core = setup(&pool);
    for (dev, reg0) in [(A, 0x1000), (C, 0x1001)] {
        let info = core.hw_info(dev).unwrap();
        assert_eq!(info.len, 2);
        assert_eq!(&info.regs[..2], &[reg0, 0xabcd]);
        assert_eq!(Ok(info), IommuDriver::hw_info(core.driver(), dev.instance));
    }
    for dev in [
        DeviceId {
            instance: 0,
            id: 0x99,
        },
        DeviceId {
            instance: 1,
            id: 0x10,
        },
        DeviceId {
            instance: 7,
            id: 0x10,
        },
    ] {
        assert_eq!(
            core.hw_info(dev),
            Err(Error::NotFound {
                what: Object::Device
            }),
            "{dev:?}"
        );
    }
    assert!(take(&mut core).is_empty());
}

// ---------------------------------------------------------------------------
// 8. Random sequences against a model.

/// The devices of the property test: two per instance, one of each with ATS.
const PDEVS: [(DeviceId, bool); 4] = [
    (
        DeviceId {
            instance: 0,
            id: 0x10,
        },
        false,
    ),
    (
        DeviceId {
            instance: 0,
            id: 0x11,
        },
        true,
    ),
    (
        DeviceId {
            instance: 1,
            id: 0x20,
        },
        false,
    ),
    (
        DeviceId {
            instance: 1,
            id: 0x21,
        },
        true,
    ),
];
/// PASIDs the ops pick from: three allocated at setup, 0, one never allocated.
const PPASIDS: [u32; 5] = [1, 2, 3, 0, 9];
/// Mapping slots: 4 KiB pages in four 2 MiB regions, two pages each.
const MSLOTS: u8 = 8;

fn slot_iova(slot: u8) -> u64 {
    (slot as u64 % 4) * M2 + (slot as u64 / 4) * PAGE
}

fn slot_paddr(slot: u8) -> u64 {
    0x8000_0000 + slot_iova(slot)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MRef {
    Blocked,
    Identity,
    Dom(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MKind {
    Paging { nest_parent: bool },
    Nested { parent: usize },
}

#[derive(Clone, Debug)]
struct MDom {
    id: DomainId,
    instance: u16,
    tag: u32,
    root: u64,
    kind: MKind,
    live: bool,
    mapped: BTreeSet<u8>,
}

/// What the core should hold.
struct Model {
    /// Every domain ever allocated (freed ones stay, as stale ids).
    doms: Vec<MDom>,
    /// (device index, PASID) -> domain; a RID absent here is Blocked.
    att: BTreeMap<(usize, Option<u32>), MRef>,
    next_tag: u32,
}

impl Model {
    /// Any domain: Blocked, Identity, or one ever allocated (maybe freed,
    /// maybe of the other instance).
    fn pick(&self, sel: usize) -> MRef {
        match sel % 8 {
            0 => MRef::Blocked,
            1 => MRef::Identity,
            _ if self.doms.is_empty() => MRef::Blocked,
            _ => MRef::Dom(sel / 8 % self.doms.len()),
        }
    }

    /// A live domain satisfying `pred`, if any.
    fn pick_live(&self, sel: usize, pred: impl Fn(&MDom) -> bool) -> Option<usize> {
        let c: Vec<usize> = (0..self.doms.len())
            .filter(|&i| self.doms[i].live && pred(&self.doms[i]))
            .collect();
        (!c.is_empty()).then(|| c[sel % c.len()])
    }

    fn id(&self, r: MRef) -> DomainId {
        match r {
            MRef::Blocked => DomainId::BLOCKED,
            MRef::Identity => DomainId::IDENTITY,
            MRef::Dom(i) => self.doms[i].id,
        }
    }

    fn seen(&self, r: MRef) -> Seen {
        match r {
            MRef::Blocked => Seen::Blocked,
            MRef::Identity => Seen::Identity,
            MRef::Dom(i) => {
                let d = &self.doms[i];
                match d.kind {
                    MKind::Paging { .. } => Seen::Paging {
                        tag: d.tag,
                        root: d.root,
                    },
                    MKind::Nested { parent } => Seen::Nested {
                        tag: d.tag,
                        parent_tag: self.doms[parent].tag,
                        parent_root: self.doms[parent].root,
                    },
                }
            }
        }
    }

    fn live_count(&self) -> usize {
        self.doms.iter().filter(|d| d.live).count()
    }

    fn users(&self, i: usize) -> u32 {
        self.att.values().filter(|r| **r == MRef::Dom(i)).count() as u32
    }

    fn children(&self, i: usize) -> usize {
        self.doms
            .iter()
            .filter(|d| d.live && d.kind == MKind::Nested { parent: i })
            .count()
    }

    /// The tags an attachment of `r` at (`dev`, `pasid`) records, and on
    /// which domain.
    fn attach_tags(&self, dev: usize, pasid: Option<u32>, r: MRef) -> Vec<(usize, T)> {
        let MRef::Dom(i) = r else { return vec![] };
        let (d, ats) = PDEVS[dev];
        let tag = self.doms[i].tag;
        let mut v = vec![(i, tg(d, tag, pasid, TagKind::Iotlb))];
        if ats {
            v.push((i, tg(d, tag, pasid, TagKind::DevTlb)));
        }
        if let MKind::Nested { parent } = self.doms[i].kind {
            v.push((parent, tg(d, tag, pasid, TagKind::NestedParent)));
            if ats {
                v.push((parent, tg(d, tag, pasid, TagKind::DevTlb)));
            }
        }
        v
    }

    fn tags_of(&self, i: usize) -> BTreeSet<T> {
        self.att
            .iter()
            .flat_map(|(&(dev, pasid), &r)| self.attach_tags(dev, pasid, r))
            .filter(|(j, _)| *j == i)
            .map(|(_, t)| t)
            .collect()
    }

    /// Table pages: a root per live paging domain, and with anything mapped
    /// the two upper tables plus one leaf table per 2 MiB region used.
    fn pages(&self) -> u64 {
        self.doms
            .iter()
            .filter(|d| d.live && matches!(d.kind, MKind::Paging { .. }))
            .map(|d| {
                let regions: BTreeSet<u8> = d.mapped.iter().map(|s| s % 4).collect();
                1 + if d.mapped.is_empty() {
                    0
                } else {
                    2 + regions.len() as u64
                }
            })
            .sum()
    }

    fn hw(&self) -> BTreeMap<(u16, u32, Option<u32>), Seen> {
        self.att
            .iter()
            .filter(|(_, r)| **r != MRef::Blocked)
            .map(|(&(dev, pasid), &r)| {
                let d = PDEVS[dev].0;
                ((d.instance, d.id, pasid), self.seen(r))
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Op {
    AllocPaging {
        dev: usize,
        nest_parent: bool,
    },
    AllocNested {
        dev: usize,
        parent: usize,
    },
    Attach {
        dev: usize,
        dom: usize,
    },
    AttachPasid {
        dev: usize,
        pasid: usize,
        dom: usize,
    },
    Detach {
        dev: usize,
    },
    DetachPasid {
        dev: usize,
        pasid: usize,
    },
    Free {
        dom: usize,
    },
    Map {
        dom: usize,
        slot: u8,
    },
    UnmapSync {
        dom: usize,
        slot: u8,
    },
    /// A nested domain on a live nest parent of the device's instance.
    AllocNestedGood {
        dev: usize,
        nth: usize,
    },
    /// Attach a live domain of the device's instance (at a PASID of 1..=3).
    AttachGood {
        dev: usize,
        nth: usize,
        pasid: Option<usize>,
    },
    /// Map into a live paging domain.
    MapGood {
        nth: usize,
        slot: u8,
    },
    /// Unmap a mapped slot of a live paging domain.
    UnmapGood {
        nth: usize,
        k: usize,
    },
    /// Like `AttachGood`, but the driver fails the attach (`Timeout`) or
    /// refuses the domain (`Incompatible`): nothing may change.
    AttachFail {
        dev: usize,
        nth: usize,
        pasid: Option<usize>,
        refuse: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize, any::<bool>())
            .prop_map(|(dev, nest_parent)| Op::AllocPaging { dev, nest_parent }),
        2 => (0..4usize, 0..64usize).prop_map(|(dev, parent)| Op::AllocNested { dev, parent }),
        4 => (0..4usize, 0..256usize).prop_map(|(dev, dom)| Op::Attach { dev, dom }),
        4 => (0..4usize, 0..PPASIDS.len(), 0..256usize)
            .prop_map(|(dev, pasid, dom)| Op::AttachPasid { dev, pasid, dom }),
        1 => (0..4usize).prop_map(|dev| Op::Detach { dev }),
        2 => (0..4usize, 0..PPASIDS.len()).prop_map(|(dev, pasid)| Op::DetachPasid { dev, pasid }),
        3 => (0..256usize).prop_map(|dom| Op::Free { dom }),
        1 => (0..256usize, 0..MSLOTS).prop_map(|(dom, slot)| Op::Map { dom, slot }),
        1 => (0..256usize, 0..MSLOTS).prop_map(|(dom, slot)| Op::UnmapSync { dom, slot }),
        3 => (0..4usize, 0..32usize).prop_map(|(dev, nth)| Op::AllocNestedGood { dev, nth }),
        8 => (0..4usize, 0..32usize, prop::option::of(0..3usize))
            .prop_map(|(dev, nth, pasid)| Op::AttachGood { dev, nth, pasid }),
        6 => (0..32usize, 0..MSLOTS).prop_map(|(nth, slot)| Op::MapGood { nth, slot }),
        5 => (0..32usize, 0..MSLOTS as usize).prop_map(|(nth, k)| Op::UnmapGood { nth, k }),
        2 => (0..4usize, 0..32usize, prop::option::of(0..3usize), any::<bool>())
            .prop_map(|(dev, nth, pasid, refuse)| Op::AttachFail { dev, nth, pasid, refuse }),
    ]
}

fn prop_setup(pool: &TestHal, caching_mode: bool) -> Box<Core<'_>> {
    let mut m = Mock::new(2).with_pool(pool);
    m.nested = Some(vtd_caps());
    m.flush_on_map = caching_mode;
    let devices = PDEVS.map(|(dev, ats)| (dev, 8, ats));
    let mut core: Box<Core<'_>> = core_over(pool, m, &devices);
    for want in 1..=3 {
        assert_eq!(core.alloc_pasid(PDEVS[0].0), Ok(want));
    }
    core.driver_mut().clear();
    core
}

/// Attach `target` at (`dev`, `pasid`): predicted result and driver call.
fn model_attach(
    core: &mut Core<'_>,
    m: &mut Model,
    dev: usize,
    pasid: Option<u32>,
    target: MRef,
    fail: Option<bool>,
) {
    let d = PDEVS[dev].0;
    let key = (dev, pasid);
    let entry = m.att.get(&key).copied();
    let old = entry.unwrap_or(MRef::Blocked);
    let expect: Result<bool, Error> = match target {
        MRef::Dom(i) if !m.doms[i].live => Err(Error::NotFound {
            what: Object::Domain,
        }),
        MRef::Dom(i) if m.doms[i].instance != d.instance => Err(Error::Incompatible {
            what: "domain belongs to another IOMMU instance",
        }),
        _ if old == target && (pasid.is_none() || entry.is_some()) => Ok(false),
        _ => {
            // New tags are added before the old ones go.
            let new = m.attach_tags(dev, pasid, target);
            let full = new.iter().any(|(j, _)| {
                let mut all = m.tags_of(*j);
                all.extend(new.iter().filter(|(k, _)| k == j).map(|(_, t)| *t));
                all.len() > TAGS_PER_DOMAIN
            });
            if full {
                Err(Error::Exhausted {
                    what: Object::CacheTag,
                })
            } else {
                Ok(true)
            }
        }
    };
    let id = m.id(target);
    let refused = Error::Incompatible {
        what: "mock: told to refuse this domain",
    };
    let timeout = Error::Timeout {
        what: "mock attach failure",
    };
    match fail {
        Some(true) => {
            if let MRef::Dom(i) = target {
                core.driver_mut().incompatible.insert(m.doms[i].tag);
            }
        }
        Some(false) => core.driver_mut().fail_attach = Some(timeout),
        None => {}
    }
    let r = match pasid {
        None => core.attach(d, id),
        Some(p) => core.attach_pasid(d, p, id),
    };
    core.driver_mut().incompatible.clear();
    core.driver_mut().fail_attach = None;
    let calls = take(core);
    // The driver saw the attach and failed it: nothing changes.
    let refuses = match fail {
        Some(true) => matches!(target, MRef::Dom(_)),
        Some(false) => true,
        None => false,
    };
    if expect == Ok(true) && refuses {
        let want = if fail == Some(true) { refused } else { timeout };
        assert_eq!(r, Err(want));
        assert_eq!(
            calls,
            vec![attach_call(d, pasid, m.seen(target), m.seen(old))]
        );
        return;
    }
    match expect {
        Err(e) => {
            assert_eq!(r, Err(e));
            assert!(calls.is_empty(), "{calls:?}");
        }
        Ok(false) => {
            assert_eq!(r, Ok(()));
            assert!(calls.is_empty(), "no-op re-attach: {calls:?}");
        }
        Ok(true) => {
            assert_eq!(r, Ok(()));
            assert_eq!(
                calls,
                vec![attach_call(d, pasid, m.seen(target), m.seen(old))]
            );
            if pasid.is_none() && target == MRef::Blocked {
                m.att.remove(&key);
            } else {
                m.att.insert(key, target);
            }
        }
    }
}

/// The plain op a targeted one stands for (`None`: nothing fits, skip).
fn resolve(m: &Model, op: &Op) -> Option<Op> {
    // The selector `pick` maps back to domain `i`.
    let sel = |i: usize| 2 + 8 * i;
    Some(match *op {
        Op::AllocNestedGood { dev, nth } => {
            let inst = PDEVS[dev].0.instance;
            let i = m.pick_live(nth, |d| {
                d.instance == inst && d.kind == (MKind::Paging { nest_parent: true })
            })?;
            Op::AllocNested { dev, parent: i }
        }
        Op::AttachFail {
            dev,
            nth,
            pasid,
            refuse,
        } => {
            let inst = PDEVS[dev].0.instance;
            let i = m.pick_live(nth, |d| d.instance == inst)?;
            Op::AttachFail {
                dev,
                nth: sel(i),
                pasid,
                refuse,
            }
        }
        Op::AttachGood { dev, nth, pasid } => {
            let inst = PDEVS[dev].0.instance;
            let i = m.pick_live(nth, |d| d.instance == inst)?;
            match pasid {
                None => Op::Attach { dev, dom: sel(i) },
                Some(pasid) => Op::AttachPasid {
                    dev,
                    pasid,
                    dom: sel(i),
                },
            }
        }
        Op::MapGood { nth, slot } => {
            let i = m.pick_live(nth, |d| matches!(d.kind, MKind::Paging { .. }))?;
            Op::Map { dom: sel(i), slot }
        }
        Op::UnmapGood { nth, k } => {
            let i = m.pick_live(nth, |d| !d.mapped.is_empty())?;
            let slots: Vec<u8> = m.doms[i].mapped.iter().copied().collect();
            Op::UnmapSync {
                dom: sel(i),
                slot: slots[k % slots.len()],
            }
        }
        ref other => other.clone(),
    })
}

fn model_step(core: &mut Core<'_>, m: &mut Model, op: &Op) {
    let Some(op) = resolve(m, op) else { return };
    let op = &op;
    take(core);
    let live_before = live(core);
    match *op {
        Op::AllocPaging { dev, nest_parent } => {
            let d = PDEVS[dev].0;
            let flags = if nest_parent {
                PagingFlags::NEST_PARENT
            } else {
                PagingFlags::empty()
            };
            let before = core.hal().live();
            let r = core.alloc_paging(d, flags);
            let calls = take(core);
            if m.live_count() == 16 {
                assert_eq!(
                    r,
                    Err(Error::Exhausted {
                        what: Object::Domain
                    })
                );
                assert!(calls.is_empty());
                return;
            }
            let id = r.unwrap();
            let tag = m.next_tag;
            m.next_tag += 1;
            assert_eq!(
                calls,
                vec![Call::Alloc {
                    instance: d.instance,
                    device: d.id,
                    kind: "paging",
                    tag
                }]
            );
            let new: Vec<_> = core
                .hal()
                .live()
                .into_iter()
                .filter(|x| !before.contains(x))
                .collect();
            assert_eq!(new.len(), 1);
            m.doms.push(MDom {
                id,
                instance: d.instance,
                tag,
                root: new[0].0,
                kind: MKind::Paging { nest_parent },
                live: true,
                mapped: BTreeSet::new(),
            });
        }
        Op::AllocNested { dev, parent } => {
            if m.doms.is_empty() {
                return;
            }
            let d = PDEVS[dev].0;
            let pi = parent % m.doms.len();
            let p = &m.doms[pi];
            let expect = if !p.live {
                Err(Error::NotFound {
                    what: Object::Domain,
                })
            } else if p.instance != d.instance {
                Err(Error::Incompatible {
                    what: "parent belongs to another IOMMU instance",
                })
            } else if p.kind != (MKind::Paging { nest_parent: true }) {
                Err(Error::Incompatible {
                    what: "parent is not a nest-parent paging domain",
                })
            } else if m.live_count() == 16 {
                Err(Error::Exhausted {
                    what: Object::Domain,
                })
            } else {
                Ok(())
            };
            let r = core.alloc_nested(d, p.id, VTD_S1, &vtd_s1(0, 0x5000, 48, 0));
            let calls = take(core);
            if let Err(e) = expect {
                assert_eq!(r, Err(e));
                assert!(calls.is_empty());
                return;
            }
            let id = r.unwrap();
            let tag = m.next_tag;
            m.next_tag += 1;
            assert_eq!(
                calls,
                vec![Call::Alloc {
                    instance: d.instance,
                    device: d.id,
                    kind: "nested",
                    tag
                }]
            );
            m.doms.push(MDom {
                id,
                instance: d.instance,
                tag,
                root: 0,
                kind: MKind::Nested { parent: pi },
                live: true,
                mapped: BTreeSet::new(),
            });
        }
        Op::AttachFail {
            dev,
            pasid: None,
            nth: dom,
            refuse,
        } => {
            let target = m.pick(dom);
            model_attach(core, m, dev, None, target, Some(refuse));
        }
        Op::Attach { dev, dom } => {
            let target = m.pick(dom);
            model_attach(core, m, dev, None, target, None);
        }
        Op::Detach { dev } => model_attach(core, m, dev, None, MRef::Blocked, None),
        Op::AttachPasid { dev, pasid, dom }
        | Op::AttachFail {
            dev,
            pasid: Some(pasid),
            nth: dom,
            ..
        } => {
            let fail = match *op {
                Op::AttachFail { refuse, .. } => Some(refuse),
                _ => None,
            };
            let p = PPASIDS[pasid];
            let target = m.pick(dom);
            if p == 0 || p == 9 {
                assert_eq!(
                    core.attach_pasid(PDEVS[dev].0, p, m.id(target)),
                    Err(Error::BadPasid { pasid: p })
                );
                assert!(take(core).is_empty());
                return;
            }
            model_attach(core, m, dev, Some(p), target, fail);
        }
        Op::DetachPasid { dev, pasid } => {
            let p = PPASIDS[pasid];
            let d = PDEVS[dev].0;
            let r = core.detach_pasid(d, p);
            let calls = take(core);
            match m.att.remove(&(dev, Some(p))) {
                None => {
                    assert_eq!(
                        r,
                        Err(Error::NotFound {
                            what: Object::Attachment
                        })
                    );
                    assert!(calls.is_empty());
                }
                Some(old) => {
                    assert_eq!(r, Ok(()));
                    assert_eq!(
                        calls,
                        vec![Call::DetachPasid {
                            instance: d.instance,
                            device: d.id,
                            pasid: p,
                            old: m.seen(old)
                        }]
                    );
                }
            }
        }
        Op::Free { dom } => {
            let target = m.pick(dom);
            let r = core.free_domain(m.id(target));
            let calls = take(core);
            let expect = match target {
                MRef::Blocked | MRef::Identity => Err(Error::Unsupported {
                    what: "freeing the static Blocked / Identity domains",
                }),
                MRef::Dom(i) if !m.doms[i].live => Err(Error::NotFound {
                    what: Object::Domain,
                }),
                MRef::Dom(i) if m.users(i) > 0 => Err(Error::Busy {
                    what: "domain is attached",
                }),
                MRef::Dom(i) if m.children(i) > 0 => Err(Error::Busy {
                    what: "domain is the parent of nested domains",
                }),
                MRef::Dom(_) => Ok(()),
            };
            assert_eq!(r, expect);
            if let (Ok(()), MRef::Dom(i)) = (expect, target) {
                let d = &mut m.doms[i];
                d.live = false;
                assert_eq!(
                    calls,
                    vec![Call::Free {
                        instance: d.instance,
                        tag: d.tag
                    }]
                );
            } else {
                assert!(calls.is_empty());
            }
        }
        Op::AllocNestedGood { .. }
        | Op::AttachGood { .. }
        | Op::MapGood { .. }
        | Op::UnmapGood { .. } => unreachable!("resolved"),
        Op::Map { dom, slot } | Op::UnmapSync { dom, slot } => {
            let is_map = matches!(op, Op::Map { .. });
            let target = m.pick(dom);
            let id = m.id(target);
            let iova = slot_iova(slot);
            let tags = core.domain_tags(id).map(|t| t.count()).unwrap_or(0);
            let flush = |core: &Core<'_>, tables: bool| {
                flush_calls(core, id, (iova, iova + PAGE), PAGE, tables)
            };
            let expect = match target {
                MRef::Blocked | MRef::Identity => Err(Error::Unsupported {
                    what: "mapping into a domain without an I/O page table",
                }),
                MRef::Dom(i) if !m.doms[i].live => Err(Error::NotFound {
                    what: Object::Domain,
                }),
                MRef::Dom(i) if matches!(m.doms[i].kind, MKind::Nested { .. }) => {
                    Err(Error::Unsupported {
                        what: "mapping into a domain without an I/O page table",
                    })
                }
                MRef::Dom(i) if is_map && m.doms[i].mapped.contains(&slot) => {
                    Err(Error::Overlap { iova })
                }
                MRef::Dom(i) if !is_map && !m.doms[i].mapped.contains(&slot) => {
                    Err(Error::NotMapped { iova })
                }
                MRef::Dom(_) => Ok(()),
            };
            let r = if is_map {
                core.map(id, Iova(iova), PhysAddr(slot_paddr(slot)), PAGE, RW)
            } else {
                core.unmap_sync(id, Iova(iova), PAGE)
            };
            let calls = take(core);
            assert_eq!(r, expect);
            let (Ok(()), MRef::Dom(i)) = (expect, target) else {
                assert!(calls.is_empty());
                return;
            };
            let pages_before = m.pages();
            if is_map {
                m.doms[i].mapped.insert(slot);
            } else {
                m.doms[i].mapped.remove(&slot);
            }
            let pages_after = m.pages();
            let instance = m.doms[i].instance;
            let want = if tags == 0 || (is_map && !core.driver().flush_on_map) {
                vec![]
            } else if is_map {
                // Caching mode: the new range, paging-structure caches
                // too (new tables may hang under cached not-present
                // entries); the new tables are live already.
                let mut w = flush(core, true);
                w.push(Call::Wait {
                    instance,
                    live_pages: pages_after,
                });
                w
            } else {
                // Freed tables are still live at the wait.
                let mut w = flush(core, pages_after < pages_before);
                w.push(Call::Wait {
                    instance,
                    live_pages: live_before,
                });
                w
            };
            assert_eq!(calls, want);
        }
    }
}

fn model_check(core: &Core<'_>, m: &Model) {
    for (k, (d, _)) in PDEVS.iter().enumerate() {
        let rid = m.att.get(&(k, None)).copied().unwrap_or(MRef::Blocked);
        assert_eq!(core.attached(*d, None), Ok(Some(m.id(rid))), "{d:?}");
        for p in PPASIDS {
            let want = m.att.get(&(k, Some(p))).map(|r| m.id(*r));
            assert_eq!(core.attached(*d, Some(p)), Ok(want), "{d:?} {p}");
        }
    }
    let mock_hw: BTreeMap<_, _> = core
        .driver()
        .hw
        .iter()
        .filter(|(_, s)| **s != Seen::Blocked)
        .map(|(k, s)| (*k, *s))
        .collect();
    assert_eq!(mock_hw, m.hw());
    for (i, d) in m.doms.iter().enumerate() {
        if !d.live {
            assert_eq!(
                core.domain_kind(d.id),
                Err(Error::NotFound {
                    what: Object::Domain
                })
            );
            assert!(core.domain_tags(d.id).is_err());
            continue;
        }
        assert_eq!(tagset(core, d.id), m.tags_of(i), "tags of {i}: {d:?}");
        assert_eq!(
            tags_in_order(core, d.id).len(),
            m.tags_of(i).len(),
            "distinct"
        );
        assert_eq!(core.domain_users(d.id), Ok(m.users(i)));
        assert_eq!(core.domain_hw(d.id).map(|h| h.tag), Ok(d.tag));
        assert_eq!(core.domain_instance(d.id), Ok(d.instance));
        if let MKind::Paging { .. } = d.kind {
            assert_eq!(core.domain_kind(d.id), Ok(DomainKind::Paging));
            for s in 0..MSLOTS {
                let want = d.mapped.contains(&s).then(|| slot_paddr(s));
                assert_eq!(
                    core.iova_to_phys(d.id, Iova(slot_iova(s))),
                    Ok(want.map(PhysAddr))
                );
            }
        } else {
            assert_eq!(core.domain_kind(d.id), Ok(DomainKind::Nested));
        }
    }
    let live_tags: BTreeSet<(u16, u32)> = m
        .doms
        .iter()
        .filter(|d| d.live)
        .map(|d| (d.instance, d.tag))
        .collect();
    assert_eq!(core.driver().live, live_tags);
    assert_eq!(live(core), m.pages());
}

fn run_model(ops: &[Op], caching_mode: bool) {
    let pool = TestHal::new(512);
    let mut core = prop_setup(&pool, caching_mode);
    let mut m = Model {
        doms: vec![],
        att: BTreeMap::new(),
        next_tag: 1,
    };
    model_check(&core, &m);
    for op in ops {
        model_step(&mut core, &mut m, op);
        model_check(&core, &m);
    }
    // Detach and free everything: nothing may be left.
    for (&(dev, pasid), _) in m.att.clone().iter() {
        match pasid {
            None => core.detach(PDEVS[dev].0).unwrap(),
            Some(p) => core.detach_pasid(PDEVS[dev].0, p).unwrap(),
        }
    }
    for nested_first in [true, false] {
        for d in m.doms.iter().filter(|d| d.live) {
            if matches!(d.kind, MKind::Nested { .. }) == nested_first {
                core.free_domain(d.id).unwrap();
            }
        }
    }
    for p in 1..=3 {
        core.free_pasid(p).unwrap();
    }
    assert_eq!(core.pasids().in_use(), 0);
    assert!(core.driver().live.is_empty());
    assert!(core.driver().hw.values().all(|s| *s == Seen::Blocked));
    for d in m.doms.iter() {
        assert!(core.domain_kind(d.id).is_err());
    }
    drop(core);
    assert_eq!(pool.counts().live_pages(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        max_shrink_iters: 4000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_domain_and_attach_sequences_match_the_model(
        ops in prop::collection::vec(op(), 1..120),
        caching_mode in any::<bool>(),
    ) {
        run_model(&ops, caching_mode);
    }
}
