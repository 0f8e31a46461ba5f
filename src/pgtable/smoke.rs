//! Smoke tests of the engine over an in-crate page pool.

extern crate std;
use super::*;
use core::cell::{Cell, RefCell};
use std::vec::Vec;

/// Pages from a host buffer; physical address = offset + 1 GiB.
struct Pool {
    mem: RefCell<Vec<[u64; 512]>>,
    free: RefCell<Vec<usize>>,
    live: Cell<isize>,
}
const BASE: u64 = 1 << 30;
impl Pool {
    fn new(pages: usize) -> Self {
        Pool {
            mem: RefCell::new(std::vec![[0u64; 512]; pages]),
            free: RefCell::new((0..pages).rev().collect()),
            live: Cell::new(0),
        }
    }
}
// SAFETY: each page is a distinct element of `mem`, handed out once
// until freed, zeroed at allocation; `phys_to_virt` points at it.
unsafe impl Hal for Pool {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        assert_eq!(count, 1);
        let i = self.free.borrow_mut().pop()?;
        self.mem.borrow_mut()[i] = [0; 512];
        self.live.set(self.live.get() + 1);
        Some(PhysAddr(BASE + i as u64 * PAGE_SIZE))
    }
    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        assert_eq!(count, 1);
        self.free
            .borrow_mut()
            .push(((phys.0 - BASE) / PAGE_SIZE) as usize);
        self.live.set(self.live.get() - 1);
    }
    fn now_ns(&self) -> u64 {
        0
    }
    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        let i = ((phys.0 - BASE) / PAGE_SIZE) as usize;
        self.mem.borrow_mut()[i].as_mut_ptr() as *mut u8
    }
}

#[test]
fn map_translate_unmap_release() {
    let pool = Pool::new(64);
    {
        let fmt = VtdSl::new(48, LargePages::SIZE_2M).unwrap();
        let mut pt = PageTable::new(fmt, &pool).unwrap();
        let rw = Prot::READ | Prot::WRITE;
        // 1 MiB of 4 KiB pages and one 2 MiB block.
        pt.map(Iova(0x10_0000), PhysAddr(0x8000_0000), 0x10_0000, rw)
            .unwrap();
        pt.map(Iova(0x40_0000), PhysAddr(0x9000_0000), 0x20_0000, rw)
            .unwrap();
        assert_eq!(pool.live.get(), 4, "root + L2 + L1 + one leaf table");
        let t = pt.translate(Iova(0x10_3123)).unwrap();
        assert_eq!((t.phys.0, t.size), (0x8000_3123, 4096));
        let t = pt.translate(Iova(0x5f_fff8)).unwrap();
        assert_eq!((t.phys.0, t.size), (0x901f_fff8, 2 << 20));
        assert_eq!(pt.iova_to_phys(Iova(0x20_0000)), None);
        assert_eq!(
            pt.map(Iova(0x1f_f000), PhysAddr(0), 0x2000, rw),
            Err(Error::Overlap { iova: 0x1f_f000 })
        );
        let mut g = Gather::new();
        assert_eq!(
            pt.unmap(Iova(0x40_0000), 0x1000, &mut g),
            Err(Error::SplitBlock {
                iova: 0x40_0000,
                size: 2 << 20
            })
        );
        assert_eq!(
            pt.unmap(Iova(0x20_0000), 0x1000, &mut g),
            Err(Error::NotMapped { iova: 0x20_0000 })
        );
        pt.unmap(Iova(0x10_0000), 0x10_0000, &mut g).unwrap();
        assert_eq!(g.freed_pages(), 1, "the emptied leaf table");
        assert_eq!(g.range(), Some((0x10_0000, 0x20_0000)));
        assert_eq!(g.page_size(), 4096);
        assert_eq!(pt.iova_to_phys(Iova(0x10_0000)), None);
        g.release(pt.hal());
        assert_eq!(pool.live.get(), 3);
    }
    assert_eq!(pool.live.get(), 0, "drop frees every table");
}

/// Every kept count equals the number of valid entries of its table.
fn counts_ok<F: Format, H: Hal>(pt: &PageTable<F, H>, table: u64, level: u32) -> usize {
    let mut valid = 0;
    for i in 0..pt.entries(level) {
        let e = load(entry_ptr(&pt.hal, table, i));
        match pt.format.decode(e, level) {
            Pte::Invalid => assert_eq!(e, 0, "invalid entries are zero"),
            Pte::Leaf(_) => valid += 1,
            Pte::Table(child) => {
                valid += 1;
                let n = counts_ok(pt, child, level - 1);
                assert_eq!(
                    pt.count_of(e) as usize,
                    n,
                    "count of table at level {}",
                    level - 1
                );
                assert!(n > 0, "no empty table stays linked");
            }
        }
    }
    valid
}

#[test]
fn counts_track_every_map_and_unmap() {
    let pool = Pool::new(64);
    let mut pt = PageTable::new(ArmS1::new(MairIndices::default(), 48).unwrap(), &pool).unwrap();
    let rw = Prot::READ | Prot::WRITE;
    let mut g = Gather::new();
    // 3 MiB at an odd 4 KiB offset: leaf tables, one 2 MiB block, leaf tables.
    pt.map(
        Iova(0x1ff000),
        PhysAddr(0x4000_0000 + 0x1ff000),
        0x30_2000,
        rw,
    )
    .unwrap();
    pt.map(Iova(0x8000_0000), PhysAddr(0x8000_0000), 1 << 30, rw)
        .unwrap();
    counts_ok(&pt, pt.root, pt.root_level());
    pt.unmap(Iova(0x1ff000), 0x1000, &mut g).unwrap();
    counts_ok(&pt, pt.root, pt.root_level());
    pt.unmap(Iova(0x200000), 0x20_0000, &mut g).unwrap();
    counts_ok(&pt, pt.root, pt.root_level());
    pt.unmap(Iova(0x400000), 0x1000, &mut g).unwrap();
    counts_ok(&pt, pt.root, pt.root_level());
    pt.unmap(Iova(0x8000_0000), 1 << 30, &mut g).unwrap();
    assert_eq!(
        counts_ok(&pt, pt.root, pt.root_level()),
        1,
        "0x401000..0x501000 is left"
    );
    pt.unmap(Iova(0x401000), 0x10_0000, &mut g).unwrap();
    assert_eq!(counts_ok(&pt, pt.root, pt.root_level()), 0);
    g.release(pt.hal());
    assert_eq!(pool.live.get(), 1, "only the root is left");
}

#[test]
fn is_leaf_agrees_with_decode() {
    fn check<F: Format>(f: &F) {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for level in 0..f.levels() {
                let want = matches!(f.decode(x, level), Pte::Leaf(_));
                assert_eq!(f.is_leaf(x, level), want, "{x:#x} at level {level}");
                let low = x & 0xfff;
                assert_eq!(
                    f.is_leaf(low, level),
                    matches!(f.decode(low, level), Pte::Leaf(_))
                );
            }
        }
    }
    check(&VtdSl::new(57, LargePages::all()).unwrap());
    check(&X86_64::new(true));
    check(&ArmS1::new(MairIndices::default(), 48).unwrap());
    check(&ArmS2::new(40, 48).unwrap());
}

#[test]
fn vtd_refuses_a_leaf_without_access() {
    let pool = Pool::new(8);
    let fmt = VtdSl::new(39, LargePages::empty()).unwrap();
    let mut pt = PageTable::new(fmt, &pool).unwrap();
    assert!(matches!(
        pt.map(Iova(0), PhysAddr(0), 4096, Prot::EXEC),
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(pool.live.get(), 1);
    pt.map(Iova(0), PhysAddr(0), 4096, Prot::WRITE).unwrap();
    assert_eq!(pt.translate(Iova(0)).unwrap().prot, Prot::WRITE);
}

#[test]
fn out_of_memory_leaves_nothing_behind() {
    let pool = Pool::new(3); // root + 2: not enough for a 4-level 4 KiB map
    let mut pt = PageTable::new(X86_64::new(false), &pool).unwrap();
    assert_eq!(
        pt.map(Iova(0), PhysAddr(0), 4096, Prot::READ),
        Err(Error::NoMemory)
    );
    // Non-canonical (upper-half) x86 inputs are refused, not masked.
    assert!(matches!(
        pt.map(Iova(1 << 47), PhysAddr(0), 4096, Prot::READ),
        Err(Error::OutOfRange { what: "iova", .. })
    ));
    assert_eq!(pt.translate(Iova((1 << 47) + 0x1000)), None);
    assert_eq!(pool.live.get(), 1);
    assert_eq!(pt.iova_to_phys(Iova(0)), None);
}
