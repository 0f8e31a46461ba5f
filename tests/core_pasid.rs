//! The global PASID allocator against a model.

use std::collections::BTreeSet;

use iommu::core::pasid::{PASID_LIMIT, Pasid, PasidAllocator};
use iommu::{Error, Object};
use proptest::prelude::*;

fn fresh() -> Box<PasidAllocator> {
    Box::new(PasidAllocator::new())
}

#[test]
fn zero_is_never_handed_out_and_lowest_comes_first() {
    let mut a = fresh();
    assert!(a.is_used(0), "PASID 0 is the RID's");
    assert_eq!(a.alloc(20).unwrap().get(), 1);
    assert_eq!(
        a.alloc(1),
        Err(Error::Exhausted {
            what: Object::Pasid
        })
    );
    assert_eq!(a.alloc(2).unwrap().get(), 2);
    assert_eq!(a.in_use(), 2);
}

#[test]
fn a_narrow_device_gets_exactly_its_range() {
    let mut a = fresh();
    let got: Vec<Pasid> = (0..15).map(|_| a.alloc(4).unwrap()).collect();
    assert_eq!(
        got.iter().map(|p| p.get()).collect::<Vec<_>>(),
        (1..16).collect::<Vec<_>>()
    );
    assert!(matches!(a.alloc(4), Err(Error::Exhausted { .. })));
    // A wider device still gets PASIDs, above the narrow range.
    assert_eq!(a.alloc(5).unwrap().get(), 16);
    // Freeing one below the limit makes it the next for the narrow device.
    a.free(got[6]).unwrap();
    assert_eq!(a.alloc(4).unwrap().get(), 7);
}

#[test]
fn bad_arguments_are_refused_and_change_nothing() {
    let mut a = fresh();
    let p = a.alloc(20).unwrap();
    for w in [0, 21, 64] {
        assert!(
            matches!(a.alloc(w), Err(Error::OutOfRange { .. })),
            "width {w}"
        );
    }
    assert_eq!(a.reserve(0), Err(Error::BadPasid { pasid: 0 }));
    assert_eq!(
        a.reserve(PASID_LIMIT),
        Err(Error::BadPasid { pasid: PASID_LIMIT })
    );
    assert_eq!(a.reserve(p.get()), Err(Error::BadPasid { pasid: p.get() }));
    a.free(p).unwrap();
    assert_eq!(
        a.free(p),
        Err(Error::BadPasid { pasid: p.get() }),
        "double free"
    );
    assert_eq!(a.in_use(), 0);
    assert_eq!(a.alloc(20).unwrap(), p, "state unchanged by the refusals");
}

#[test]
fn the_whole_space_can_be_used_and_the_last_one_is_2_to_the_20_minus_1() {
    let mut a = fresh();
    let mut all = Vec::with_capacity(PASID_LIMIT as usize);
    for want in 1..PASID_LIMIT {
        let p = a.alloc(20).unwrap();
        assert_eq!(p.get(), want);
        all.push(p);
    }
    assert_eq!(a.in_use(), PASID_LIMIT - 1);
    assert!(matches!(a.alloc(20), Err(Error::Exhausted { .. })));
    // Free a few scattered ones; they come back lowest first.
    for p in [PASID_LIMIT - 1, 70_000, 64, 63] {
        a.free(all[p as usize - 1]).unwrap();
    }
    let back: Vec<u32> = (0..4).map(|_| a.alloc(20).unwrap().get()).collect();
    assert_eq!(back, vec![63, 64, 70_000, PASID_LIMIT - 1]);
}

#[test]
fn reserve_takes_a_specific_pasid_that_alloc_then_skips() {
    let mut a = fresh();
    a.reserve(1).unwrap();
    a.reserve(3).unwrap();
    assert_eq!(a.alloc(8).unwrap().get(), 2);
    assert_eq!(a.alloc(8).unwrap().get(), 4);
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32),
    Reserve(u32),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u32..=20).prop_map(Op::Alloc),
        // Small widths and low values so the narrow ranges fill up.
        2 => (1u32..=6).prop_map(Op::Alloc),
        1 => (0u32..80).prop_map(Op::Reserve),
        3 => any::<usize>().prop_map(Op::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn matches_a_set_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut a = fresh();
        let mut model: BTreeSet<u32> = BTreeSet::new();
        let mut held: Vec<Pasid> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(w) => {
                    let want = (1..1u32 << w).find(|p| !model.contains(p));
                    match (a.alloc(w), want) {
                        (Ok(p), Some(w)) => {
                            prop_assert_eq!(p.get(), w);
                            model.insert(w);
                            held.push(p);
                        }
                        (Err(Error::Exhausted { .. }), None) => {}
                        (got, want) => prop_assert!(false, "alloc({}) = {:?}, model {:?}", w, got, want),
                    }
                }
                Op::Reserve(p) => {
                    let ok = p != 0 && !model.contains(&p);
                    let got = a.reserve(p);
                    prop_assert_eq!(got.is_ok(), ok);
                    if let Ok(h) = got {
                        model.insert(p);
                        held.push(h);
                    }
                }
                Op::Free(i) => {
                    if held.is_empty() {
                        continue;
                    }
                    let p = held.swap_remove(i % held.len());
                    prop_assert_eq!(a.free(p), Ok(()));
                    prop_assert_eq!(a.free(p), Err(Error::BadPasid { pasid: p.get() }));
                    model.remove(&p.get());
                }
            }
            prop_assert_eq!(a.in_use() as usize, model.len());
        }
        for p in 0..128u32 {
            prop_assert_eq!(a.is_used(p), p == 0 || model.contains(&p));
        }
    }
}
