//! Self-tests of the shared helpers: the page pool, the model and the
//! reference walkers on hand-built tables (no engine involved).

mod common;

use common::model::{Model, Refusal, UnmapRefusal};
use common::pool::{DeviceView, PAGE, POISON, TestHal};
use common::walk::{MemType, RefFormat, s2_start};

#[test]
fn pool_allocates_aligned_zeroed_and_counts() {
    let hal = TestHal::new(64);
    let a = hal.alloc(1).unwrap();
    let b = hal.alloc(16).unwrap();
    assert_eq!(b % (16 * PAGE), 0);
    assert!(hal.page_words(a).iter().all(|&w| w == 0));
    hal.write_u64(b + 8, 0x1234);
    assert_eq!(hal.read_u64(b + 8), 0x1234);
    let c = hal.counts();
    assert_eq!((c.allocs, c.pages_allocated, c.live_pages()), (2, 17, 17));
    hal.free(b, 16);
    assert!(!hal.is_live(b));
    assert_eq!(hal.read_u64(b + 8), u64::from_ne_bytes([POISON; 8]));
    // Reallocation hands out zeroed memory again.
    let mut got = Vec::new();
    while let Some(p) = hal.alloc(1) {
        got.push(p);
    }
    assert_eq!(got.len(), 63);
    assert!(
        got.iter()
            .all(|&p| hal.page_words(p).iter().all(|&w| w == 0))
    );
    assert_eq!(hal.counts().failed, 1);
}

#[test]
#[should_panic(expected = "double free")]
fn pool_catches_double_free() {
    let hal = TestHal::new(4);
    let a = hal.alloc(1).unwrap();
    hal.free(a, 1);
    hal.free(a, 1);
}

#[test]
#[should_panic(expected = "allocated with count 2")]
fn pool_catches_wrong_size_free() {
    let hal = TestHal::new(4);
    let a = hal.alloc(2).unwrap();
    hal.free(a, 1);
}

#[test]
#[should_panic(expected = "not a page of this pool")]
fn pool_catches_foreign_free() {
    let hal = TestHal::new(4);
    hal.free(0x1000, 1);
}

#[test]
fn pool_fails_the_nth_allocation() {
    let hal = TestHal::new(8);
    hal.fail_nth(2);
    assert!(hal.alloc(1).is_some());
    assert!(hal.alloc(1).is_none());
    assert!(hal.alloc(1).is_some());
    hal.fail_from_nth(1);
    assert!(hal.alloc(1).is_none());
    assert!(hal.alloc(1).is_none());
    hal.clear_failures();
    assert!(hal.alloc(1).is_some());
    assert_eq!(hal.counts().failed, 3);
}

#[test]
fn pool_device_view_sees_only_flushed_writes() {
    let hal = TestHal::new(4);
    let a = hal.alloc(1).unwrap();
    // SAFETY: a live page of the pool.
    unsafe { (hal.virt(a) as *mut u64).add(3).write(7) };
    assert_eq!(hal.unflushed([a]), vec![(a, 3)]);
    assert_eq!(common::pool::PhysMem::read(&DeviceView(&hal), a + 24), 0);
    hal.flush(hal.virt(a + 24), 8);
    assert!(hal.unflushed([a]).is_empty());
}

#[test]
fn model_decomposes_greedily_and_refuses() {
    let mut m: Model<u8> = Model::new(&[PAGE, 2 << 20, 1 << 30]);
    // 4 KiB up to the 2 MiB boundary, one 2 MiB, then 4 KiB.
    let d = m.decompose(0x1f_f000, 0x8_001f_f000, 0x20_2000);
    assert_eq!(d.first().unwrap().2, PAGE);
    assert!(d.iter().any(|&(i, _, s)| i == 0x20_0000 && s == 2 << 20));
    // Misaligned paddr forces 4 KiB pages.
    assert!(m.decompose(0, 0x1000, 4 << 20).iter().all(|c| c.2 == PAGE));
    m.map(0x20_0000, 0x4000_0000, 2 << 20, 1).unwrap();
    m.map(0x1000, 0x1000, 0x2000, 2).unwrap();
    assert_eq!(m.lookup(0x21_2345), Some((0x4001_2345, 2 << 20, 1)));
    assert_eq!(m.lookup(0x3000), None);
    assert!(m.map(0x2000, 0, 0x1000, 3).is_err());
    assert_eq!(m.first_overlap_chunk(0, 0, 0x4000), Some(0x1000));
    let r = m.check_unmap(0x20_0000, PAGE).unwrap_err();
    assert_eq!(r.split, Some((0x20_0000, 2 << 20)));
    assert_eq!(
        Model::<u8>::first_refusal(r, 0x20_0000),
        Refusal::Split(0x20_0000, 2 << 20)
    );
    let r = m.check_unmap(0x1000, 0x3000).unwrap_err();
    assert_eq!(
        r,
        UnmapRefusal {
            not_mapped: Some(0x3000),
            split: None
        }
    );
    // Hole first, then a cut block: the hole is reported first.
    let r = m.check_unmap(0x1f_f000, 0x2000).unwrap_err();
    assert_eq!(
        Model::<u8>::first_refusal(r, 0x1f_f000),
        Refusal::NotMapped(0x1f_f000)
    );
    assert_eq!(m.runs(), vec![(0x1000, 0x2000), (0x20_0000, 2 << 20)]);
    assert_eq!(m.unmap(0x1000, 0x2000).unwrap().len(), 2);
    // Tables: 4-level, the 2 MiB block needs L3 (height 3) + L2 (height 2) tables.
    assert_eq!(m.expected_table_pages(4, 1), 3);
    m.map(0x40_0000, 0, PAGE, 0).unwrap();
    assert_eq!(m.expected_table_pages(4, 1), 4, "plus one last-level table");
}

#[test]
fn s2_start_level_and_concatenation() {
    // [ARM] D8.2 (VTCR_EL2 with 4 KiB granule): (height, concatenated pages).
    assert_eq!(s2_start(48), (4, 1)); // SL0 = L0
    assert_eq!(s2_start(44), (4, 1)); // L0 resolves 5 bits: no concatenation
    assert_eq!(s2_start(42), (3, 8)); // L0 would resolve 3 bits
    assert_eq!(s2_start(40), (3, 2));
    assert_eq!(s2_start(39), (3, 1));
    assert_eq!(s2_start(36), (3, 1));
    assert_eq!(s2_start(34), (2, 16));
    assert_eq!(s2_start(32), (2, 4));
    assert_eq!(s2_start(30), (2, 1)); // never start at L3
    assert_eq!(s2_start(25), (2, 1));
}

/// Hand-built tables: a helper that allocates and links.
struct Builder<'a> {
    hal: &'a TestHal,
}

impl Builder<'_> {
    fn page(&self) -> u64 {
        self.hal.alloc(1).unwrap()
    }
    fn set(&self, table: u64, index: u64, pte: u64) {
        self.hal.write_u64(table + index * 8, pte);
    }
}

#[test]
fn walker_vtd_sl_hand_built() {
    let hal = TestHal::new(16);
    let b = Builder { hal: &hal };
    let f = RefFormat::VtdSl { levels: 4 };
    let (l4, l3, l2, l1) = (b.page(), b.page(), b.page(), b.page());
    let iova = (1u64 << 39) * 2 + (1 << 30) * 3 + (2 << 20) * 4 + 5 * PAGE;
    // Non-leaf entries: R|W plus address ([VT-d] 9.8).
    b.set(l4, 2, l3 | 0b011);
    b.set(l3, 3, l2 | 0b011);
    b.set(l2, 4, l1 | 0b011);
    // Leaf: R only, SNP.
    b.set(l1, 5, 0x7654_3000 | 1 | 1 << 11);
    let w = f.walk(&hal, l4, iova + 0x123).unwrap();
    assert_eq!((w.phys, w.size, w.height), (0x7654_3123, PAGE, 1));
    assert!(w.attrs.read && !w.attrs.write && !w.attrs.exec);
    assert_eq!(w.attrs.snoop, Some(true));
    assert_eq!(f.walk(&hal, l4, iova + PAGE), None);
    // A 2 MiB leaf (PS) in the PD; W cleared in the PDPTE removes write.
    b.set(l2, 6, 0x4000_0000 | 0b011 | 1 << 7);
    let w = f
        .walk(&hal, l4, iova - 5 * PAGE + 2 * (2 << 20) + 0x1234)
        .unwrap();
    assert_eq!((w.phys, w.size), (0x4000_1234, 2 << 20));
    assert!(w.attrs.write);
    b.set(l3, 3, l2 | 0b001);
    let w = f.walk(&hal, l4, iova - 5 * PAGE + 2 * (2 << 20)).unwrap();
    assert!(!w.attrs.write, "access rights AND across levels");
    let s = f.scan(&hal, l4);
    assert_eq!(s.leaves.len(), 2);
    assert_eq!(s.tables, {
        let mut v = vec![l4, l3, l2, l1];
        v.sort();
        v
    });
}

#[test]
#[should_panic(expected = "reserved address bits")]
fn walker_vtd_rejects_misaligned_large_page() {
    let hal = TestHal::new(8);
    let b = Builder { hal: &hal };
    let f = RefFormat::VtdSl { levels: 3 };
    let l3 = b.page();
    b.set(l3, 0, 0x4000_1000 | 0b11 | 1 << 7);
    f.walk(&hal, l3, 0);
}

#[test]
#[should_panic(expected = "not a live table page")]
fn walker_refuses_freed_tables() {
    let hal = TestHal::new(8);
    let b = Builder { hal: &hal };
    let f = RefFormat::X86 { levels: 4 };
    let (l4, l3) = (b.page(), b.page());
    b.set(l4, 0, l3 | 0b111);
    hal.free(l3, 1);
    f.walk(&hal, l4, 0);
}

#[test]
fn walker_x86_hand_built() {
    let hal = TestHal::new(16);
    let b = Builder { hal: &hal };
    let f = RefFormat::X86 { levels: 5 };
    let (l5, l4, l3, l2) = (b.page(), b.page(), b.page(), b.page());
    b.set(l5, 0, l4 | 0b111);
    b.set(l4, 0, l3 | 0b111);
    // 1 GiB page at index 1: P, RW, US clear (supervisor), G, PCD|PWT, XD.
    b.set(
        l3,
        1,
        0x8000_0000 | 0b11 | 1 << 7 | 1 << 8 | 0b11 << 3 | 1 << 63,
    );
    let w = f.walk(&hal, l5, (1 << 30) + 0x5678).unwrap();
    assert_eq!((w.phys, w.size), (0x8000_5678, 1 << 30));
    let a = w.attrs;
    assert!(a.read && a.write && !a.exec);
    assert_eq!((a.privileged, a.global), (Some(true), Some(true)));
    assert_eq!(a.mem, Some(MemType::X86PatIndex(3)));
    // 2 MiB page with PAT (bit 12) set: index 4.
    b.set(l3, 0, l2 | 0b111);
    b.set(l2, 0, 0x20_0000 | 0b101 | 1 << 7 | 1 << 12);
    let w = f.walk(&hal, l5, 0x1000).unwrap();
    assert_eq!((w.phys, w.size), (0x20_1000, 2 << 20));
    assert_eq!(w.attrs.mem, Some(MemType::X86PatIndex(4)));
    assert_eq!(w.attrs.privileged, Some(false));
    assert!(!w.attrs.write);
    // US cleared in a table entry makes the leaf supervisor-only.
    b.set(l3, 0, l2 | 0b011);
    assert_eq!(f.walk(&hal, l5, 0).unwrap().attrs.privileged, Some(true));
    // Beyond 57 bits: no translation.
    assert_eq!(f.walk(&hal, l5, 1 << 57), None);
}

#[test]
fn walker_arm_s1_hand_built() {
    let hal = TestHal::new(16);
    let b = Builder { hal: &hal };
    let f = RefFormat::ArmS1 {
        idx_wb: 1,
        idx_nc: 0,
        idx_dev: 2,
    };
    let (l0, l1, l2, l3) = (b.page(), b.page(), b.page(), b.page());
    b.set(l0, 1, l1 | 0b11);
    b.set(l1, 0, l2 | 0b11);
    b.set(l2, 0, l3 | 0b11);
    // Page: valid|page, AttrIndx 1, AP = 0b01 (EL0 RW), SH 0b11, AF, nG.
    let pte = 0x9_0000_0000 | 0b11 | 1 << 2 | 0b01 << 6 | 0b11 << 8 | 1 << 10 | 1 << 11;
    b.set(l3, 7, pte);
    let w = f.walk(&hal, l0, (1 << 39) + 7 * PAGE + 0x10).unwrap();
    assert_eq!((w.phys, w.size, w.height), (0x9_0000_0010, PAGE, 1));
    let a = w.attrs;
    assert!(a.read && a.write && a.exec);
    assert_eq!(a.privileged, Some(false));
    assert_eq!(a.global, Some(false));
    assert_eq!(a.mem, Some(MemType::WriteBack));
    assert_eq!((a.shareability, a.access_flag), (Some(3), Some(true)));
    // 2 MiB block at L2 index 1, device, read-only, XN.
    b.set(
        l2,
        1,
        0x40_0000 | 0b01 | 2 << 2 | 0b10 << 6 | 1 << 10 | 3 << 53,
    );
    let w = f.walk(&hal, l0, (1 << 39) + (2 << 20)).unwrap();
    assert_eq!((w.phys, w.size), (0x40_0000, 2 << 20));
    assert!(!w.attrs.write && !w.attrs.exec);
    assert_eq!(w.attrs.mem, Some(MemType::Device));
    assert_eq!(w.attrs.privileged, Some(true));
    // APTable[1] in the L1 table entry: read-only below.
    b.set(l1, 0, l2 | 0b11 | 1 << 62);
    assert!(!f.walk(&hal, l0, (1 << 39) + 7 * PAGE).unwrap().attrs.write);
    assert_eq!(f.walk(&hal, l0, 1 << 48), None);
}

#[test]
#[should_panic(expected = "block descriptor at L0")]
fn walker_arm_rejects_l0_block() {
    let hal = TestHal::new(4);
    let b = Builder { hal: &hal };
    let f = RefFormat::ArmS1 {
        idx_wb: 1,
        idx_nc: 0,
        idx_dev: 2,
    };
    let l0 = b.page();
    b.set(l0, 0, 0b01);
    f.walk(&hal, l0, 0);
}

#[test]
fn walker_arm_s2_concatenated_root() {
    let hal = TestHal::new(32);
    let b = Builder { hal: &hal };
    // 40-bit IPA: start at L1 with 2 concatenated pages.
    let f = RefFormat::ArmS2 { ias: 40 };
    assert_eq!((f.top(), f.root_pages()), (3, 2));
    let root = hal.alloc(2).unwrap();
    let l2 = b.page();
    // Index 512 (IPA bit 39 set) lives in the second root page.
    b.set(root, 512, l2 | 0b11);
    // 2 MiB block: S2AP = R only, MemAttr NC, SH IS, AF.
    b.set(
        l2,
        3,
        0x60_0000 | 0b01 | 0b0101 << 2 | 1 << 6 | 0b11 << 8 | 1 << 10 | 1 << 54,
    );
    let ipa = (1 << 39) + 3 * (2 << 20) + 0x42;
    let w = f.walk(&hal, root, ipa).unwrap();
    assert_eq!((w.phys, w.size), (0x60_0042, 2 << 20));
    let a = w.attrs;
    assert!(a.read && !a.write && !a.exec);
    assert_eq!(a.mem, Some(MemType::NonCacheable));
    assert_eq!(f.walk(&hal, root, 1 << 40), None);
    // 1 GiB block at the root.
    b.set(
        root,
        1,
        0x4000_0000 | 0b01 | 0b1111 << 2 | 0b11 << 6 | 1 << 10,
    );
    let w = f.walk(&hal, root, (1 << 30) + 5).unwrap();
    assert_eq!((w.phys, w.size), (0x4000_0005, 1 << 30));
    assert_eq!(w.attrs.mem, Some(MemType::WriteBack));
    assert!(w.attrs.exec && w.attrs.write);
    let s = f.scan(&hal, root);
    assert_eq!(s.tables.len(), 3);
    assert_eq!(s.leaves.len(), 2);
}

#[test]
#[should_panic(expected = "beyond the input range")]
fn walker_arm_s2_entry_beyond_ias() {
    let hal = TestHal::new(4);
    let b = Builder { hal: &hal };
    // 44-bit IPA at L0 uses 32 entries; entry 32 must stay invalid.
    let f = RefFormat::ArmS2 { ias: 44 };
    let root = b.page();
    b.set(root, 32, 0x1000 | 0b11);
    f.scan(&hal, root);
}
