//! `cargo xtask bench invalidate`: per unmap + sync of each case, the
//! commands queued and waits (CMD_SYNCs) issued, and the pages invalidated
//! against the pages unmapped, beside what Linux's policy would do for the
//! same range — VT-d: one aligned page-selective invalidation per tag, the
//! whole domain above MAMV; SMMUv3: range commands where RIL, else one per
//! leaf up to a table's worth, then the whole ASID / VMID. Counted from
//! the IOMMU's queue on target.

use iommu::core::{DomainId, IommuDriver, PagingFlags};
use iommu::drivers::smmuv3::driver::Smmu;
use iommu::drivers::vtd::driver::Vtd;
use iommu::drivers::vtd::psi;
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};

use crate::dma_env::Env;
use crate::harness::{Ctx, Suite, Test, TestResult};
use crate::pool::PoolHal;
use crate::{check, tryx};

/// What the bench reads from a driver.
pub trait Measured: IommuDriver + Sized {
    /// The IOMMU's name in the rows.
    const NAME: &'static str;
    /// Commands allowed beyond Linux's.
    const SLACK: u64;
    /// (commands, waits, pages named by address invalidations, whole-tag
    /// invalidations) queued so far on `instance`.
    fn counters(&self, instance: u16) -> [u64; 4];
    /// Whether paging domains get 1 GiB leaves.
    fn large_1g(&self, instance: u16) -> bool;
    /// Linux's (commands, pages invalidated; `None`: the whole tag) for
    /// `[start, end)` mapped with `leaf` leaves, `tables`: table pages were
    /// freed.
    fn linux(
        &self,
        instance: u16,
        start: u64,
        end: u64,
        leaf: u64,
        tables: bool,
    ) -> (u64, Option<u64>);
}

impl Measured for Vtd<PoolHal, 4> {
    const NAME: &'static str = "vtd";
    const SLACK: u64 = 1;
    fn counters(&self, instance: u16) -> [u64; 4] {
        let Ok(u) = self.unit(instance) else {
            return [0; 4];
        };
        let q = u.qi.as_ref().map(|q| q.stats).unwrap_or_default();
        [
            q.descriptors - q.waits,
            q.waits,
            u.stats.pages_invalidated,
            u.stats.whole_invalidations,
        ]
    }
    fn large_1g(&self, instance: u16) -> bool {
        self.unit(instance).is_ok_and(|u| {
            let cap = u.id.cap;
            if u.second_level() {
                cap.sl_large_pages
                    .contains(iommu::pgtable::LargePages::SIZE_1G)
            } else {
                cap.fl_1g_pages
            }
        })
    }
    fn linux(
        &self,
        instance: u16,
        start: u64,
        end: u64,
        _leaf: u64,
        _tables: bool,
    ) -> (u64, Option<u64>) {
        let Ok(u) = self.unit(instance) else {
            return (0, None);
        };
        let cap = u.id.cap;
        let plan = psi::linux_plan(
            start,
            end,
            cap.max_address_mask,
            cap.page_selective_invalidation,
        );
        (1, plan.pages())
    }
}

impl Measured for Smmu<PoolHal, 2> {
    const NAME: &'static str = "smmuv3";
    const SLACK: u64 = 0;
    fn counters(&self, instance: u16) -> [u64; 4] {
        let Ok(u) = self.unit(instance) else {
            return [0; 4];
        };
        let q = u.cmdq.as_ref().map(|q| q.stats).unwrap_or_default();
        [
            q.commands,
            q.syncs,
            u.stats.pages_invalidated,
            u.stats.whole_invalidations,
        ]
    }
    fn large_1g(&self, _instance: u16) -> bool {
        true
    }
    fn linux(
        &self,
        instance: u16,
        start: u64,
        end: u64,
        leaf: u64,
        tables: bool,
    ) -> (u64, Option<u64>) {
        let ril = self.unit(instance).is_ok_and(|u| u.id.idr3.ril);
        linux_smmu(start, end, leaf, ril, tables)
    }
}

/// Linux's `__arm_smmu_tlb_inv_range`: with range invalidation, one
/// command per run of five bits of the page count (one page more when a
/// non-leaf invalidation would encode SCALE = NUM = 0); else one per leaf,
/// or the whole ASID once that reaches a table's worth.
fn linux_smmu(start: u64, end: u64, leaf: u64, ril: bool, tables: bool) -> (u64, Option<u64>) {
    let size = end - start;
    if !ril {
        if size >= (leaf / 8) * leaf {
            return (1, None);
        }
        return (size / leaf, Some(size / 4096));
    }
    let mut pages = size / 4096;
    if tables && pages & 31 == 1 {
        pages += 1;
    }
    let (all, mut cmds) = (pages, 0);
    while pages != 0 {
        let scale = pages.trailing_zeros();
        pages -= ((pages >> scale) & 31) << scale;
        cmds += 1;
    }
    (cmds, Some(all))
}

const KB: u64 = 1 << 10;
const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;

/// One case: a name, the IOVA range, and the leaf size it is mapped with.
struct Case {
    name: &'static str,
    iova: u64,
    len: u64,
    leaf: u64,
}

const BASE: u64 = 0x40_0000_0000;

const CASES: &[Case] = &[
    Case {
        name: "1x4K",
        iova: BASE,
        len: 4 * KB,
        leaf: 4 * KB,
    },
    Case {
        name: "2x4K",
        iova: BASE,
        len: 8 * KB,
        leaf: 4 * KB,
    },
    Case {
        name: "16x4K",
        iova: BASE,
        len: 64 * KB,
        leaf: 4 * KB,
    },
    Case {
        name: "256x4K",
        iova: BASE,
        len: MB,
        leaf: 4 * KB,
    },
    Case {
        name: "512x4K",
        iova: BASE,
        len: 2 * MB,
        leaf: 4 * KB,
    },
    Case {
        name: "1x2M",
        iova: BASE,
        len: 2 * MB,
        leaf: 2 * MB,
    },
    Case {
        name: "256x4K-across-1M",
        iova: BASE + MB - 512 * KB,
        len: MB,
        leaf: 4 * KB,
    },
    Case {
        name: "256x4K-across-1G",
        iova: BASE + GB - 512 * KB,
        len: MB,
        leaf: 4 * KB,
    },
    Case {
        name: "1G",
        iova: BASE,
        len: GB,
        leaf: GB,
    },
];

/// Pages invalidated per page unmapped: `x.yy`, or `domain` for everything
/// under the tag.
struct Over {
    pages: Option<u64>,
    unmapped: u64,
}

impl defmt::Format for Over {
    fn format(&self, f: defmt::Formatter) {
        match self.pages {
            Some(p) => {
                let h = p * 100 / self.unmapped;
                defmt::write!(f, "{=u64}.{=u64:02}", h / 100, h % 100)
            }
            None => defmt::write!(f, "domain"),
        }
    }
}

fn case<D: Measured>(e: &mut Env<D>, profile: &str, c: &Case, missed: &mut u32) -> TestResult {
    let dev = e.devs[0].id;
    let instance = dev.instance;
    let dom = tryx!(
        e.core.alloc_paging(dev, PagingFlags::empty()),
        "alloc_paging"
    );
    tryx!(e.core.attach(dev, dom), "attach");
    // Physical addresses aligned like the leaf (nothing DMAs here).
    let leaf = if c.leaf == GB && !e.core.driver().large_1g(instance) {
        2 * MB
    } else {
        c.leaf
    };
    let pa = if leaf >= 2 * MB { 0 } else { 0x10_0000 };
    let rw = Prot::READ | Prot::WRITE;
    let mut at = 0;
    while at < c.len {
        let r = e.core.map(
            dom,
            Iova(c.iova + at),
            PhysAddr(pa + at),
            leaf.min(c.len - at),
            rw,
        );
        tryx!(r, "map");
        at += leaf;
    }
    let before = e.core.driver().counters(instance);
    let pool_before = crate::pool::pages_in_use();
    tryx!(e.core.unmap_sync(dom, Iova(c.iova), c.len), "unmap_sync");
    let tables = crate::pool::pages_in_use() < pool_before;
    let after = e.core.driver().counters(instance);
    let [cmds, waits, pages, whole] = core::array::from_fn(|i| after[i] - before[i]);
    let unmapped = c.len / (4 * KB);
    let (linux_cmds, linux_pages) =
        e.core
            .driver()
            .linux(instance, c.iova, c.iova + c.len, leaf, tables);
    let over_ok = whole == 0 && pages <= 2 * unmapped;
    let ok = waits == 1 && cmds <= linux_cmds + D::SLACK && over_ok;
    if !ok {
        *missed += 1;
    }
    let mark = if ok { "" } else { " MISSED" };
    let over = Over {
        pages: (whole == 0).then_some(pages),
        unmapped,
    };
    let linux_over = Over {
        pages: linux_pages,
        unmapped,
    };
    defmt::println!(
        "@@ROW {=str}:{=str} {=str} cmds={=u64} waits={=u64} over={} linux_cmds={=u64} linux_over={}{=str}",
        D::NAME,
        profile,
        c.name,
        cmds,
        waits,
        over,
        linux_cmds,
        linux_over,
        mark
    );
    tryx!(e.core.attach(dev, DomainId::BLOCKED), "detach");
    tryx!(e.core.free_domain(dom), "free");
    Ok(())
}

fn run<D: Measured>(e: &mut Env<D>, profile: &str) -> TestResult {
    check!(!e.devs.is_empty(), "no edu device behind the IOMMU");
    let mut missed = 0;
    for k in CASES {
        case(e, profile, k, &mut missed)?;
    }
    defmt::println!(
        "@@ROW {=str}:{=str} targets (1 wait per sync, cmds <= linux+{=u64}, over <= 2): {=str}",
        D::NAME,
        profile,
        D::SLACK,
        if missed == 0 { "met" } else { "MISSED" }
    );
    Ok(())
}

fn vtd(c: &Ctx) -> TestResult {
    let profile = c.profile().unwrap_or("?");
    crate::vtd_env::with_env(c, |e| run(e, profile))
}

fn smmu(c: &Ctx) -> TestResult {
    let profile = c.profile().unwrap_or("?");
    crate::smmu_env::with_env(c, |e| run(e, profile))
}

/// The invalidation benchmark, run instead of the suites when the command
/// line says `iommu.bench=invalidate`.
pub static BENCH: Suite = Suite {
    name: "bench",
    tests: &[
        Test {
            name: "vtd_invalidate",
            run: vtd,
        },
        Test {
            name: "smmu_invalidate",
            run: smmu,
        },
    ],
};
