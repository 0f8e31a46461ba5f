//! The engine's concurrency contract: `map` / `unmap` take `&mut self` (the
//! caller holds one lock per table), `iova_to_phys` / `translate` take
//! `&self`, and hardware may walk the table at any time.
//!
//! Four threads map and unmap disjoint ranges of one table behind a lock,
//! sharing its upper-level tables (and last-level tables with "stable" pages
//! that are never unmapped). Meanwhile a lock-free reader plays the hardware:
//! it walks the stable pages with the reference walker and must always find
//! them. At the end the whole table must equal the union of the threads'
//! models.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use common::TestHal;
use common::harness::{G1, Harness, Kind, M2};
use common::model::Model;
use common::pool::PAGE;
use iommu::drivers::vtd::regs::LargePages;
use iommu::pgtable::{ArmS1, ArmS2, Format, Gather, MairIndices, PageTable, Prot, VtdSl, X86_64};
use iommu::{Iova, PhysAddr};

// Compile-time: a table over a shared (`Sync`) Hal can move between threads
// and be shared for `&self` reads.
const _: () = {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    #[allow(dead_code)]
    fn check() {
        send::<PageTable<VtdSl, &'static TestHal>>();
        send::<PageTable<X86_64, &'static TestHal>>();
        send::<PageTable<ArmS1, &'static TestHal>>();
        send::<PageTable<ArmS2, &'static TestHal>>();
        sync::<PageTable<VtdSl, &'static TestHal>>();
        sync::<PageTable<ArmS2, &'static TestHal>>();
        send::<Gather>();
    }
};

const THREADS: u64 = 4;
/// 2 MiB regions shared by the threads (region r belongs to thread r % 4).
const REGIONS: u64 = 32;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// Small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Stable page of region r: its first page, never unmapped.
fn stable(r: u64) -> (u64, u64) {
    (r * M2, 0x40_0000_0000 + r * M2)
}

/// Thread `t`'s work: 4 KiB ranges inside its regions (after the stable
/// page), and a 2 MiB block slot of its own in the second GiB.
fn worker<F: Format>(t: u64, table: &Mutex<PageTable<F, &TestHal>>, iters: usize) -> Model<Prot> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t + 1) * 0x1234_5678));
    let mut model = Model::new(&[PAGE, M2, G1]);
    let mut mine: Vec<(u64, u64)> = Vec::new();
    for _ in 0..iters {
        let mut pt = table.lock().unwrap();
        if mine.is_empty() || rng.below(3) != 0 {
            let (iova, len) = if rng.below(8) == 0 {
                (G1 + (t * 4 + rng.below(4)) * M2, M2)
            } else {
                let r = t + THREADS * rng.below(REGIONS / THREADS);
                let first = 1 + rng.below(500);
                (r * M2 + first * PAGE, (1 + rng.below(511 - first)) * PAGE)
            };
            let paddr = 0x80_0000_0000 * (t + 1) + iova;
            let want = model.map(Iova(iova).0, PhysAddr(paddr).0, len, RW);
            let got = pt.map(Iova(iova), PhysAddr(paddr), len, RW);
            assert_eq!(
                got.is_ok(),
                want.is_ok(),
                "thread {t}: map({iova:#x}, {len:#x}): {got:?}"
            );
            if got.is_ok() {
                mine.push((iova, len));
            }
        } else {
            let (iova, len) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
            let mut g = Gather::new();
            pt.unmap(Iova(iova), len, &mut g).unwrap();
            model.unmap(iova, len).unwrap();
            // IOTLB sync would go here; then the pages may go.
            g.release(pt.hal());
        }
        // &self reads of the whole table while holding the lock.
        if let Some(&(probe, len)) = mine.get(rng.below(mine.len() as u64 + 1) as usize) {
            let a = probe + len - PAGE;
            assert_eq!(
                pt.iova_to_phys(Iova(a)),
                model.lookup(a).map(|(p, _, _)| PhysAddr(p)),
                "thread {t}: translate({a:#x})"
            );
        }
    }
    model
}

fn run<F: Format + Send>(format: F, kind: Kind) {
    let hal = TestHal::new(4096);
    let mut pt = PageTable::new(format, &hal).unwrap();
    for r in 0..REGIONS {
        let (iova, pa) = stable(r);
        pt.map(Iova(iova), PhysAddr(pa), PAGE, Prot::READ).unwrap();
    }
    let root = pt.root_phys().0;
    let reff = kind.reference();
    let table = Mutex::new(pt);
    let done = AtomicBool::new(false);
    let models: Vec<Model<Prot>> = std::thread::scope(|s| {
        // The "hardware": walks stable pages without taking the lock.
        let walker = s.spawn(|| {
            let mut walks = 0u64;
            while !done.load(Ordering::Relaxed) || walks < 1000 {
                for r in 0..REGIONS {
                    let (iova, pa) = stable(r);
                    let w = reff.walk(&hal, root, iova + 8);
                    assert_eq!(
                        w.map(|w| w.phys),
                        Some(pa + 8),
                        "{kind:?}: stable page {iova:#x}"
                    );
                    walks += 1;
                }
                std::thread::yield_now();
            }
            walks
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let table = &table;
                s.spawn(move || worker(t, table, 2000))
            })
            .collect();
        let models: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        // Stop the walker even if a worker failed (else the scope never ends).
        done.store(true, Ordering::Relaxed);
        let walks = walker.join();
        let models: Vec<_> = models.into_iter().map(|m| m.unwrap()).collect();
        assert!(walks.unwrap() >= 1000);
        models
    });
    // The whole table equals the union of the models and the stable pages.
    let mut all = Model::new(&kind.sizes());
    for r in 0..REGIONS {
        let (iova, pa) = stable(r);
        all.map(Iova(iova).0, PhysAddr(pa).0, PAGE, Prot::READ)
            .unwrap();
    }
    for m in &models {
        for (&k, l) in m.leaves() {
            all.map(Iova(k).0, PhysAddr(l.out).0, l.size, l.prot)
                .unwrap();
        }
    }
    let h = Harness {
        pt: table.into_inner().unwrap(),
        hal: &hal,
        model: all,
        kind,
        reff,
        pending: Vec::new(),
        step: 0,
    };
    h.check_all();
    h.finish();
}

#[test]
fn four_threads_vtd_sl() {
    run(
        VtdSl::new(48, LargePages::SIZE_2M | LargePages::SIZE_1G).unwrap(),
        Kind::Vtd {
            levels: 4,
            large_2m: true,
            large_1g: true,
            snoop: false,
            execute: false,
        },
    );
}

#[test]
fn four_threads_x86_64() {
    run(
        X86_64::new(true),
        Kind::X86 {
            levels: 5,
            gb: false,
        },
    );
}

#[test]
fn four_threads_arm_s1() {
    run(
        ArmS1::new(MairIndices::default(), 48).unwrap(),
        Kind::ArmS1 {
            wb: 1,
            nc: 0,
            dev: 2,
        },
    );
}

#[test]
fn four_threads_arm_s2() {
    run(ArmS2::new(40, 48).unwrap(), Kind::ArmS2 { ias: 40 });
}

/// `translate` through `&self` from several readers at once (RwLock read
/// guards), while a writer maps and unmaps elsewhere.
#[test]
fn concurrent_readers_share_the_table() {
    let hal = TestHal::new(1024);
    let mut pt = PageTable::new(ArmS1::new(MairIndices::default(), 48).unwrap(), &hal).unwrap();
    pt.map(Iova(0), PhysAddr(0x8000_0000), 64 * PAGE, RW)
        .unwrap();
    let table = RwLock::new(pt);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (table, stop) = (&table, &stop);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 100 {
                    let pt = table.read().unwrap();
                    let i = (n + t) % 64;
                    assert_eq!(
                        pt.iova_to_phys(Iova(i * PAGE + 1)),
                        Some(PhysAddr(0x8000_0000 + i * PAGE + 1))
                    );
                    drop(pt);
                    n += 1;
                    std::thread::yield_now();
                }
            });
        }
        for k in 0..300u64 {
            let mut pt = table.write().unwrap();
            let iova = G1 + (k % 7) * M2;
            pt.map(Iova(iova), PhysAddr(iova), M2, RW).unwrap();
            let mut g = Gather::new();
            pt.unmap(Iova(iova), M2, &mut g).unwrap();
            g.release(pt.hal());
        }
        stop.store(true, Ordering::Relaxed);
    });
    drop(table);
    assert_eq!(hal.counts().live_pages(), 0);
}
