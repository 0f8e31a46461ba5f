//! Argument checking, gather semantics and edge cases of the engine's API.

mod common;

use common::TestHal;
use common::harness::{G1, Harness, Kind, M2};
use common::pool::PAGE;
use iommu::Error;
use iommu::drivers::vtd::regs::LargePages;
use iommu::hal::Hal;
use iommu::pgtable::{ArmS1, ArmS2, Gather, MairIndices, PageTable, Prot, VtdSl, X86_64};
use iommu::{Iova, PhysAddr};

const RW: Prot = Prot::READ.union(Prot::WRITE);

fn vtd4() -> (VtdSl, Kind) {
    (
        VtdSl::new(48, LargePages::SIZE_2M | LargePages::SIZE_1G).unwrap(),
        Kind::Vtd {
            levels: 4,
            large_2m: true,
            large_1g: true,
            snoop: false,
            execute: false,
        },
    )
}

#[test]
fn arguments_are_checked_and_change_nothing() {
    let hal = TestHal::new(64);
    let (f, k) = vtd4();
    let mut h = Harness::new(f, k, &hal);
    h.map(0, 0, M2, RW).unwrap();
    let snap = hal.snapshot();
    let pt = &mut h.pt;
    let unaligned = |v| {
        Err(Error::Unaligned {
            value: v,
            align: PAGE,
        })
    };
    assert_eq!(
        pt.map(Iova(0x20_0800), PhysAddr(0), PAGE, RW),
        unaligned(0x20_0800)
    );
    assert_eq!(
        pt.map(Iova(0x20_0000), PhysAddr(0x10), PAGE, RW),
        unaligned(0x10)
    );
    assert_eq!(
        pt.map(Iova(0x20_0000), PhysAddr(0), 0x800, RW),
        unaligned(0x800)
    );
    assert!(matches!(
        pt.map(Iova(0x20_0000), PhysAddr(0), 0, RW),
        Err(Error::OutOfRange { .. })
    ));
    // Input beyond 48 bits, and iova + len overflowing.
    assert!(matches!(
        pt.map(Iova(1 << 48), PhysAddr(0), PAGE, RW),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        pt.map(Iova((1 << 48) - PAGE), PhysAddr(0), 2 * PAGE, RW),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        pt.map(Iova(!0xfff), PhysAddr(0), PAGE, RW),
        Err(Error::OutOfRange { .. })
    ));
    // Output beyond the 52-bit default.
    assert!(matches!(
        pt.map(Iova(0x20_0000), PhysAddr(1 << 52), PAGE, RW),
        Err(Error::OutOfRange { .. })
    ));
    let mut g = Gather::new();
    assert_eq!(pt.unmap(Iova(0x800), PAGE, &mut g), unaligned(0x800));
    assert!(matches!(
        pt.unmap(Iova(0), 0, &mut g),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        pt.unmap(Iova(1 << 48), PAGE, &mut g),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(g.range(), None);
    assert_eq!(pt.iova_to_phys(Iova(1 << 48)), None);
    assert_eq!(pt.iova_to_phys(Iova(u64::MAX)), None);
    assert_eq!(hal.snapshot(), snap);
    h.check_all();
    h.finish();
}

#[test]
fn edges_of_the_input_range() {
    let hal = TestHal::new(256);
    // Arm S2 with a 44-bit IPA: 32 root entries at L0.
    let mut h = Harness::new(ArmS2::new(44, 48).unwrap(), Kind::ArmS2 { ias: 44 }, &hal);
    h.map((1 << 44) - PAGE, 0x1000, PAGE, RW).unwrap();
    h.map((1 << 44) - 2 * G1, 0x4000_0000, G1, RW).unwrap();
    assert!(matches!(
        h.pt.map(Iova(1 << 44), PhysAddr(0), PAGE, RW),
        Err(Error::OutOfRange { .. })
    ));
    h.check_all();
    h.finish();
    // Arm S2 32-bit: the last page of the 4th concatenated root page.
    let mut h = Harness::new(ArmS2::new(32, 48).unwrap(), Kind::ArmS2 { ias: 32 }, &hal);
    h.map((1 << 32) - M2, 0x20_0000, M2, RW).unwrap();
    h.map((1 << 32) - 2 * M2 + PAGE, 0x1000, PAGE, RW).unwrap();
    h.check_all();
    h.finish();
    // VT-d 5-level: the top of the 57-bit space.
    let mut h = Harness::new(
        VtdSl::new(57, LargePages::SIZE_2M).unwrap(),
        Kind::Vtd {
            levels: 5,
            large_2m: true,
            large_1g: false,
            snoop: false,
            execute: false,
        },
        &hal,
    );
    h.map((1 << 57) - 2 * M2, 0x40_0000, 2 * M2, RW).unwrap();
    h.map(0, 0, PAGE, RW).unwrap();
    h.check_all();
    h.finish();
}

#[test]
fn gather_accumulates_unmaps() {
    let hal = TestHal::new(64);
    let (f, k) = vtd4();
    let mut h = Harness::new(f, k, &hal);
    h.map(G1, G1, M2, RW).unwrap();
    h.map(5 * G1 + 8 * PAGE, 0x8000, 4 * PAGE, RW).unwrap();
    let live = hal.counts().live_pages();
    let mut g = Gather::new();
    assert_eq!((g.range(), g.page_size(), g.freed_pages()), (None, 0, 0));
    h.pt.unmap(Iova(G1), M2, &mut g).unwrap();
    // The block was the only entry of its PD: that table is emptied.
    assert_eq!(
        (g.range(), g.page_size(), g.freed_pages()),
        (Some((G1, G1 + M2)), M2, 1)
    );
    h.pt.unmap(Iova(5 * G1 + 8 * PAGE), 4 * PAGE, &mut g)
        .unwrap();
    // Hull of both ranges, smallest leaf; freed: the PD of 1 GiB (by the
    // first unmap), the PT and PD of 5 GiB, and the PDPT they shared (now
    // empty): only the root is left.
    assert_eq!(g.range(), Some((G1, 5 * G1 + 12 * PAGE)));
    assert_eq!(g.page_size(), PAGE);
    assert_eq!(g.freed_pages(), 4);
    // Not freed before release.
    assert_eq!(hal.counts().live_pages(), live);
    g.release(&hal);
    assert_eq!(hal.counts().live_pages(), 1);
    assert_eq!(live, 5);
    assert_eq!((g.range(), g.page_size(), g.freed_pages()), (None, 0, 0));
    // A released gather is reusable.
    h.pt.map(Iova(0), PhysAddr(0), PAGE, RW).unwrap();
    h.pt.unmap(Iova(0), PAGE, &mut g).unwrap();
    assert_eq!(g.range(), Some((0, PAGE)));
    g.release(&hal);
    h.model = common::model::Model::new(&k.sizes());
    h.check_all();
    h.finish();
}

#[test]
fn default_gather_is_an_empty_gather() {
    // `Gather: Default` must behave like `Gather::new()`: an unmap of
    // [4 MiB, 4 MiB + 4 KiB) gathers exactly that range.
    let hal = TestHal::new(64);
    let mut pt = PageTable::new(X86_64::new(false), &hal).unwrap();
    pt.map(Iova(4 << 20), PhysAddr(0), PAGE, RW).unwrap();
    let mut g = Gather::default();
    assert_eq!(g.range(), None);
    pt.unmap(Iova(4 << 20), PAGE, &mut g).unwrap();
    assert_eq!(g.range(), Some((4 << 20, (4 << 20) + PAGE)));
    g.release(&hal);
}

#[test]
fn unmapping_a_block_whole_and_a_table_range_spanning_blocks() {
    let hal = TestHal::new(256);
    let f = ArmS1::new(MairIndices::default(), 48).unwrap();
    let mut h = Harness::new(
        f,
        Kind::ArmS1 {
            wb: 1,
            nc: 0,
            dev: 2,
        },
        &hal,
    );
    // 4 KiB | 2 MiB x2 | 1 GiB | 2 MiB | 4 KiB, one map call, then one unmap.
    let start = G1 - 2 * M2 - PAGE;
    let len = PAGE + 2 * M2 + G1 + M2 + PAGE;
    h.map(start, 0x80_0000_0000 + start, len, RW).unwrap();
    assert_eq!(h.pt.translate(Iova(G1)).unwrap().size, G1);
    assert_eq!(h.pt.translate(Iova(G1 - M2)).unwrap().size, M2);
    for (iova, size) in [(G1, G1), (G1 - M2, M2), (2 * G1, M2)] {
        // Cutting each block is refused.
        let r = h.unmap(iova + PAGE, PAGE);
        assert_eq!(r, Err(Error::SplitBlock { iova, size }));
    }
    h.unmap(start, len).unwrap();
    h.release();
    h.check_all();
    h.finish();
}

#[test]
fn tables_above_the_output_size_are_not_linked() {
    // The Hal hands out table pages above 2^40 while the format's output
    // size is 40 bits: the engine cannot encode them in a table entry and
    // must fail cleanly (NoMemory / OutOfRange) rather than link a truncated
    // address.
    let f = ArmS1::new(MairIndices::default(), 40).unwrap();
    // A root above 2^40: `new` refuses it and gives the page back.
    let hal = TestHal::with_base(1 << 40, 64);
    assert!(matches!(
        PageTable::new(f, &hal),
        Err(Error::OutOfRange { value, .. }) if value >= 1 << 40
    ));
    assert_eq!(hal.counts().live_pages(), 0);

    // A root just below 2^40 and every further page above it: `map` refuses,
    // links nothing and leaks nothing.
    let hal = TestHal::with_base((1 << 40) - 16 * PAGE, 64);
    let mut pt = PageTable::new(f, &hal).unwrap();
    assert!(pt.root_phys().0 < 1 << 40);
    let low: Vec<u64> = (0..15).map(|_| hal.alloc_pages(1).unwrap().0).collect();
    assert!(low.iter().all(|&p| p < 1 << 40));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pt.map(Iova(0), PhysAddr(0), PAGE, RW)
    }));
    match r {
        Ok(Err(Error::OutOfRange { value, .. })) => assert!(value >= 1 << 40),
        Ok(other) => panic!("map with table pages above 2^40 gave {other:?}"),
        Err(_) => panic!("map crashed following a truncated table address"),
    }
    assert_eq!(pt.iova_to_phys(Iova(0)), None);
    assert_eq!(
        hal.counts().live_pages(),
        1 + 15,
        "the reserve was given back"
    );
    for p in low {
        // SAFETY: taken from this Hal above and never used.
        unsafe { hal.free_pages(PhysAddr(p), 1) };
    }
    drop(pt);
    assert_eq!(hal.counts().live_pages(), 0);
}

#[test]
fn prot_the_format_cannot_express() {
    let hal = TestHal::new(16);
    let (f, _) = vtd4();
    let mut pt = PageTable::new(f, &hal).unwrap();
    // VT-d: no R and no W is a non-present entry.
    for p in [Prot::empty(), Prot::EXEC, Prot::CACHE | Prot::EXEC] {
        assert!(pt.map(Iova(0), PhysAddr(0), PAGE, p).is_err(), "{p:?}");
    }
    assert_eq!(hal.counts().live_pages(), 1);
    // Write-only is expressible in VT-d and Arm S2.
    pt.map(Iova(0), PhysAddr(0), PAGE, Prot::WRITE).unwrap();
    assert_eq!(pt.translate(Iova(0)).unwrap().prot, Prot::WRITE);
    let mut s2 = PageTable::new(ArmS2::new(40, 48).unwrap(), &hal).unwrap();
    s2.map(Iova(0), PhysAddr(0), PAGE, Prot::WRITE).unwrap();
    assert_eq!(s2.translate(Iova(0)).unwrap().prot & RW, Prot::WRITE);
}

#[test]
fn vtd_input_width_below_the_tables_width() {
    let hal = TestHal::new(16);
    // A unit translating less than the tables walk (CAP.MGAW 46 under
    // 48-bit tables): nothing above it is mapped.
    let fmt = VtdSl::new(48, LargePages::empty())
        .unwrap()
        .with_input_bits(46)
        .unwrap();
    let mut narrow = PageTable::new(fmt, &hal).unwrap();
    assert!(matches!(
        narrow.map(Iova(1 << 46), PhysAddr(0), PAGE, RW),
        Err(Error::OutOfRange { .. })
    ));
    narrow
        .map(Iova((1 << 46) - PAGE), PhysAddr(0), PAGE, RW)
        .unwrap();
    assert!(
        VtdSl::new(39, LargePages::empty())
            .unwrap()
            .with_input_bits(40)
            .is_err()
    );
}
