//! Fault injection: every allocation a large map makes is failed in turn; each
//! failure must report `NoMemory` and leave the table bit-for-bit as before
//! with nothing leaked. Also: refused maps (overlap) leave memory identical.

mod common;

use common::TestHal;
use common::harness::{G1, Harness, Kind, M2};
use common::pool::PAGE;
use iommu::Error;
use iommu::drivers::vtd::regs::LargePages;
use iommu::pgtable::{ArmS1, ArmS2, Format, MairIndices, PageTable, Prot, VtdSl, X86_64};
use iommu::{Iova, PhysAddr};

const RW: Prot = Prot::READ.union(Prot::WRITE);

/// One map that needs `> 1` new tables, tried with allocation n failing for
/// n = 1, 2, ... until it succeeds. `fail_all` makes every allocation from
/// the nth on fail instead of only the nth.
fn fail_each_allocation<F: Format>(
    h: &mut Harness<'_, F>,
    iova: u64,
    paddr: u64,
    len: u64,
    fail_all: bool,
) -> u64 {
    let hal = h.hal;
    h.check_all();
    let mut n = 1;
    loop {
        let snap = hal.snapshot();
        let before = hal.counts();
        if fail_all {
            hal.fail_from_nth(n);
        } else {
            hal.fail_nth(n);
        }
        let attempts = hal.attempts();
        let r = h.pt.map(Iova(iova), PhysAddr(paddr), len, RW | Prot::CACHE);
        let tried = hal.attempts() - attempts;
        hal.clear_failures();
        if r.is_ok() {
            assert!(
                tried < n,
                "{:?}: map succeeded although allocation {n} failed",
                h.kind
            );
            h.model.map(iova, paddr, len, RW | Prot::CACHE).unwrap();
            h.check_all();
            h.check_range(iova, len);
            // Exactly the tables needed were allocated.
            let c = hal.counts();
            assert_eq!(
                c.live_pages() - before.live_pages(),
                tried,
                "{:?}: pages kept after the successful map",
                h.kind
            );
            return n;
        }
        assert_eq!(
            r,
            Err(Error::NoMemory),
            "{:?}: allocation {n} failed",
            h.kind
        );
        assert_eq!(
            hal.snapshot(),
            snap,
            "{:?}: failed map (allocation {n}) changed table memory",
            h.kind
        );
        let after = hal.counts();
        assert_eq!(
            after.live_pages(),
            before.live_pages(),
            "{:?}: failed map (allocation {n}) leaked pages",
            h.kind
        );
        assert_eq!(after.allocs - before.allocs, after.frees - before.frees);
        // Memory is bit-identical, so the table still matches the model
        // (checked below at a few addresses, fully before the loop).
        h.check_range(iova, len);
        n += 1;
        assert!(n < 10_000, "map never succeeds");
    }
}

/// Pre-populate, then a 64 MiB map of 4 KiB pages (physical address shifted
/// by one page) crossing a 1 GiB boundary, then a 64 MiB + 12 KiB mixed map
/// (3 + 9 4 KiB pages at the edges, 2 MiB blocks inside) crossing a 512 GiB boundary where the
/// format allows.
fn run<F: Format + Clone>(format: F, kind: Kind, fail_all: bool) {
    let hal = TestHal::new(4096);
    let mut h = Harness::new(format, kind, &hal);
    h.map(0x1000, 0x5000_1000, 16 * PAGE, RW).unwrap();
    h.map(2 * G1 + 4 * M2, 0x6000_0000, 2 * M2, Prot::READ)
        .unwrap();
    h.check_all();
    let top_span = 1u64 << h.reff.input_bits().min(40);
    let base = G1 - 32 * M2;
    let n = fail_each_allocation(
        &mut h,
        base - 2 * M2 + PAGE,
        0x7_0000_2000,
        64 << 20,
        fail_all,
    );
    assert!(n > 30, "{kind:?}: the 4 KiB map needed only {n} tables");
    let iova = top_span / 2 - 32 * M2 - 3 * PAGE;
    let n = fail_each_allocation(
        &mut h,
        iova,
        0x9_0000_0000 - 32 * M2 - 3 * PAGE,
        (64 << 20) + 12 * PAGE,
        fail_all,
    );
    assert!(n >= 3, "{kind:?}: the mixed map needed only {n} tables");
    // Blocks were used in the middle.
    assert_eq!(
        h.pt.translate(Iova(top_span / 2 - M2)).map(|t| t.size),
        Some(M2)
    );
    for (k, len) in h.model.runs() {
        h.unmap(k, len).unwrap();
    }
    h.release();
    h.check_all();
    h.finish();
}

fn vtd(aw: u32) -> (VtdSl, Kind) {
    (
        VtdSl::new(aw, LargePages::SIZE_2M | LargePages::SIZE_1G)
            .unwrap()
            .with_snoop(true),
        Kind::Vtd {
            levels: [3, 4, 5][(aw as usize - 39) / 9],
            large_2m: true,
            large_1g: true,
            snoop: true,
            execute: false,
        },
    )
}

#[test]
fn oom_vtd_sl() {
    for aw in [39, 48, 57] {
        let (f, k) = vtd(aw);
        run(f, k, false);
        run(f, k, true);
    }
}

#[test]
fn oom_x86_64() {
    for five in [false, true] {
        let f = X86_64::new(five).with_1g_pages(true);
        let k = Kind::X86 {
            levels: 4 + five as u32,
            gb: true,
        };
        run(f, k, false);
        run(f, k, true);
    }
}

#[test]
fn oom_arm_s1() {
    let f = ArmS1::new(MairIndices::default(), 48).unwrap();
    let k = Kind::ArmS1 {
        wb: 1,
        nc: 0,
        dev: 2,
    };
    run(f, k, false);
    run(f, k, true);
}

#[test]
fn oom_arm_s2() {
    for ias in [32, 40, 44, 48] {
        let f = ArmS2::new(ias, 48).unwrap();
        run(f, Kind::ArmS2 { ias }, false);
        run(f, Kind::ArmS2 { ias }, true);
    }
}

#[test]
fn oom_in_new_leaks_nothing() {
    let hal = TestHal::new(64);
    hal.fail_nth(1);
    assert!(matches!(
        PageTable::new(ArmS2::new(32, 48).unwrap(), &hal),
        Err(Error::NoMemory)
    ));
    assert_eq!(hal.counts().live_pages(), 0);
    assert_eq!(hal.sizes_asked(), vec![4], "one contiguous 4-page root");
    // A pool too fragmented for 4 aligned contiguous pages.
    let small = TestHal::new(4);
    let _p = small.alloc(1).unwrap();
    assert!(matches!(
        PageTable::new(ArmS2::new(32, 48).unwrap(), &small),
        Err(Error::NoMemory)
    ));
}

/// A map whose overlap is found only at its very end (after ranges that
/// would need new tables) is refused with the table bit-identical and no
/// page kept.
fn overlap_at_the_end<F: Format>(format: F, kind: Kind) {
    let hal = TestHal::new(1024);
    let mut h = Harness::new(format, kind, &hal);
    h.map(3 * G1 + 5 * PAGE, 0x1000, PAGE, RW).unwrap();
    h.map(2 * G1, 0x4000_0000, M2, RW).unwrap();
    let snap = hal.snapshot();
    let before = hal.counts();
    // 4 KiB-granular range covering new 2 MiB regions, ending on the page.
    let r = h.pt.map(
        Iova(3 * G1 - 16 * M2),
        PhysAddr(0x8000_0000 - 16 * M2 + PAGE),
        16 * M2 + 6 * PAGE,
        RW,
    );
    assert_eq!(
        r,
        Err(Error::Overlap {
            iova: 3 * G1 + 5 * PAGE
        }),
        "{kind:?}"
    );
    assert_eq!(hal.snapshot(), snap, "{kind:?}: refused map changed memory");
    assert_eq!(hal.counts().live_pages(), before.live_pages(), "{kind:?}");
    // A block-sized range over the 2 MiB block and over a table with one page.
    for (iova, len) in [(2 * G1 - M2, 2 * M2), (3 * G1, M2), (3 * G1, G1)] {
        let r = h.map(iova, iova, len, RW);
        assert!(matches!(r, Err(Error::Overlap { .. })), "{kind:?}: {r:?}");
    }
    assert_eq!(hal.snapshot(), snap);
    h.finish();
}

#[test]
fn refused_maps_leave_memory_identical() {
    let (f, k) = vtd(48);
    overlap_at_the_end(f, k);
    overlap_at_the_end(
        X86_64::new(true),
        Kind::X86 {
            levels: 5,
            gb: false,
        },
    );
    overlap_at_the_end(
        ArmS1::new(MairIndices::default(), 48).unwrap(),
        Kind::ArmS1 {
            wb: 1,
            nc: 0,
            dev: 2,
        },
    );
    overlap_at_the_end(ArmS2::new(40, 48).unwrap(), Kind::ArmS2 { ias: 40 });
}
