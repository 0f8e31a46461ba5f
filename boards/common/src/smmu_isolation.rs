//! SMMUv3 isolation and invalidation on target: devices in different
//! domains reach only their own mappings, faults are events naming the
//! StreamID, address and type, routed to the right domain's handler, and
//! stale translations and configurations are gone exactly when the
//! driver's commands say so (each shown first to survive without them).

use iommu::Iova;
use iommu::core::DomainId;
use iommu::drivers::smmuv3::evtq::id;
use iommu::pgtable::{Gather, Prot};

use crate::dma_env::{holds, need_devices, no_fault, one_fault, paging, unchanged};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, Failure, TestResult};
use crate::pool::Page;
use crate::smmu_dma::{FAULTING, IOVA_A, IOVA_B, UNMAPPED};
use crate::smmu_env::{Env, unit, with_env};
use crate::{check, skip, tryx};

const R: Prot = Prot::READ;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// A paging domain's pages: `src` (read-only at +0), `dst` (read-write at
/// +0x1000), `ro` (read-only at +0x2000).
struct Side {
    dom: DomainId,
    base: u64,
    src: Page,
    dst: Page,
    ro: Page,
}

impl Side {
    fn new(e: &mut Env, d: usize, base: u64, seed: u32) -> Result<Side, Failure> {
        let dom = paging(e, d)?;
        let s = Side {
            dom,
            base,
            src: e.page()?,
            dst: e.page()?,
            ro: e.page()?,
        };
        s.src.fill(seed);
        s.dst.fill(seed + 1);
        s.ro.fill(seed + 2);
        e.map(dom, base, &s.src, R)?;
        e.map(dom, base + 0x1000, &s.dst, RW)?;
        e.map(dom, base + 0x2000, &s.ro, R)?;
        tryx!(e.core.attach(e.devs[d].id, dom), "attach");
        Ok(s)
    }
}

fn paging_rows(
    e: &mut Env,
    d: usize,
    own: &Side,
    other: &Side,
    seed: u32,
    other_mark: u32,
) -> TestResult {
    own.dst.fill(seed + 50);
    e.dma_read(d, own.base, BUF_SIZE)?;
    e.dma_write(d, own.base + 0x1000, BUF_SIZE)?;
    holds(&own.dst, seed, "own mapping, both ways")?;
    no_fault(e, d)?;
    let other_dst = other.base + 0x1000;
    e.dma_write(d, other_dst, FAULTING)?;
    unchanged(
        &other.dst,
        other_mark,
        "the other domain's page after a write at its IOVA",
    )?;
    one_fault(e, own.dom, d, other_dst, true, &[id::F_TRANSLATION])?;
    e.dma_read(d, other.base, FAULTING)?;
    one_fault(e, own.dom, d, other.base, false, &[id::F_TRANSLATION])?;
    e.dma_write(d, UNMAPPED, FAULTING)?;
    one_fault(e, own.dom, d, UNMAPPED, true, &[id::F_TRANSLATION])?;
    e.dma_write(d, own.base + 0x2000, FAULTING)?;
    unchanged(&own.ro, seed + 2, "a read-only page after a write")?;
    one_fault(e, own.dom, d, own.base + 0x2000, true, &[id::F_PERMISSION])?;
    Ok(())
}

pub(crate) fn isolation_matrix(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 3)?;
        let a = Side::new(e, 0, IOVA_A, 100)?;
        let b = Side::new(e, 1, IOVA_B, 200)?;
        a.dst.fill(101);
        b.dst.fill(201);
        paging_rows(e, 0, &a, &b, 100, 201)?;
        a.dst.fill(101);
        b.dst.fill(201);
        paging_rows(e, 1, &b, &a, 200, 101)?;
        a.dst.fill(101);
        b.dst.fill(201);
        // Identity (bypass): physical addresses reach memory; the paging
        // domains' IOVAs are not theirs to reach.
        let ident = 2;
        tryx!(
            e.core.attach(e.devs[ident].id, DomainId::IDENTITY),
            "attach Identity"
        );
        let (p, q) = (e.page()?, e.page()?);
        p.fill(300);
        e.dma_read(ident, p.phys(), BUF_SIZE)?;
        e.dma_write(ident, q.phys(), BUF_SIZE)?;
        holds(&q, 300, "identity, both ways at physical addresses")?;
        e.dma_write(ident, a.base + 0x1000, BUF_SIZE)?;
        unchanged(
            &a.dst,
            101,
            "a domain's page after an Identity device's write at its IOVA",
        )?;
        no_fault(e, ident)?;
        // Blocked (abort): nothing reaches memory; an aborting STE records
        // no event.
        let blocked = if e.devs.len() > 3 { 3 } else { ident };
        tryx!(
            e.core.attach(e.devs[blocked].id, DomainId::BLOCKED),
            "attach Blocked"
        );
        let m = e.page()?;
        m.fill(77);
        for target in [m.phys(), a.base + 0x1000] {
            e.dma_write(blocked, target, BUF_SIZE)?;
            no_fault(e, blocked)?;
        }
        unchanged(&m, 77, "memory after a blocked device's write")?;
        unchanged(
            &a.dst,
            101,
            "a domain's page after a blocked device's write at its IOVA",
        )?;
        for d in 0..e.devs.len().min(4) {
            tryx!(e.core.detach(e.devs[d].id), "detach");
        }
        tryx!(e.core.free_domain(a.dom), "free A");
        tryx!(e.core.free_domain(b.dom), "free B");
        Ok(())
    })
}

pub(crate) fn stale_after_unmap(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let dom = paging(e, 0)?;
        let (src, x) = (e.page()?, e.page()?);
        src.fill(400);
        x.fill(401);
        let at = IOVA_A + 0x10_0000;
        e.map(dom, IOVA_A, &src, R)?;
        e.map(dom, at, &x, RW)?;
        tryx!(e.core.attach(e.devs[0].id, dom), "attach");
        e.load(0, IOVA_A)?;
        e.dma_write(0, at, BUF_SIZE)?;
        holds(&x, 400, "write before the unmap")?;
        let mut gather = Gather::new();
        tryx!(e.core.unmap(dom, Iova(at), 4096, &mut gather), "unmap");
        x.fill(402);
        e.dma_write(0, at, BUF_SIZE)?;
        if x.mismatch(400, 0, BUF_SIZE).is_some() {
            skip!(
                "the SMMU did not keep the unmapped translation: this test cannot show the invalidation"
            );
        }
        no_fault(e, 0)?;
        defmt::println!("smmu_dma: unmapped page still reached before the sync (the SMMU caches)");
        x.fill(403);
        tryx!(e.core.sync(dom, &mut gather), "sync");
        e.dma_write(0, at, FAULTING)?;
        unchanged(&x, 403, "the unmapped page after the sync")?;
        one_fault(e, dom, 0, at, true, &[id::F_TRANSLATION])?;
        tryx!(e.core.detach(e.devs[0].id), "detach");
        tryx!(e.core.free_domain(dom), "free");
        Ok(())
    })
}

pub(crate) fn stale_after_replace(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let (a, b) = (paging(e, 0)?, paging(e, 0)?);
        let (src, p1, p2) = (e.page()?, e.page()?, e.page()?);
        src.fill(500);
        let at = IOVA_A + 0x20_0000;
        for (dom, p) in [(a, &p1), (b, &p2)] {
            e.map(dom, IOVA_A, &src, R)?;
            e.map(dom, at, p, RW)?;
        }
        let dev = e.devs[0].id;
        tryx!(e.core.attach(dev, a), "attach A");
        e.load(0, IOVA_A)?;
        e.dma_write(0, at, BUF_SIZE)?;
        holds(&p1, 500, "through A")?;
        p1.fill(501);
        p2.fill(502);
        tryx!(e.core.attach(dev, b), "replace A by B");
        e.dma_write(0, at, BUF_SIZE)?;
        holds(&p2, 500, "through B right after the replace")?;
        unchanged(&p1, 501, "A's page after the replace")?;
        // The negative control: the same replace without its syncs (no
        // CFGI_CD / CFGI_STE) leaves the device on A's configuration.
        tryx!(e.core.attach(dev, a), "back to A");
        e.dma_write(0, at, BUF_SIZE)?;
        holds(&p1, 500, "through A again")?;
        p1.fill(503);
        p2.fill(504);
        unit(e, 0)?.set_skip_sync(true);
        let r = e.core.attach(dev, b);
        unit(e, 0)?.set_skip_sync(false);
        tryx!(r, "replace without syncs");
        e.dma_write(0, at, BUF_SIZE)?;
        check!(
            p1.mismatch(500, 0, BUF_SIZE).is_none(),
            "without the syncs the write did not reach A's page: the SMMU did not cache, so the test above cannot fail"
        );
        unchanged(&p2, 504, "B's page without the syncs")?;
        defmt::println!("smmu_dma: replaced configuration still used without CFGI + CMD_SYNC");
        let hal = *e.core.hal();
        tryx!(unit(e, 0)?.invalidate_all(&hal), "invalidate all");
        e.dma_write(0, at, BUF_SIZE)?;
        holds(&p2, 500, "through B once invalidated")?;
        no_fault(e, 0)?;
        tryx!(e.core.detach(dev), "detach");
        tryx!(e.core.free_domain(a), "free A");
        tryx!(e.core.free_domain(b), "free B");
        Ok(())
    })
}
