//! The iommufd-style objects (IOAS, HWPTs) over the core and the mock driver.

mod common;

use std::collections::BTreeMap;

use common::TestHal;
use common::mock::{Call, Mock, TestCaps, core_over};
use iommu::core::{DeviceId, DomainId, Iommu, PagingFlags};
use iommu::iommufd::{self, Area, Ioas};
use iommu::pgtable::Prot;
use iommu::{Error, Object};
use iommu::{Iova, PhysAddr};
use proptest::prelude::*;

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<8, 8>>;

const DEV: DeviceId = DeviceId {
    instance: 0,
    id: 0x08,
};
const RW: Prot = Prot::READ.union(Prot::WRITE);
const K4: u64 = 0x1000;

fn core(pool: &TestHal) -> Box<Core<'_>> {
    core_over(pool, Mock::new(1).with_pool(pool), &[(DEV, 0, false)])
}

/// Everything a refused call must leave alone.
#[derive(Debug, PartialEq)]
struct Print {
    areas: Vec<Area>,
    allowed: Vec<(u64, u64)>,
    reserved: Vec<(u64, u64)>,
    hwpts: Vec<DomainId>,
    calls: usize,
    memory: BTreeMap<u64, Vec<u64>>,
}

fn print(c: &Core<'_>, ioas: &Ioas<4, 2>, pool: &TestHal) -> Print {
    Print {
        areas: ioas.areas().to_vec(),
        allowed: ioas.allowed().to_vec(),
        reserved: ioas.reserved().to_vec(),
        hwpts: ioas.hwpts().to_vec(),
        calls: c.driver().calls.len(),
        memory: pool.snapshot(),
    }
}

#[test]
fn mappings_are_mirrored_into_every_hwpt_and_unmapped_with_one_sync_each() {
    let pool = TestHal::new(512);
    let mut c = core(&pool);
    let mut ioas: Ioas<4, 2> = Ioas::new();
    ioas.map(&mut c, Iova(0x10_0000), PhysAddr(0x80_0000), 2 * K4, RW)
        .unwrap();
    // A HWPT allocated later is filled with what is there.
    let a = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap();
    assert_eq!(
        c.iova_to_phys(a, Iova(0x10_1000)).unwrap(),
        Some(PhysAddr(0x80_1000))
    );
    let b = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::NEST_PARENT).unwrap();
    ioas.map(
        &mut c,
        Iova(0x40_0000),
        PhysAddr(0x20_0000),
        0x20_0000,
        Prot::READ,
    )
    .unwrap();
    for d in [a, b] {
        assert_eq!(
            c.iova_to_phys(d, Iova(0x10_0000)).unwrap(),
            Some(PhysAddr(0x80_0000))
        );
        assert_eq!(
            c.iova_to_phys(d, Iova(0x41_0000)).unwrap(),
            Some(PhysAddr(0x21_0000))
        );
    }
    c.attach(DEV, a).unwrap();
    c.driver_mut().clear();
    assert_eq!(
        ioas.unmap(&mut c, Iova(0x40_0000), 0x20_0000).unwrap(),
        0x20_0000
    );
    for d in [a, b] {
        assert_eq!(c.iova_to_phys(d, Iova(0x41_0000)).unwrap(), None);
    }
    // Only `a` is attached, so only `a` has a tag: one invalidation, one wait.
    assert_eq!(c.driver().invalidations().len(), 1);
    assert_eq!(c.driver().waits(), vec![0]);
    assert_eq!(ioas.areas().len(), 1);
    c.detach(DEV).unwrap();
    iommufd::free_hwpt_paging(&mut c, &mut ioas, a).unwrap();
    iommufd::free_hwpt_paging(&mut c, &mut ioas, b).unwrap();
    assert!(ioas.hwpts().is_empty());
    assert!(c.driver().live.is_empty());
    drop(c);
    assert_eq!(pool.counts().live_pages(), 0);
}

#[test]
fn bad_requests_are_refused_with_typed_errors_and_change_nothing() {
    let pool = TestHal::new(512);
    let mut c = core(&pool);
    let mut ioas: Ioas<4, 2> = Ioas::new();
    let d = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap();
    ioas.set_allowed(&[(0x10_0000, 0x100_0000)]).unwrap();
    ioas.add_reserved(0x80_0000, 0x90_0000).unwrap();
    ioas.map(&mut c, Iova(0x20_0000), PhysAddr(0x1_0000), K4, RW)
        .unwrap();
    let before = print(&c, &ioas, &pool);
    type Case = Box<dyn Fn(&mut Core<'_>, &mut Ioas<4, 2>) -> Error>;
    let cases: Vec<(&str, Error, Case)> = vec![
        (
            "unaligned iova",
            Error::Unaligned {
                value: 0x30_0800,
                align: K4,
            },
            Box::new(|c, i| i.map(c, Iova(0x30_0800), PhysAddr(0), K4, RW).unwrap_err()),
        ),
        (
            "unaligned length",
            Error::Unaligned {
                value: 0x30_0800,
                align: K4,
            },
            Box::new(|c, i| {
                i.map(c, Iova(0x30_0000), PhysAddr(0), 0x800, RW)
                    .unwrap_err()
            }),
        ),
        (
            "unaligned paddr",
            Error::Unaligned {
                value: 0x123,
                align: K4,
            },
            Box::new(|c, i| {
                i.map(c, Iova(0x30_0000), PhysAddr(0x123), K4, RW)
                    .unwrap_err()
            }),
        ),
        (
            "zero length",
            Error::OutOfRange {
                what: "length",
                value: 0,
            },
            Box::new(|c, i| i.map(c, Iova(0x30_0000), PhysAddr(0), 0, RW).unwrap_err()),
        ),
        (
            "wraps",
            Error::OutOfRange {
                what: "iova + length",
                value: u64::MAX - 0xfff,
            },
            Box::new(|c, i| {
                i.map(c, Iova(u64::MAX - 0xfff), PhysAddr(0), 2 * K4, RW)
                    .unwrap_err()
            }),
        ),
        (
            "outside allowed",
            Error::OutOfRange {
                what: "iova outside the allowed ranges",
                value: 0xff_f000,
            },
            Box::new(|c, i| {
                i.map(c, Iova(0xff_f000), PhysAddr(0), 2 * K4, RW)
                    .unwrap_err()
            }),
        ),
        (
            "reserved",
            Error::OutOfRange {
                what: "iova in a reserved range",
                value: 0x80_0000,
            },
            Box::new(|c, i| {
                i.map(c, Iova(0x7f_f000), PhysAddr(0), 2 * K4, RW)
                    .unwrap_err()
            }),
        ),
        (
            "overlap",
            Error::Overlap { iova: 0x20_0000 },
            Box::new(|c, i| {
                i.map(c, Iova(0x1f_f000), PhysAddr(0), 2 * K4, RW)
                    .unwrap_err()
            }),
        ),
        (
            "unmap nothing",
            Error::NotMapped { iova: 0x50_0000 },
            Box::new(|c, i| i.unmap(c, Iova(0x50_0000), K4).unwrap_err()),
        ),
        (
            "unmap zero",
            Error::OutOfRange {
                what: "length",
                value: 0,
            },
            Box::new(|c, i| i.unmap(c, Iova(0x20_0000), 0).unwrap_err()),
        ),
        (
            "unmap splits",
            Error::SplitBlock {
                iova: 0x20_0000,
                size: K4,
            },
            Box::new(|c, i| i.unmap(c, Iova(0x20_0000), 0x800).unwrap_err()),
        ),
        (
            "allowed excludes a mapping",
            Error::Busy {
                what: "a mapping lies outside the new allowed ranges",
            },
            Box::new(|_, i| i.set_allowed(&[(0x40_0000, 0x50_0000)]).unwrap_err()),
        ),
        (
            "allowed ranges overlap",
            Error::Overlap { iova: 0x18_0000 },
            Box::new(|_, i| {
                i.set_allowed(&[(0x10_0000, 0x20_0000), (0x18_0000, 0x30_0000)])
                    .unwrap_err()
            }),
        ),
        (
            "too many allowed ranges",
            Error::Exhausted {
                what: Object::IoasRange,
            },
            Box::new(|_, i| {
                i.set_allowed(&[(0, K4), (2 * K4, 3 * K4), (0x10_0000, 0x100_0000)])
                    .unwrap_err()
            }),
        ),
        (
            "reserve over a mapping",
            Error::Overlap { iova: 0x20_0000 },
            Box::new(|_, i| i.add_reserved(0x1f_0000, 0x21_0000).unwrap_err()),
        ),
        (
            "reserve empty",
            Error::OutOfRange {
                what: "range end",
                value: 0x1f_0000,
            },
            Box::new(|_, i| i.add_reserved(0x1f_0000, 0x1f_0000).unwrap_err()),
        ),
        (
            "dirty tracking",
            Error::Unsupported {
                what: "dirty tracking (no read-and-clear of dirty bits yet)",
            },
            Box::new(|c, i| {
                iommufd::alloc_hwpt_paging(c, i, DEV, PagingFlags::DIRTY_TRACKING).unwrap_err()
            }),
        ),
        (
            "hwpt for an unknown device",
            Error::NotFound {
                what: Object::Device,
            },
            Box::new(|c, i| {
                iommufd::alloc_hwpt_paging(
                    c,
                    i,
                    DeviceId {
                        instance: 0,
                        id: 0x99,
                    },
                    PagingFlags::empty(),
                )
                .unwrap_err()
            }),
        ),
        (
            "free a hwpt of no IOAS",
            Error::NotFound {
                what: Object::IoasDomain,
            },
            Box::new(|c, i| iommufd::free_hwpt_paging(c, i, DomainId::IDENTITY).unwrap_err()),
        ),
        (
            "mirror twice",
            Error::Busy {
                what: "domain already mirrors this IOAS",
            },
            Box::new(move |c, i| i.attach_hwpt(c, d).unwrap_err()),
        ),
        (
            "mirror a non-paging domain",
            Error::Incompatible {
                what: "only paging domains mirror an IOAS",
            },
            Box::new(|c, i| i.attach_hwpt(c, DomainId::BLOCKED).unwrap_err()),
        ),
    ];
    for (name, want, call) in cases {
        let got = call(&mut c, &mut ioas);
        assert_eq!(got, want, "{name}");
        assert_eq!(print(&c, &ioas, &pool), before, "{name} changed state");
    }
    // Capacity: 4 mappings.
    for k in 1..4 {
        ioas.map(&mut c, Iova(0x20_0000 + k * 0x1_0000), PhysAddr(0), K4, RW)
            .unwrap();
    }
    let before = print(&c, &ioas, &pool);
    assert_eq!(
        ioas.map(&mut c, Iova(0x60_0000), PhysAddr(0), K4, RW)
            .unwrap_err(),
        Error::Exhausted {
            what: Object::IoasMapping
        }
    );
    assert_eq!(print(&c, &ioas, &pool), before);
}

#[test]
fn a_failed_map_is_rolled_back_in_the_hwpts_that_took_it() {
    let pool = TestHal::new(512);
    let mut c = core(&pool);
    let mut ioas: Ioas<4, 2> = Ioas::new();
    let a = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap();
    let b = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap();
    c.attach(DEV, a).unwrap();
    let live = pool.counts().live_pages();
    // A 4K map in an empty 4-level table takes 3 table pages; the first
    // domain's succeed, the second's first allocation fails.
    pool.fail_nth(4);
    let err = ioas
        .map(&mut c, Iova(0x10_0000), PhysAddr(0x1_0000), K4, RW)
        .unwrap_err();
    assert_eq!(err, Error::NoMemory);
    assert!(ioas.areas().is_empty());
    for d in [a, b] {
        assert_eq!(c.iova_to_phys(d, Iova(0x10_0000)).unwrap(), None);
    }
    // The rollback invalidated `a`'s range before freeing its tables.
    assert!(
        c.driver()
            .calls
            .iter()
            .any(|k| matches!(k, Call::Wait { instance: 0, .. }))
    );
    assert_eq!(pool.counts().live_pages(), live);
}

#[test]
fn a_hwpt_that_cannot_be_filled_is_freed() {
    let pool = TestHal::new(512);
    let mut c = core(&pool);
    let mut ioas: Ioas<4, 2> = Ioas::new();
    ioas.map(&mut c, Iova(0x10_0000), PhysAddr(0x1_0000), K4, RW)
        .unwrap();
    ioas.map(&mut c, Iova(0x8000_0000), PhysAddr(0x2_0000), K4, RW)
        .unwrap();
    let live = pool.counts().live_pages();
    // Root, then 3 tables for the first area, then fail in the second's.
    pool.fail_nth(5);
    let err = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap_err();
    assert_eq!(err, Error::NoMemory);
    assert!(ioas.hwpts().is_empty());
    assert!(c.driver().live.is_empty(), "driver domain leaked");
    assert_eq!(pool.counts().live_pages(), live);
}

#[test]
fn alloc_iova_finds_the_lowest_aligned_hole() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let mut ioas: Ioas<4, 2> = Ioas::new();
    assert_eq!(ioas.alloc_iova(K4, K4).unwrap(), Iova(0));
    ioas.set_allowed(&[(0x10_0000, 0x40_0000)]).unwrap();
    ioas.add_reserved(0x10_0000, 0x11_0000).unwrap();
    assert_eq!(ioas.alloc_iova(K4, K4).unwrap(), Iova(0x11_0000));
    ioas.map(&mut c, Iova(0x11_0000), PhysAddr(0), 0x1_0000, RW)
        .unwrap();
    assert_eq!(ioas.alloc_iova(K4, K4).unwrap(), Iova(0x12_0000));
    assert_eq!(ioas.alloc_iova(K4, 0x20_0000).unwrap(), Iova(0x20_0000));
    assert_eq!(
        ioas.alloc_iova(0x20_0000, 0x20_0000).unwrap(),
        Iova(0x20_0000)
    );
    assert_eq!(
        ioas.alloc_iova(0x40_0000, K4).unwrap_err(),
        Error::Exhausted { what: Object::Iova }
    );
    assert_eq!(
        ioas.alloc_iova(K4, 0x800).unwrap_err(),
        Error::Unaligned {
            value: 0x800,
            align: K4
        }
    );
    assert_eq!(
        ioas.alloc_iova(0, K4).unwrap_err(),
        Error::Unaligned {
            value: 0,
            align: K4
        }
    );
}

#[derive(Clone, Debug)]
enum Op {
    Map { page: u64, pages: u64, frame: u64 },
    Unmap { page: u64, pages: u64 },
    Auto { pages: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..64, 1u64..8, 0u64..1000).prop_map(|(page, pages, frame)| Op::Map {
            page,
            pages,
            frame
        }),
        (0u64..64, 1u64..16).prop_map(|(page, pages)| Op::Unmap { page, pages }),
        (1u64..8).prop_map(|pages| Op::Auto { pages }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random map / unmap / auto-allocated maps against a model: after every
    /// step both HWPTs translate exactly the model's pages, and results agree
    /// with what the model predicts.
    #[test]
    fn ioas_matches_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let pool = TestHal::new(1024);
        let mut c = core(&pool);
        let mut ioas: Ioas<16, 2> = Ioas::new();
        ioas.set_allowed(&[(0, 64 * K4)]).unwrap();
        ioas.add_reserved(32 * K4, 34 * K4).unwrap();
        let a = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap();
        let b = iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap();
        // page -> (area start page, frame)
        let mut model: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut areas: BTreeMap<u64, u64> = BTreeMap::new(); // start -> pages
        for op in ops {
            match op {
                Op::Map { page, pages, frame } => {
                    let fits = page + pages <= 64;
                    let reserved = page < 34 && page + pages > 32;
                    let taken = (page..page + pages).any(|p| model.contains_key(&p));
                    let full = areas.len() == 16;
                    let r = ioas.map(&mut c, Iova(page * K4), PhysAddr(frame * K4), pages * K4, RW);
                    prop_assert_eq!(r.is_ok(), fits && !reserved && !taken && !full, "{:?}", r);
                    if r.is_ok() {
                        for k in 0..pages {
                            model.insert(page + k, (page, frame + k));
                        }
                        areas.insert(page, pages);
                    }
                }
                Op::Unmap { page, pages } => {
                    let end = page + pages;
                    let touched: Vec<(u64, u64)> = areas
                        .iter()
                        .filter(|(s, n)| **s < end && page < **s + **n)
                        .map(|(s, n)| (*s, *n))
                        .collect();
                    let split = touched.iter().any(|(s, n)| *s < page || s + n > end);
                    let r = ioas.unmap(&mut c, Iova(page * K4), pages * K4);
                    prop_assert_eq!(r.is_ok(), !touched.is_empty() && !split, "{:?}", r);
                    if let Ok(bytes) = r {
                        prop_assert_eq!(bytes, touched.iter().map(|(_, n)| n * K4).sum::<u64>());
                        for (s, n) in touched {
                            areas.remove(&s);
                            for p in s..s + n {
                                model.remove(&p);
                            }
                        }
                    }
                }
                Op::Auto { pages } => {
                    let got = ioas.alloc_iova(pages * K4, K4);
                    // Model: lowest start with `pages` free, unreserved pages.
                    let want = (0..=64 - pages).find(|s| {
                        (*s..s + pages).all(|p| !model.contains_key(&p) && !(32..34).contains(&p))
                    });
                    prop_assert_eq!(got.ok(), want.map(|s| Iova(s * K4)));
                }
            }
            for p in 0..64u64 {
                let want = model.get(&p).map(|(_, f)| f * K4);
                for d in [a, b] {
                    prop_assert_eq!(c.iova_to_phys(d, Iova(p * K4)).unwrap(), want.map(PhysAddr), "page {}", p);
                }
            }
        }
        iommufd::free_hwpt_paging(&mut c, &mut ioas, a).unwrap();
        iommufd::free_hwpt_paging(&mut c, &mut ioas, b).unwrap();
        drop(c);
        prop_assert_eq!(pool.counts().live_pages(), 0);
    }
}

/// Fail allocation N (table pages from the pool, or the driver's domain)
/// for N = 1, 2, ... until `op` succeeds: every failure returns an error,
/// leaves the IOAS, the domains' translations and memory as they were, and
/// leaks nothing.
fn sweep(
    name: &str,
    op: impl Fn(&mut Core<'_>, &mut Ioas<4, 2>) -> Result<(), Error>,
) -> (usize, usize) {
    let mut found = (0, 0);
    for driver in [true, false] {
        for n in 1.. {
            let pool = TestHal::new(512);
            let mut c = core(&pool);
            let mut ioas: Ioas<4, 2> = Ioas::new();
            ioas.map(&mut c, Iova(0x10_0000), PhysAddr(0x1_0000), K4, RW)
                .unwrap();
            ioas.map(&mut c, Iova(0x8000_0000), PhysAddr(0x2_0000), 0x20_0000, RW)
                .unwrap();
            let a =
                iommufd::alloc_hwpt_paging(&mut c, &mut ioas, DEV, PagingFlags::empty()).unwrap();
            c.attach(DEV, a).unwrap();
            let before = print(&c, &ioas, &pool);
            let live = c.driver().live.clone();
            if driver {
                let at = c.driver().allocs + n;
                c.driver_mut().fail_alloc_at = Some(at);
            } else {
                pool.fail_nth(n as u64);
            }
            let r = op(&mut c, &mut ioas);
            c.driver_mut().fail_alloc_at = None;
            pool.clear_failures();
            match r {
                Ok(()) => {
                    if driver {
                        found.0 = n - 1;
                    } else {
                        found.1 = n - 1;
                    }
                    break;
                }
                Err(e) => {
                    assert_eq!(e, Error::NoMemory, "{name}: failing allocation {n}");
                    let after = print(&c, &ioas, &pool);
                    // Refused attempts may leave calls (a rolled-back map's
                    // invalidation); state and memory must be as before.
                    assert_eq!(
                        Print {
                            calls: before.calls,
                            ..after
                        },
                        before,
                        "{name}: failing allocation {n} changed state"
                    );
                    assert_eq!(c.driver().live, live, "{name}: driver domain leaked");
                }
            }
            c.detach(DEV).unwrap();
            for d in ioas.hwpts().to_vec() {
                iommufd::free_hwpt_paging(&mut c, &mut ioas, d).unwrap();
            }
            assert!(c.driver().live.is_empty(), "{name}");
            drop(c);
            assert_eq!(pool.counts().live_pages(), 0, "{name}: pages leaked");
        }
    }
    found
}

#[test]
fn every_allocation_failure_in_hwpt_allocation_is_clean() {
    let points = sweep("alloc_hwpt_paging", |c, i| {
        iommufd::alloc_hwpt_paging(c, i, DEV, PagingFlags::NEST_PARENT).map(|_| ())
    });
    // One driver domain; a root page plus the tables of both mappings (3 for
    // the 4K one, 2 for the 2 MiB one, mapped with 4K pages because its
    // physical address is not 2 MiB aligned).
    assert_eq!(points, (1, 6));
}

#[test]
fn every_allocation_failure_in_an_ioas_map_is_clean() {
    let points = sweep("Ioas::map over two HWPTs", |c, i| {
        // A second HWPT first, so the map must reach two tables.
        let b = iommufd::alloc_hwpt_paging(c, i, DEV, PagingFlags::empty())?;
        let r = i.map(c, Iova(0x4000_0000), PhysAddr(0x3_0000), K4, RW);
        if r.is_err() {
            iommufd::free_hwpt_paging(c, i, b).unwrap();
        }
        r
    });
    // Driver: the second HWPT. Pool: its 6 pages, then 2 tables (levels 1
    // and 0 of the new 1 GiB region) in each HWPT.
    assert_eq!(points, (1, 10));
}
