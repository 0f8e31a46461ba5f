//! Isolation and invalidation on target, whatever the IOMMU: devices in
//! different domains reach only their own mappings, faults carry the right
//! record and reach the right domain's handler, and stale translations and
//! configurations are gone exactly when the driver's invalidations say so
//! (each shown first to survive without them, so the tests can fail).
//!
//! What differs between IOMMUs — the fault reasons, how much a faulting
//! transfer may move to raise one record, what a blocked device leaves
//! behind, how the driver is told to skip its invalidations — is the
//! `Isolation` trait, implemented in `vtd_isolation` and
//! `smmu_isolation`.

use iommu::Iova;
use iommu::core::{DomainId, IommuDriver};
use iommu::pgtable::{Gather, Prot};

use crate::dma_env::{
    Env, IOVA_A, IOVA_B, UNMAPPED, holds, need_devices, no_fault, one_fault, paging, unchanged,
};
use crate::edu::BUF_SIZE;
use crate::harness::{Failure, TestResult};
use crate::pool::Page;
use crate::{check, skip, tryx};

const R: Prot = Prot::READ;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// What the isolation tests (and the fault suites built on them: `iopf`,
/// the tour) need to know of a driver.
pub(crate) trait Isolation: IommuDriver + Sized {
    /// Bytes of a transfer meant to fault: one fault record.
    const FAULTING: usize;
    /// The log lines' prefix.
    const LOG: &'static str;
    /// What the hardware is called in messages ("unit", "SMMU").
    const UNIT: &'static str;
    /// What the driver's invalidations around an attach are called
    /// ("flushes", "syncs").
    const INVALIDATIONS: &'static str;
    /// Fault reasons for device `d` reaching an address its domain does not
    /// map (`write`: a write).
    fn not_mapped(e: &mut Env<Self>, d: usize, write: bool) -> Result<&'static [u16], Failure>;
    /// Fault reasons for device `d` writing a read-only mapping.
    fn read_only(e: &mut Env<Self>, d: usize) -> Result<&'static [u16], Failure>;
    /// Blocked device `d` writes at `target`; check what the IOMMU records
    /// of it.
    fn blocked_write(e: &mut Env<Self>, d: usize, target: u64) -> TestResult;
    /// Make device `d`'s unit skip (or no longer skip) its invalidations.
    fn skip_invalidations(e: &mut Env<Self>, d: usize, skip: bool) -> TestResult;
    /// Invalidate everything device `d`'s unit caches.
    fn invalidate_all(e: &mut Env<Self>, d: usize) -> TestResult;
}

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
    fn new<D: Isolation>(e: &mut Env<D>, d: usize, base: u64, seed: u32) -> Result<Side, Failure> {
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

/// The rows of the matrix for device `d` in `own`, against `other`.
fn paging_rows<D: Isolation>(
    e: &mut Env<D>,
    d: usize,
    own: &Side,
    other: &Side,
    seed: u32,
    other_mark: u32,
) -> TestResult {
    // Its own mappings: read the source, write the destination.
    own.dst.fill(seed + 50);
    e.dma_read(d, own.base, BUF_SIZE)?;
    e.dma_write(d, own.base + 0x1000, BUF_SIZE)?;
    holds(&own.dst, seed, "own mapping, both ways")?;
    no_fault(e, d)?;
    // The other domain's IOVAs: write and read both fault, nothing moves.
    let other_dst = other.base + 0x1000;
    e.dma_write(d, other_dst, D::FAULTING)?;
    unchanged(
        &other.dst,
        other_mark,
        "the other domain's page after a write at its IOVA",
    )?;
    let not_mapped_write = D::not_mapped(e, d, true)?;
    one_fault(e, own.dom, d, other_dst, true, not_mapped_write)?;
    e.dma_read(d, other.base, D::FAULTING)?;
    let not_mapped_read = D::not_mapped(e, d, false)?;
    one_fault(e, own.dom, d, other.base, false, not_mapped_read)?;
    // An IOVA mapped nowhere.
    e.dma_write(d, UNMAPPED, D::FAULTING)?;
    one_fault(e, own.dom, d, UNMAPPED, true, not_mapped_write)?;
    // A write to its own read-only page.
    e.dma_write(d, own.base + 0x2000, D::FAULTING)?;
    unchanged(&own.ro, seed + 2, "a read-only page after a write")?;
    let read_only = D::read_only(e, d)?;
    one_fault(e, own.dom, d, own.base + 0x2000, true, read_only)?;
    Ok(())
}

/// Two paging domains, an Identity device and a Blocked one: each reaches
/// exactly what its domain gives it.
pub(crate) fn matrix<D: Isolation>(e: &mut Env<D>) -> TestResult {
    need_devices(e, 3)?;
    let a = Side::new(e, 0, IOVA_A, 100)?;
    let b = Side::new(e, 1, IOVA_B, 200)?;
    // Marks to see that nothing reaches the destinations.
    a.dst.fill(101);
    b.dst.fill(201);
    paging_rows(e, 0, &a, &b, 100, 201)?;
    a.dst.fill(101);
    b.dst.fill(201);
    paging_rows(e, 1, &b, &a, 200, 101)?;
    a.dst.fill(101);
    b.dst.fill(201);
    // Identity: physical addresses reach memory; the paging domains' IOVAs
    // are not theirs to reach.
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
    // Blocked: the fourth device, or the Identity one moved there. Nothing
    // reaches memory.
    let blocked = if e.devs.len() > 3 { 3 } else { ident };
    tryx!(
        e.core.attach(e.devs[blocked].id, DomainId::BLOCKED),
        "attach Blocked"
    );
    let m = e.page()?;
    m.fill(77);
    for target in [m.phys(), a.base + 0x1000] {
        D::blocked_write(e, blocked, target)?;
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
}

/// After an unmap without its sync the device still reaches the page (the
/// unit caches); after the sync the same write faults.
pub(crate) fn stale_after_unmap<D: Isolation>(e: &mut Env<D>) -> TestResult {
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
    // Unmap, no invalidation yet: the unit still holds the translation.
    let mut gather = Gather::new();
    tryx!(e.core.unmap(dom, Iova(at), 4096, &mut gather), "unmap");
    x.fill(402);
    e.dma_write(0, at, BUF_SIZE)?;
    if x.mismatch(400, 0, BUF_SIZE).is_some() {
        skip!(
            "the {} did not keep the unmapped translation: this test cannot show the invalidation",
            D::UNIT
        );
    }
    no_fault(e, 0)?;
    defmt::println!(
        "{=str}: unmapped page still reached before the sync (the {=str} caches)",
        D::LOG,
        D::UNIT
    );
    // The invalidation: the same write now faults.
    x.fill(403);
    tryx!(e.core.sync(dom, &mut gather), "sync");
    e.dma_write(0, at, D::FAULTING)?;
    unchanged(&x, 403, "the unmapped page after the sync")?;
    let reasons = D::not_mapped(e, 0, true)?;
    one_fault(e, dom, 0, at, true, reasons)?;
    tryx!(e.core.detach(e.devs[0].id), "detach");
    tryx!(e.core.free_domain(dom), "free");
    Ok(())
}

/// A replace reaches the new domain's page at once; the same replace
/// without the driver's invalidations leaves the device on the old one.
pub(crate) fn stale_after_replace<D: Isolation>(e: &mut Env<D>) -> TestResult {
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
    // The replace, done right: after warming A's translation, the device's
    // writes go to B's page at once.
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
    // The negative control: the same replace without its invalidations
    // leaves the device on A's translation.
    tryx!(e.core.attach(dev, a), "back to A");
    e.dma_write(0, at, BUF_SIZE)?;
    holds(&p1, 500, "through A again")?;
    p1.fill(503);
    p2.fill(504);
    D::skip_invalidations(e, 0, true)?;
    let r = e.core.attach(dev, b);
    D::skip_invalidations(e, 0, false)?;
    tryx!(r, "replace without invalidations");
    e.dma_write(0, at, BUF_SIZE)?;
    check!(
        p1.mismatch(500, 0, BUF_SIZE).is_none(),
        "without the {} the write did not reach A's page: the {} did not cache, so the test above cannot fail",
        D::INVALIDATIONS,
        D::UNIT
    );
    unchanged(&p2, 504, "B's page without the invalidations")?;
    defmt::println!(
        "{=str}: replaced attachment still used the old translation without {=str}",
        D::LOG,
        D::INVALIDATIONS
    );
    D::invalidate_all(e, 0)?;
    e.dma_write(0, at, BUF_SIZE)?;
    holds(&p2, 500, "through B once invalidated")?;
    no_fault(e, 0)?;
    tryx!(e.core.detach(dev), "detach");
    tryx!(e.core.free_domain(a), "free A");
    tryx!(e.core.free_domain(b), "free B");
    Ok(())
}
