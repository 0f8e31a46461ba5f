//! Page-table map/unmap benchmark: `cargo xtask bench pgtable`
//! (`cargo bench -p iommu --bench pgtable` under the hood).
//!
//! Measures map and unmap of 1×4K, 256×4K and 256×2M for each of our four
//! formats, against the crate a Rust user would pick today for the same
//! format: `aarch64-paging` for Arm stage 1 and stage 2, the `x86_64` crate's
//! `OffsetPageTable` for x86-64. VT-d second-level has no Rust peer.
//!
//! Method, the same for both sides:
//! - one page pool (bump allocator over a pre-zeroed arena; page allocation
//!   is part of the map cost, freeing is a counter);
//! - every operation starts from a freshly created, empty table: a batch
//!   creates `n` tables (untimed, so root creation is excluded on both
//!   sides), times mapping the shape into each, then times unmapping it from
//!   each, then drops them and re-zeroes the pool (untimed);
//! - ours maps a shape with one `map` call over the whole range; peers do
//!   the most efficient thing their API offers (`map_range` over the range,
//!   or one `Mapper::map_to` per page);
//! - batches of ours and the peer alternate; the result is the median (and
//!   the min) over the batches of batch time / `n`.
//!
//! Without `--bench` (e.g. `cargo test --benches`) it runs a few small,
//! verified batches only, as a smoke test.

use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use aarch64_paging::Mapping;
use aarch64_paging::descriptor::{
    El1Attributes, PagingAttributes, PhysicalAddress, Stage2Attributes,
};
use aarch64_paging::paging::{
    Constraints, El1And0, MemoryRegion, PageTable as ArmTable, Stage2, Translation,
    TranslationRegime, VaRange,
};
use iommu::drivers::vtd::regs::LargePages;
use iommu::hal::Hal;
use iommu::pgtable::{ArmS1, ArmS2, Format, Gather, MairIndices, PageTable, Prot, VtdSl, X86_64};
use iommu::{Iova, PhysAddr as Phys};
use x86_64::structures::paging::mapper::CleanUp;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page, PageSize,
    PageTable as X86Table, PageTableFlags, PhysFrame, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

const PAGE: usize = 4096;
const SZ_2M: usize = 2 << 20;
/// Where every shape is mapped (1 GiB: 2M- and 1G-aligned, canonical).
const IOVA: u64 = 0x4000_0000;
/// The output address of the first mapped page (4 GiB).
const PADDR: u64 = 0x1_0000_0000;
/// "Physical" address of the pool's first page; phys = virt - base + PHYS_BASE.
const PHYS_BASE: u64 = 0x8000_0000;

// ---------------------------------------------------------------------------
// The page pool, shared by every side.

/// Bump allocator over a zeroed arena. Pages handed out are zero; freed pages
/// are not reused until [`Pool::reset`] re-zeroes everything handed out.
struct Pool {
    base: *mut u8,
    pages: usize,
    next: Cell<usize>,
    freed: Cell<usize>,
}

impl Pool {
    fn new(bytes: usize) -> &'static Pool {
        let layout = std::alloc::Layout::from_size_align(bytes, SZ_2M).expect("pool layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(
            !base.is_null(),
            "cannot allocate the {bytes}-byte page pool"
        );
        Box::leak(Box::new(Pool {
            base,
            pages: bytes / PAGE,
            next: Cell::new(0),
            freed: Cell::new(0),
        }))
    }

    /// `count` zeroed, contiguous pages aligned to `count` pages.
    #[inline]
    fn alloc(&self, count: usize) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let start = self.next.get().next_multiple_of(count);
        let end = start + count;
        if end > self.pages {
            return None;
        }
        self.next.set(end);
        Some(PHYS_BASE + (start * PAGE) as u64)
    }

    #[inline]
    fn free(&self, _phys: u64, count: usize) {
        self.freed.set(self.freed.get() + count);
    }

    #[inline]
    fn virt(&self, phys: u64) -> *mut u8 {
        self.base.wrapping_add((phys - PHYS_BASE) as usize)
    }

    #[inline]
    fn phys(&self, virt: *const u8) -> u64 {
        PHYS_BASE + (virt as usize - self.base as usize) as u64
    }

    /// virt - phys, for the x86_64 crate's `OffsetPageTable`.
    fn phys_offset(&self) -> u64 {
        self.base as u64 - PHYS_BASE
    }

    /// Re-zero everything handed out since the last reset and start over.
    fn reset(&self) {
        // SAFETY: the first `next` pages are inside the arena, and nothing
        // refers to them any more (every table was dropped).
        unsafe { std::ptr::write_bytes(self.base, 0, self.next.get() * PAGE) };
        self.next.set(0);
        self.freed.set(0);
    }

    fn used(&self) -> usize {
        self.next.get()
    }
}

// SAFETY: the bump pool hands out distinct zeroed pages of its own mapping,
// never twice before a reset, and `phys_to_virt` points into them.
unsafe impl Hal for Pool {
    #[inline]
    fn alloc_pages(&self, count: usize) -> Option<Phys> {
        self.alloc(count).map(Phys)
    }

    #[inline]
    unsafe fn free_pages(&self, phys: Phys, count: usize) {
        self.free(phys.0, count)
    }

    fn now_ns(&self) -> u64 {
        0
    }

    #[inline]
    fn phys_to_virt(&self, phys: Phys) -> *mut u8 {
        self.virt(phys.0)
    }
}

// ---------------------------------------------------------------------------
// What is measured.

#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    pages: usize,
    page_size: usize,
    /// Tables per batch.
    batch: usize,
}

impl Shape {
    fn len(&self) -> usize {
        self.pages * self.page_size
    }
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "1x4K",
        pages: 1,
        page_size: PAGE,
        batch: 256,
    },
    Shape {
        name: "256x4K",
        pages: 256,
        page_size: PAGE,
        batch: 32,
    },
    Shape {
        name: "256x2M",
        pages: 256,
        page_size: SZ_2M,
        batch: 32,
    },
];

/// One page-table implementation under test.
trait Subject {
    type Table;
    /// A new, empty table (untimed).
    fn create(&self) -> Self::Table;
    /// Map `shape` at `iova` to `pa` (timed).
    fn map(&self, t: &mut Self::Table, iova: u64, pa: u64, shape: Shape);
    /// Unmap `shape` at `iova` (timed).
    fn unmap(&self, t: &mut Self::Table, iova: u64, shape: Shape);
    /// Where `iova` translates to (untimed, for verification).
    fn translate(&self, t: &Self::Table, iova: u64) -> Option<u64>;
}

/// ns per operation in one batch.
#[derive(Clone, Copy)]
struct Sample {
    map: f64,
    unmap: f64,
}

fn verify<S: Subject>(s: &S, t: &S::Table, shape: Shape, mapped: bool) {
    let last = (shape.pages - 1) as u64;
    for i in [0, last / 2, last] {
        let off = i * shape.page_size as u64;
        for extra in [0, shape.page_size as u64 - 8] {
            let got = s.translate(t, IOVA + off + extra);
            let want = mapped.then_some(PADDR + off + extra);
            assert_eq!(
                got,
                want,
                "{} page {i} +{extra:#x}: translation after {}",
                shape.name,
                if mapped { "map" } else { "unmap" }
            );
        }
    }
}

/// Create `shape.batch` empty tables, time mapping `shape` into each, then
/// unmapping it from each.
fn batch<S: Subject>(s: &S, pool: &Pool, shape: Shape, n: usize, check: bool) -> Sample {
    let mut tables: Vec<S::Table> = (0..n).map(|_| s.create()).collect();
    let (iova, pa) = (black_box(IOVA), black_box(PADDR));

    let t0 = Instant::now();
    for t in tables.iter_mut() {
        s.map(black_box(t), iova, pa, shape);
    }
    let map = t0.elapsed();
    black_box(&mut tables);
    if check {
        tables.iter().for_each(|t| verify(s, t, shape, true));
    }

    let t0 = Instant::now();
    for t in tables.iter_mut() {
        s.unmap(black_box(t), iova, shape);
    }
    let unmap = t0.elapsed();
    black_box(&mut tables);
    if check {
        tables.iter().for_each(|t| verify(s, t, shape, false));
    }

    drop(tables);
    pool.reset();
    Sample {
        map: map.as_nanos() as f64 / n as f64,
        unmap: unmap.as_nanos() as f64 / n as f64,
    }
}

type Runner = Box<dyn FnMut(Shape, usize, bool) -> Sample>;

fn runner<S: Subject + 'static>(s: S, pool: &'static Pool) -> Runner {
    Box::new(move |shape, n, check| batch(&s, pool, shape, n, check))
}

// ---------------------------------------------------------------------------
// Ours: one `map` call over the whole range; `unmap` + `Gather::release`.

struct Ours<F>(F, &'static Pool);

const PROT: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);

impl<F: Format + Copy> Subject for Ours<F> {
    type Table = PageTable<F, &'static Pool>;

    fn create(&self) -> Self::Table {
        PageTable::new(self.0, self.1).expect("iommu PageTable::new")
    }

    #[inline(never)]
    fn map(&self, t: &mut Self::Table, iova: u64, pa: u64, shape: Shape) {
        t.map(Iova(iova), Phys(pa), shape.len() as u64, PROT)
            .expect("iommu map");
    }

    #[inline(never)]
    fn unmap(&self, t: &mut Self::Table, iova: u64, shape: Shape) {
        let mut gather = Gather::new();
        t.unmap(Iova(iova), shape.len() as u64, &mut gather)
            .expect("iommu unmap");
        // No IOTLB to invalidate on the host; freeing the gathered tables is
        // part of our unmap cost.
        gather.release(t.hal());
    }

    fn translate(&self, t: &Self::Table, iova: u64) -> Option<u64> {
        t.iova_to_phys(Iova(iova)).map(|p| p.0)
    }
}

// ---------------------------------------------------------------------------
// Peer: aarch64-paging (Arm stage 1 via El1And0, stage 2 via Stage2).

#[derive(Clone, Copy)]
struct ArmPool(&'static Pool);

impl<A: PagingAttributes> Translation<A> for ArmPool {
    #[inline]
    fn allocate_table(&mut self) -> (std::ptr::NonNull<ArmTable<A>>, PhysicalAddress) {
        let pa = self.0.alloc(1).expect("page pool exhausted");
        let va = self.0.virt(pa).cast();
        (
            std::ptr::NonNull::new(va).unwrap(),
            PhysicalAddress(pa as usize),
        )
    }

    #[inline]
    unsafe fn deallocate_table(&mut self, table: std::ptr::NonNull<ArmTable<A>>) {
        self.0.free(self.0.phys(table.as_ptr().cast()), 1);
    }

    #[inline]
    fn physical_to_virtual(&self, pa: PhysicalAddress) -> std::ptr::NonNull<ArmTable<A>> {
        std::ptr::NonNull::new(self.0.virt(pa.0 as u64).cast()).unwrap()
    }
}

/// How to make an empty aarch64-paging table for one regime, and with what
/// attributes to map.
trait ArmRegime: TranslationRegime {
    const VALID_RW: Self::Attributes;
    fn create(pool: ArmPool) -> Mapping<ArmPool, Self>
    where
        ArmPool: Translation<Self::Attributes>;
}

impl ArmRegime for El1And0 {
    const VALID_RW: El1Attributes = El1Attributes::VALID
        .union(El1Attributes::ATTRIBUTE_INDEX_1)
        .union(El1Attributes::INNER_SHAREABLE)
        .union(El1Attributes::ACCESSED)
        .union(El1Attributes::NON_GLOBAL)
        .union(El1Attributes::UXN)
        .union(El1Attributes::PXN);
    fn create(pool: ArmPool) -> Mapping<ArmPool, Self> {
        // 48-bit input: 4 levels, root at level 0.
        Mapping::with_asid_and_va_range(pool, 1, 0, El1And0, VaRange::Lower)
    }
}

impl ArmRegime for Stage2 {
    const VALID_RW: Stage2Attributes = Stage2Attributes::VALID
        .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
        .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
        .union(Stage2Attributes::S2AP_ACCESS_RW)
        .union(Stage2Attributes::SH_INNER)
        .union(Stage2Attributes::ACCESS_FLAG)
        .union(Stage2Attributes::XN);
    fn create(pool: ArmPool) -> Mapping<ArmPool, Self> {
        // 48-bit IPA: 4 levels, root at level 0.
        Mapping::new(pool, 0, Stage2)
    }
}

/// `reclaim`: follow every unmap with `compact_subtables`, the crate's way
/// to free tables an unmap emptied (plain `map_range` frees only subtables
/// whose whole range it covers).
struct ArmPaging<R> {
    pool: ArmPool,
    reclaim: bool,
    _regime: std::marker::PhantomData<R>,
}

impl<R: ArmRegime> ArmPaging<R> {
    fn new(pool: &'static Pool, reclaim: bool) -> Self {
        ArmPaging {
            pool: ArmPool(pool),
            reclaim,
            _regime: std::marker::PhantomData,
        }
    }
}

impl<R: ArmRegime> Subject for ArmPaging<R>
where
    ArmPool: Translation<R::Attributes>,
{
    type Table = Mapping<ArmPool, R>;

    fn create(&self) -> Self::Table {
        R::create(self.pool)
    }

    #[inline(never)]
    fn map(&self, t: &mut Self::Table, iova: u64, pa: u64, shape: Shape) {
        let region = MemoryRegion::new(iova as usize, iova as usize + shape.len());
        t.map_range(
            &region,
            PhysicalAddress(pa as usize),
            R::VALID_RW,
            Constraints::empty(),
        )
        .expect("aarch64-paging map_range");
    }

    /// aarch64-paging 0.12 has no `unmap_range`: unmapping is `map_range`
    /// with attributes lacking VALID (its documented way).
    #[inline(never)]
    fn unmap(&self, t: &mut Self::Table, iova: u64, shape: Shape) {
        let region = MemoryRegion::new(iova as usize, iova as usize + shape.len());
        t.map_range(
            &region,
            PhysicalAddress(0),
            R::Attributes::default(),
            Constraints::empty(),
        )
        .expect("aarch64-paging unmap (map_range without VALID)");
        if self.reclaim {
            t.compact_subtables();
        }
    }

    fn translate(&self, t: &Self::Table, iova: u64) -> Option<u64> {
        let va = iova as usize;
        let mut out = None;
        t.walk_range(&MemoryRegion::new(va, va + 1), &mut |_, d, level| {
            if d.is_valid() {
                let size = PAGE << (9 * (3 - level));
                out = Some((d.output_address().0 + (va & (size - 1))) as u64);
            }
            Ok(())
        })
        .expect("aarch64-paging walk_range");
        out
    }
}

// ---------------------------------------------------------------------------
// Peer: the x86_64 crate's OffsetPageTable (one Mapper call per page).

struct X86Frames(&'static Pool);

// SAFETY: every frame handed out is an unused, zeroed page of the pool.
unsafe impl FrameAllocator<Size4KiB> for X86Frames {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let pa = self.0.alloc(1)?;
        Some(PhysFrame::containing_address(PhysAddr::new(pa)))
    }
}

impl FrameDeallocator<Size4KiB> for X86Frames {
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        self.0.free(frame.start_address().as_u64(), 1);
    }
}

/// `reclaim`: follow the unmaps with `CleanUp::clean_up_addr_range` over the
/// range, the crate's way to free the tables they emptied.
struct X86Crate {
    pool: &'static Pool,
    reclaim: bool,
}

impl X86Crate {
    #[inline]
    fn pages<S: PageSize>(iova: u64, pa: u64, n: usize) -> impl Iterator<Item = (Page<S>, u64)> {
        (0..n as u64).map(move |i| {
            let off = i * S::SIZE;
            (
                Page::containing_address(VirtAddr::new(iova + off)),
                pa + off,
            )
        })
    }
}

impl Subject for X86Crate {
    type Table = OffsetPageTable<'static>;

    fn create(&self) -> Self::Table {
        let root = self.pool.alloc(1).expect("page pool exhausted");
        let root = self.pool.virt(root).cast::<X86Table>();
        // SAFETY: a zeroed, unused pool page is a valid empty level-4
        // table, and the pool is mapped at phys_offset for the whole run.
        unsafe { OffsetPageTable::new(&mut *root, VirtAddr::new(self.pool.phys_offset())) }
    }

    #[inline(never)]
    fn map(&self, t: &mut Self::Table, iova: u64, pa: u64, shape: Shape) {
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        let mut frames = X86Frames(self.pool);
        if shape.page_size == SZ_2M {
            for (page, pa) in Self::pages::<Size2MiB>(iova, pa, shape.pages) {
                let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(pa));
                // SAFETY: the frames are not memory this program uses.
                unsafe { t.map_to(page, frame, flags, &mut frames) }
                    .expect("x86_64 map_to")
                    .ignore();
            }
        } else {
            for (page, pa) in Self::pages::<Size4KiB>(iova, pa, shape.pages) {
                let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(pa));
                // SAFETY: as above.
                unsafe { t.map_to(page, frame, flags, &mut frames) }
                    .expect("x86_64 map_to")
                    .ignore();
            }
        }
    }

    /// `Mapper::unmap` per page, TLB flush ignored. Tables emptied are kept
    /// unless `reclaim` (the crate frees them only through `CleanUp`).
    #[inline(never)]
    fn unmap(&self, t: &mut Self::Table, iova: u64, shape: Shape) {
        if shape.page_size == SZ_2M {
            for (page, _) in Self::pages::<Size2MiB>(iova, 0, shape.pages) {
                t.unmap(page).expect("x86_64 unmap").1.ignore();
            }
        } else {
            for (page, _) in Self::pages::<Size4KiB>(iova, 0, shape.pages) {
                t.unmap(page).expect("x86_64 unmap").1.ignore();
            }
        }
        if self.reclaim {
            let first = Page::<Size4KiB>::containing_address(VirtAddr::new(iova));
            let last = Page::containing_address(VirtAddr::new(iova + shape.len() as u64 - 1));
            // SAFETY: the range was just unmapped; no table in it is in use.
            unsafe {
                t.clean_up_addr_range(
                    Page::range_inclusive(first, last),
                    &mut X86Frames(self.pool),
                )
            };
        }
    }

    fn translate(&self, t: &Self::Table, iova: u64) -> Option<u64> {
        t.translate_addr(VirtAddr::new(iova)).map(|p| p.as_u64())
    }
}

// ---------------------------------------------------------------------------
// The run.

struct Config {
    warmup: usize,
    batches: usize,
    /// Divides every shape's batch size (smoke runs).
    shrink: usize,
}

#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stat { median, min: v[0] }
}

struct Row {
    format: &'static str,
    peer: &'static str,
    op: String,
    pages: usize,
    page_size: usize,
    /// One of the targets (the `+free` rows are information only).
    target: bool,
    ours: Option<Stat>,
    peer_ns: Option<Stat>,
}

/// Alternate batches of ours, the peer and the peer with reclaim, for every
/// shape.
fn measure(
    cfg: &Config,
    format: &'static str,
    peer_name: &'static str,
    mut sides: [Option<Runner>; 3],
    rows: &mut Vec<Row>,
) {
    for shape in SHAPES {
        let n = (shape.batch / cfg.shrink).max(1);
        let mut samples = [Vec::new(), Vec::new(), Vec::new()];
        for i in 0..cfg.warmup + cfg.batches {
            let check = i == 0;
            for (side, r) in sides.iter_mut().enumerate() {
                if let Some(r) = r {
                    let s = r(shape, n, check);
                    if i >= cfg.warmup {
                        samples[side].push(s);
                    }
                }
            }
        }
        let pick = |side: usize, f: fn(&Sample) -> f64| {
            (!samples[side].is_empty()).then(|| stat(samples[side].iter().map(f).collect()))
        };
        let map = |s: &Sample| s.map;
        let unmap = |s: &Sample| s.unmap;
        let mut row = |op: &str, target: bool, ours: Option<Stat>, peer: Option<Stat>| {
            rows.push(Row {
                format,
                peer: peer_name,
                op: format!("{op} {}", shape.name),
                pages: shape.pages,
                page_size: shape.page_size,
                target,
                ours,
                peer_ns: peer,
            })
        };
        row("map", true, pick(0, map), pick(1, map));
        row("unmap", true, pick(0, unmap), pick(1, unmap));
        if sides[2].is_some() {
            row("unmap+free", false, pick(0, unmap), pick(2, unmap));
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn ns(s: Option<Stat>) -> String {
    match s {
        Some(s) => format!("{:.0} ({:.0})", s.median, s.min),
        None => "-".into(),
    }
}

fn report(rows: &[Row]) {
    let line = |c: [&str; 7]| {
        println!(
            "{:<8} {:<21} {:<17} {:>16} {:>16} {:>9} {:>12}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        )
    };
    println!();
    line([
        "format",
        "peer",
        "operation",
        "ours ns/op(min)",
        "peer ns/op(min)",
        "ours/peer",
        "ours ns/page",
    ]);
    for r in rows {
        let ratio = match (r.ours, r.peer_ns) {
            (Some(o), Some(p)) => format!("{:.3}", o.median / p.median),
            _ => "-".into(),
        };
        let per_page = r.ours.map_or_else(
            || "-".into(),
            |o| format!("{:.2}", o.median / r.pages as f64),
        );
        line([
            r.format,
            r.peer,
            &r.op,
            &ns(r.ours),
            &ns(r.peer_ns),
            &ratio,
            &per_page,
        ]);
    }
    println!(
        "(unmap+free: the peer also frees the tables its unmap emptied, as ours always does:\n \
         aarch64-paging compact_subtables, x86_64 CleanUp::clean_up_addr_range; not a target)"
    );

    println!(
        "\ntargets (issue): ours >= 3x faster than the peer on 256x4K and 256x2M map and unmap;"
    );
    println!("                 ours <= 2 ns/page amortized for the 256x4K map");
    let (mut pass, mut miss) = (0, 0);
    let mut verdict = |ok: bool, what: String| {
        if ok {
            pass += 1;
        } else {
            miss += 1;
        }
        println!("  {} {what}", if ok { "PASS" } else { "MISS" });
    };
    for r in rows.iter().filter(|r| r.target && r.pages == 256) {
        let Some(o) = r.ours else { continue };
        if let Some(p) = r.peer_ns {
            let speedup = p.median / o.median;
            let how = if speedup >= 1.0 {
                format!("{speedup:.2}x faster than")
            } else {
                format!("{:.2}x slower than", 1.0 / speedup)
            };
            verdict(
                speedup >= 3.0,
                format!(
                    "{:<8} {:<13} {how} {} (need >= 3x faster)",
                    r.format, r.op, r.peer
                ),
            );
        }
        if r.op.starts_with("map") && r.page_size == PAGE {
            let per_page = o.median / r.pages as f64;
            verdict(
                per_page <= 2.0,
                format!(
                    "{:<8} {:<13} {per_page:.2} ns/page (need <= 2)",
                    r.format, r.op
                ),
            );
        }
    }
    println!("targets: {pass} met, {miss} missed (reported only; a miss does not fail the run)");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let cfg = if full {
        Config {
            warmup: 10,
            batches: 201,
            shrink: 1,
        }
    } else {
        Config {
            warmup: 1,
            batches: 2,
            shrink: 16,
        }
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "pgtable bench: {} ({cores} cores); {} batches after {} warm-up, median (min) of batch/n",
        cpu_model(),
        cfg.batches,
        cfg.warmup
    );
    println!(
        "note: results are from the host CPU ({}), not the target; root creation excluded on both sides",
        std::env::consts::ARCH
    );
    if !full {
        println!("(smoke run: pass --bench, or use `cargo xtask bench pgtable`, for real numbers)");
    }

    let pool = Pool::new(256 << 20);
    let mut rows = Vec::new();
    let s1 = ArmS1::new(MairIndices::default(), 48).expect("ArmS1");
    let s2 = ArmS2::new(48, 48).expect("ArmS2");
    let vtd = VtdSl::new(48, LargePages::SIZE_2M | LargePages::SIZE_1G).expect("VtdSl");
    measure(
        &cfg,
        "arm-s1",
        "aarch64-paging 0.12",
        [
            Some(runner(Ours(s1, pool), pool)),
            Some(runner(ArmPaging::<El1And0>::new(pool, false), pool)),
            Some(runner(ArmPaging::<El1And0>::new(pool, true), pool)),
        ],
        &mut rows,
    );
    measure(
        &cfg,
        "arm-s2",
        "aarch64-paging 0.12",
        [
            Some(runner(Ours(s2, pool), pool)),
            Some(runner(ArmPaging::<Stage2>::new(pool, false), pool)),
            Some(runner(ArmPaging::<Stage2>::new(pool, true), pool)),
        ],
        &mut rows,
    );
    measure(
        &cfg,
        "x86-64",
        "x86_64 0.15",
        [
            Some(runner(Ours(X86_64::new(false), pool), pool)),
            Some(runner(
                X86Crate {
                    pool,
                    reclaim: false,
                },
                pool,
            )),
            Some(runner(
                X86Crate {
                    pool,
                    reclaim: true,
                },
                pool,
            )),
        ],
        &mut rows,
    );
    measure(
        &cfg,
        "vtd-sl",
        "none (no Rust peer)",
        [Some(runner(Ours(vtd, pool), pool)), None, None],
        &mut rows,
    );
    assert_eq!(pool.used(), 0);
    report(&rows);
}
