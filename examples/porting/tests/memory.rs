//! What the crate's memory costs an embedder, measured: table pages per
//! paging domain for each format (a counting `Hal`), and the VT-d driver's
//! own pages per unit (against the VT-d model). Prints the tables
//! `docs/porting.md` shows, and fails if the guide shows other numbers:
//! `cargo test -p iommu-porting --test memory -- --nocapture`.

#[path = "../../../tests/common/vtd_model.rs"]
mod vtd_model;

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use iommu::core::{DeviceId, Iommu};
use iommu::drivers::vtd::driver::Vtd;
use iommu::hal::Hal;
use iommu::pgtable::{
    ArmS1, ArmS2, Format, Gather, LargePages, MairIndices, PageTable, Prot, VtdSl, X86_64,
};
use iommu::{Iova, PhysAddr};
use iommu_porting::{PortCaps, translate, vtd_bring_up};
use vtd_model::{FakeUnit, ModelHal, UnitConfig};

/// Pages from one heap arena, handed out in order and counted (freed pages
/// are counted, not reused). Physical addresses start at `PHYS`, low enough
/// for every format's output size.
#[derive(Clone)]
struct Counting(Arc<Arena>);

struct Arena {
    base: usize,
    next: AtomicUsize,
    live: AtomicUsize,
}

const ARENA_PAGES: usize = 1024;
const PHYS: u64 = 0x1000_0000;

fn layout() -> Layout {
    Layout::from_size_align(ARENA_PAGES * 4096, 1 << 16).unwrap()
}

impl Counting {
    fn new() -> Self {
        // SAFETY: a non-zero size.
        let base = unsafe { alloc_zeroed(layout()) } as usize;
        assert_ne!(base, 0);
        Counting(Arc::new(Arena {
            base,
            next: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }))
    }

    fn live(&self) -> usize {
        self.0.live.load(Ordering::Relaxed)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `Counting::new` with this layout.
        unsafe { dealloc(self.base as *mut u8, layout()) };
    }
}

// SAFETY: runs of the arena, aligned to their size, zeroed by
// `alloc_zeroed` and never handed out twice; `phys_to_virt` undoes the
// offset to `PHYS`.
unsafe impl Hal for Counting {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        let a = &self.0;
        let first = a.next.load(Ordering::Relaxed).next_multiple_of(count);
        if first + count > ARENA_PAGES {
            return None;
        }
        a.next.store(first + count, Ordering::Relaxed);
        a.live.fetch_add(count, Ordering::Relaxed);
        Some(PhysAddr(PHYS + first as u64 * 4096))
    }
    unsafe fn free_pages(&self, _: PhysAddr, count: usize) {
        self.0.live.fetch_sub(count, Ordering::Relaxed);
    }
    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        (self.0.base + (phys.get() - PHYS) as usize) as *mut u8
    }
    fn now_ns(&self) -> u64 {
        0
    }
}

const RW: Prot = Prot::READ.union(Prot::WRITE);
const MIB: u64 = 1 << 20;

/// Pages one domain of `format` holds: empty, with one 4 KiB page, with
/// 1 MiB of 4 KiB pages, with a 2 MiB block, and after unmapping it all.
fn pages<F: Format + Clone>(format: F) -> [usize; 5] {
    let at = |iova: u64, len, paddr: u64| {
        let hal = Counting::new();
        let n = || hal.live();
        let mut t = PageTable::new(format.clone(), hal.clone()).unwrap();
        let empty = n();
        t.map(Iova(iova), PhysAddr(paddr), len, RW).unwrap();
        let used = n();
        let mut g = Gather::new();
        t.unmap(Iova(iova), len, &mut g).unwrap();
        drop(g);
        let after = n();
        drop(t);
        (empty, used, after)
    };
    let (empty, one, _) = at(0x4000_0000, 0x1000, 0x8000_0000);
    let (_, mib, _) = at(0x4000_0000, MIB, 0x8000_0000);
    let (_, block, after) = at(0x4000_0000, 2 * MIB, 0x8000_0000);
    [empty, one, mib, block, after]
}

/// The rows of the guide's table of table pages per domain.
fn domain_rows() -> Vec<String> {
    let both = LargePages::SIZE_2M | LargePages::SIZE_1G;
    let rows = [
        (
            "VT-d second level, 48-bit (4 levels)",
            pages(VtdSl::new(48, both).unwrap()),
        ),
        (
            "VT-d second level, 39-bit (3 levels)",
            pages(VtdSl::new(39, both).unwrap()),
        ),
        (
            "x86-64 4-level (VT-d first level)",
            pages(X86_64::new(false)),
        ),
        (
            "Arm stage 1, 48-bit (SMMUv3 S1)",
            pages(ArmS1::new(MairIndices::default(), 44).unwrap()),
        ),
        (
            "Arm stage 2, 44-bit IPA (SMMUv3 S2, QEMU's OAS)",
            pages(ArmS2::new(44, 44).unwrap()),
        ),
        (
            "Arm stage 2, 40-bit IPA",
            pages(ArmS2::new(40, 40).unwrap()),
        ),
    ];
    rows.iter()
        .map(|(what, [e, one, mib, block, after])| {
            format!("| {what} | {e} | {one} | {mib} | {block} | {after} |")
        })
        .collect()
}

/// Pages the VT-d driver holds for one unit: after bring-up, and per
/// device attached (its context / PASID structures, beside the domain).
fn vtd_rows() -> Vec<String> {
    // QEMU's q35: one INCLUDE_PCI_ALL DRHD.
    let dmar = iommu_porting::Q35;
    let mut rows = vec![];
    for (mode, config) in [
        ("legacy", UnitConfig::legacy()),
        ("scalable", UnitConfig::scalable()),
    ] {
        let hal = ModelHal::new();
        let unit = FakeUnit::new(&hal, config);
        let mut core = Box::new(Iommu::<_, _, PortCaps>::new(
            Vtd::new(hal.clone()),
            hal.clone(),
        ));
        let before = hal.live_pages();
        // SAFETY: the model's block outlives the core (dropped first below).
        unsafe { vtd_bring_up(&mut core, &dmar, |_, _| Some(unit.base()), 1 << 32) }.unwrap();
        let up = hal.live_pages() - before;
        let dev = |rid: u16| DeviceId {
            instance: 0,
            id: rid.into(),
        };
        let mut per_dev = vec![];
        for rid in [0x0010, 0x0018, 0x0100] {
            let n = hal.live_pages();
            translate(&mut core, dev(rid), 0x4000_0000, 0x8000_0000, 0x1000).unwrap();
            // Minus the domain's own tables (the 48-bit rows above: 4).
            per_dev.push(hal.live_pages() - n - 4);
        }
        rows.push(format!(
            "| VT-d {mode} (QEMU's capabilities) | {up} | {} | {} | {} |",
            per_dev[0], per_dev[1], per_dev[2]
        ));
        drop(core);
    }
    rows
}

#[test]
fn the_guide_shows_the_measured_pages() {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/porting.md"),
    )
    .unwrap_or_default();
    let mut missing = vec![];
    for row in domain_rows().into_iter().chain(vtd_rows()) {
        println!("{row}");
        if !guide.contains(&row) {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/porting.md lacks these measured rows:\n{}",
        missing.join("\n")
    );
}
