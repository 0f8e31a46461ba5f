//! `cargo xtask bench invalidate`, VT-d rows: per unmap + sync of each case,
//! the descriptors queued and waits issued, and the pages invalidated
//! against the pages unmapped, beside what Linux's policy would queue for
//! the same range (one aligned page-selective invalidation per tag, the
//! whole domain above MAMV). Counted from the unit's queue on target.

use iommu::core::{DomainId, PagingFlags};
use iommu::drivers::vtd::psi;
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};

use crate::harness::{Ctx, Suite, Test, TestResult};
use crate::vtd_env::{Env, with_env};
use crate::{check, tryx};

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

fn case(e: &mut Env, profile: &str, c: &Case, missed: &mut u32) -> TestResult {
    let dev = e.devs[0].id;
    let (mamv, psi_ok, large_1g) = {
        let u = crate::vtd_env::unit(e, 0)?;
        let cap = u.id.cap;
        let g = if u.second_level() {
            cap.sl_large_pages
                .contains(iommu::pgtable::LargePages::SIZE_1G)
        } else {
            cap.fl_1g_pages
        };
        (cap.max_address_mask, cap.page_selective_invalidation, g)
    };
    let dom = tryx!(
        e.core.alloc_paging(dev, PagingFlags::empty()),
        "alloc_paging"
    );
    tryx!(e.core.attach(dev, dom), "attach");
    // Physical addresses aligned like the leaf (nothing DMAs here).
    let leaf = if c.leaf == GB && !large_1g {
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
    let before = {
        let u = crate::vtd_env::unit(e, 0)?;
        (u.qi.as_ref().map(|q| q.stats).unwrap_or_default(), u.stats)
    };
    tryx!(e.core.unmap_sync(dom, Iova(c.iova), c.len), "unmap_sync");
    let (q, s) = {
        let u = crate::vtd_env::unit(e, 0)?;
        (u.qi.as_ref().map(|q| q.stats).unwrap_or_default(), u.stats)
    };
    let waits = q.waits - before.0.waits;
    let cmds = q.descriptors - before.0.descriptors - waits;
    let whole = s.whole_invalidations - before.1.whole_invalidations;
    let pages = s.pages_invalidated - before.1.pages_invalidated;
    let unmapped = c.len / (4 * KB);
    let linux = psi::linux_plan(c.iova, c.iova + c.len, mamv, psi_ok);
    let linux_cmds = 1;
    let over_ok = whole == 0 && pages <= 2 * unmapped;
    let ok = waits == 1 && cmds <= linux_cmds + 1 && over_ok;
    if !ok {
        *missed += 1;
    }
    let mark = if ok { "" } else { " MISSED" };
    let over = Over {
        pages: (whole == 0).then_some(pages),
        unmapped,
    };
    let linux_over = Over {
        pages: linux.pages(),
        unmapped,
    };
    defmt::println!(
        "@@ROW vtd:{=str} {=str} cmds={=u64} waits={=u64} over={} linux_cmds={=u64} linux_over={}{=str}",
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

fn invalidate(c: &Ctx) -> TestResult {
    let profile = c.profile().unwrap_or("?");
    with_env(c, |e| {
        check!(!e.devs.is_empty(), "no edu device behind VT-d");
        let mut missed = 0;
        for k in CASES {
            case(e, profile, k, &mut missed)?;
        }
        defmt::println!(
            "@@ROW vtd:{=str} targets (1 wait per sync, cmds <= linux+1, over <= 2): {=str}",
            profile,
            if missed == 0 { "met" } else { "MISSED" }
        );
        Ok(())
    })
}

/// The invalidation benchmark, run instead of the suites when the command
/// line says `iommu.bench=invalidate`.
pub static VTD_BENCH: Suite = Suite {
    name: "bench",
    tests: &[Test {
        name: "vtd_invalidate",
        run: invalidate,
    }],
};
