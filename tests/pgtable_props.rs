//! Property tests: random sequences of map / unmap / translate / release on
//! every format, compared step by step with the model and the reference
//! walker (see `common::harness::Harness` for the invariants checked after
//! each step).

mod common;

use common::TestHal;
use common::harness::{G1, Harness, Kind, M2, prot_from_bits};
use common::pool::PAGE;

use iommu::drivers::vtd::regs::LargePages;
use iommu::pgtable::{ArmS1, ArmS2, Format, MairIndices, VtdSl, X86_64};
use proptest::prelude::*;

/// I/O addresses used: [0, 4 GiB) (fits every format, ArmS2 32-bit included).
const WINDOW: u64 = 4 * G1;

#[derive(Clone, Debug)]
enum Op {
    /// Map [iova, iova+len) at a physical address congruent to iova modulo
    /// 1 GiB (blocks possible) or shifted by `shift` pages (4 KiB only).
    Map {
        iova: u64,
        len: u64,
        region: u64,
        shift: u64,
        prot: u8,
    },
    /// Unmap exactly the range of an earlier successful map.
    UnmapPrev { sel: usize },
    /// Unmap part of an earlier map's range (may cut blocks or leave holes).
    UnmapPart { sel: usize, off: u64, pages: u64 },
    /// Unmap anything.
    UnmapAny { iova: u64, len: u64 },
    /// Translate one address.
    Query { iova: u64 },
    /// Release pending gathers (after the caller's IOTLB sync).
    Release,
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        // 4 KiB granular, crossing 2 MiB boundaries, concentrated so ranges
        // collide.
        5 => (0..2u64, 0..3u64, 0..600u64, 1..600u64)
            .prop_map(|(g, m, p, n)| (g * G1 + m * M2 + p * PAGE, n * PAGE)),
        // 2 MiB granular, sometimes with a 4 KiB tail.
        3 => (0..4u64, 0..6u64, 1..4u64, prop_oneof![Just(0u64), 1..8u64])
            .prop_map(|(g, m, n, t)| (g * G1 + m * M2, n * M2 + t * PAGE)),
        // Whole GiBs, sometimes starting 2 MiB early (mixed decomposition).
        1 => (0..3u64, 1..3u64, any::<bool>())
            .prop_map(|(g, n, early)| if early && g > 0 {
                (g * G1 - M2, n * G1)
            } else {
                (g * G1, n.min(2) * G1)
            }),
    ]
    .prop_map(|(i, l)| (i, l.min(WINDOW - i)))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (range(), 0..4u64, prop_oneof![3 => Just(0u64), 1 => 1..3u64], any::<u8>())
            .prop_map(|((iova, len), region, shift, prot)| Op::Map { iova, len, region, shift, prot }),
        3 => any::<usize>().prop_map(|sel| Op::UnmapPrev { sel }),
        2 => (any::<usize>(), 0..700u64, 1..700u64)
            .prop_map(|(sel, off, pages)| Op::UnmapPart { sel, off, pages }),
        1 => range().prop_map(|(iova, len)| Op::UnmapAny { iova, len }),
        1 => (0..WINDOW / PAGE).prop_map(|p| Op::Query { iova: p * PAGE + 0x123 }),
        1 => Just(Op::Release),
    ]
}

fn run<F: Format>(format: F, kind: Kind, ops: &[Op]) {
    let hal = TestHal::new(1024);
    let mut h = Harness::new(format, kind, &hal);
    let mut maps: Vec<(u64, u64)> = Vec::new();
    // Without large leaves a GiB would be 262144 entries: keep ranges small.
    let max_len = if kind.sizes().len() == 1 {
        8 * M2
    } else {
        WINDOW
    };
    // Where the input range allows, the window straddles 512 GiB so that
    // ranges cross a top-level (PML4 / L0) entry boundary too.
    let base = if h.reff.input_bits() > 40 {
        (1u64 << 39) - WINDOW / 2
    } else {
        0
    };
    for op in ops {
        match *op {
            Op::Map {
                iova,
                len,
                region,
                shift,
                prot,
            } => {
                // Misaligned physical addresses force 4 KiB leaves: only for
                // small ranges (a GiB of them would not fit the pool).
                let len = len.min(max_len);
                let shift = if len <= 8 * M2 { shift } else { 0 };
                let paddr = (region + 1) * 0x80_0000_0000 + iova + shift * PAGE;
                let iova = base + iova;
                if h.map(iova, paddr, len, prot_from_bits(prot)).is_ok() {
                    maps.push((iova, len));
                }
            }
            Op::UnmapPrev { sel } => {
                if !maps.is_empty() {
                    let (iova, len) = maps.swap_remove(sel % maps.len());
                    let _ = h.unmap(iova, len);
                }
            }
            Op::UnmapPart { sel, off, pages } => {
                if !maps.is_empty() {
                    let (iova, len) = maps[sel % maps.len()];
                    let n = len / PAGE;
                    let off = off % n;
                    let pages = pages.min(n - off);
                    let _ = h.unmap(iova + off * PAGE, pages * PAGE);
                }
            }
            Op::UnmapAny { iova, len } => {
                let _ = h.unmap(base + iova, len.min(max_len));
            }
            Op::Query { iova } => h.check_point(base + iova),
            Op::Release => h.release(),
        }
        h.check_all();
    }
    // Unmap everything still mapped, run by run.
    for (k, len) in h.model.runs() {
        h.unmap(k, len).unwrap();
    }
    h.release();
    h.check_all();
    assert_eq!(
        hal.counts().live_pages(),
        h.reff.root_pages() as u64,
        "only the root is left once everything is unmapped and released"
    );
    h.finish();
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 400,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

fn vtd(levels: u32, large_2m: bool, large_1g: bool, snoop: bool, execute: bool) -> (VtdSl, Kind) {
    let aw = [39, 48, 57][levels as usize - 3];
    let mut large = LargePages::empty();
    large.set(LargePages::SIZE_2M, large_2m);
    large.set(LargePages::SIZE_1G, large_1g);
    let f = VtdSl::new(aw, large)
        .unwrap()
        .with_snoop(snoop)
        .with_execute(execute);
    (
        f,
        Kind::Vtd {
            levels,
            large_2m,
            large_1g,
            snoop,
            execute,
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn vtd_sl_3_level(ops in prop::collection::vec(op(), 1..64)) {
        let (f, k) = vtd(3, true, true, true, true);
        run(f, k, &ops);
    }

    #[test]
    fn vtd_sl_4_level_2m_only(ops in prop::collection::vec(op(), 1..64)) {
        let (f, k) = vtd(4, true, false, false, false);
        run(f, k, &ops);
    }

    #[test]
    fn vtd_sl_5_level_4k_only(ops in prop::collection::vec(op(), 1..25)) {
        let (f, k) = vtd(5, false, false, true, false);
        run(f, k, &ops);
    }

    #[test]
    fn x86_64_4_level_1g(ops in prop::collection::vec(op(), 1..64)) {
        run(X86_64::new(false).with_1g_pages(true), Kind::X86 { levels: 4, gb: true }, &ops);
    }

    #[test]
    fn x86_64_5_level(ops in prop::collection::vec(op(), 1..64)) {
        run(X86_64::new(true), Kind::X86 { levels: 5, gb: false }, &ops);
    }

    #[test]
    fn arm_s1(ops in prop::collection::vec(op(), 1..64)) {
        let f = ArmS1::new(MairIndices::default(), 48).unwrap();
        run(f, Kind::ArmS1 { wb: 1, nc: 0, dev: 2 }, &ops);
    }

    #[test]
    fn arm_s2(ias in prop::sample::select(vec![32u32, 34, 40, 42, 44, 48]),
              ops in prop::collection::vec(op(), 1..64)) {
        run(ArmS2::new(ias, 48).unwrap(), Kind::ArmS2 { ias }, &ops);
    }
}
