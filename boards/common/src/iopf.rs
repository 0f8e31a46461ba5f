//! The I/O page-fault suite: a DMA to a page its domain does not map
//! faults, the driver decodes the hardware's record, the core routes it to
//! the fault target of the domain attached at the device, the page is
//! mapped, and the same DMA issued again succeeds.
//!
//! QEMU's devices cannot wait for a page (no PRI, no stall), so this is the
//! unrecoverable path a hypervisor uses for demand mapping: the first DMA is
//! lost (its write dropped), the fault says where, and the device's driver
//! retries. Recoverable faults (VT-d page requests, SMMUv3 PRI and stall)
//! are host-tested against models of the queues.
//!
//! Two fault targets: a handler (called inside `process_faults`; it cannot
//! re-enter the core, which is borrowed, so it records what to map in a
//! [`Pager`] that the embedder's loop serves right after), and a fault
//! object the user reads and answers later.

use iommu::core::{
    Access, DomainId, Fault, FaultHandler, FaultTarget, IommuDriver, PagingFlags, Response,
    UserFault,
};
use iommu::pgtable::{Gather, Prot};
use iommu::{Iova, PhysAddr};

use crate::dma_env::{Env, check_fault, holds, need_devices, unchanged};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, Failure, Suite, Test, TestResult};
use crate::isolation::Isolation;
use crate::pool::{self, Page};
use crate::{check, check_eq, tryx};

/// Where the source page is mapped (read-only).
const SRC: u64 = 0x30_0000_0000;
/// Where the device writes: not mapped until the fault asks for it.
const DST: u64 = 0x30_0020_0000;

/// What a fault handler asked to have mapped: filled inside
/// `process_faults`, taken by [`Pager::take`] and served (mapped) after it
/// returns.
pub struct Pager {
    wanted: spin::Mutex<heapless::Vec<(DomainId, Fault), 8>>,
}

impl Pager {
    /// An empty pager (for a `static`).
    pub const fn new() -> Pager {
        Pager {
            wanted: spin::Mutex::new(heapless::Vec::new()),
        }
    }

    /// The fault target that queues requests here.
    pub fn target(&'static self) -> FaultTarget {
        FaultTarget::Handler(FaultHandler {
            func: Pager::on_fault,
            cookie: self as *const Pager as usize,
        })
    }

    fn on_fault(cookie: usize, dom: DomainId, group: &[Fault]) -> Response {
        // SAFETY: `cookie` is the address of the `'static` pager `target`
        // was called on.
        let pager = unsafe { &*(cookie as *const Pager) };
        let mut wanted = pager.wanted.lock();
        for f in group {
            if wanted.push((dom, *f)).is_err() {
                // Full: the device's driver retries and faults again.
                return Response::Failure;
            }
        }
        Response::Success
    }

    /// The requests queued since the last call.
    pub fn take(&self) -> heapless::Vec<(DomainId, Fault), 8> {
        core::mem::take(&mut *self.wanted.lock())
    }
}

impl Default for Pager {
    fn default() -> Self {
        Self::new()
    }
}

static PAGER: Pager = Pager::new();

/// Prot for a faulting access: read-write for a write, read-only else.
fn prot_for(f: &Fault) -> Prot {
    if f.access.contains(Access::WRITE) {
        Prot::READ | Prot::WRITE
    } else {
        Prot::READ
    }
}

/// A paging domain for device 0 with `src` at [`SRC`] (holding pattern
/// `seed`, loaded into the device's buffer) and nothing at [`DST`].
fn prepare<D: IommuDriver>(
    e: &mut Env<D>,
    target: FaultTarget,
    seed: u32,
) -> Result<(DomainId, Page, Page), Failure> {
    need_devices(e, 1)?;
    let dom = tryx!(
        e.core.alloc_paging(e.devs[0].id, PagingFlags::empty()),
        "alloc_paging"
    );
    tryx!(e.core.set_fault_target(dom, target), "set_fault_target");
    let (src, dst) = (e.page()?, e.page()?);
    src.fill(seed);
    dst.fill(seed + 1);
    e.map(dom, SRC, &src, Prot::READ)?;
    tryx!(e.core.attach(e.devs[0].id, dom), "attach");
    e.load(0, SRC)?;
    Ok((dom, src, dst))
}

/// The device writes its buffer at [`DST`], unmapped: it faults and the
/// page is unchanged.
fn first_write<D: IommuDriver>(e: &mut Env<D>, dst: &Page, seed: u32) -> TestResult {
    e.dma_write(0, DST, BUF_SIZE)?;
    unchanged(dst, seed + 1, "the page before its mapping")
}

/// The retry reaches the page just mapped; nothing else faults.
fn retry<D: IommuDriver>(e: &mut Env<D>, dst: &Page, seed: u32) -> TestResult {
    e.dma_write(0, DST, BUF_SIZE)?;
    holds(dst, seed, "the retried write")?;
    tryx!(e.core.process_faults(), "process_faults");
    check!(
        PAGER.take().is_empty(),
        "the retry faulted again after the page was mapped"
    );
    Ok(())
}

fn cleanup<D: IommuDriver>(e: &mut Env<D>, dom: DomainId, pages: u32) -> TestResult {
    tryx!(e.core.detach(e.devs[0].id), "detach");
    let mut g = Gather::new();
    tryx!(e.core.unmap(dom, Iova(SRC), 0x1000, &mut g), "unmap");
    tryx!(e.core.unmap(dom, Iova(DST), 0x1000, &mut g), "unmap");
    tryx!(e.core.sync(dom, &mut g), "sync");
    tryx!(e.core.free_domain(dom), "free_domain");
    check_eq!(pool::pages_in_use(), pages, "pool pages after the test");
    Ok(())
}

/// Through a handler: the fault reaches it with the device, address and
/// access; the page it asked for is mapped; the retry succeeds. (An IOMMU
/// may report one transfer's fault more than once: QEMU's SMMUv3 writes an
/// event per burst. Every record must name the page; it is mapped once.)
pub(crate) fn handled<D: Isolation>(e: &mut Env<D>) -> TestResult {
    let pages = pool::pages_in_use();
    let seed = 1100;
    PAGER.take();
    let (dom, _src, dst) = prepare(e, PAGER.target(), seed)?;
    let reasons = D::not_mapped(e, 0, true)?;
    first_write(e, &dst, seed)?;
    tryx!(e.core.process_faults(), "process_faults");
    let wanted = PAGER.take();
    check!(!wanted.is_empty(), "no fault reached the handler");
    for (at, f) in &wanted {
        check_eq!(*at, dom, "routed to the domain attached at the device");
        check_fault(f, e.devs[0].id.id, DST, true, reasons)?;
    }
    let (at, f) = wanted[0];
    // The embedder's loop serves what the handler asked for.
    let page = f.addr & !0xfff;
    let r = e
        .core
        .map(at, Iova(page), PhysAddr(dst.phys()), 0x1000, prot_for(&f));
    tryx!(r, "map the faulting page");
    defmt::println!(
        "iopf: the handler got {=usize} record(s) asking for {=u64:#x}, mapped to {=u64:#x}; retrying",
        wanted.len(),
        page,
        dst.phys()
    );
    retry(e, &dst, seed)?;
    drop((_src, dst));
    cleanup(e, dom, pages)
}

/// Through a fault object: the user reads the fault, maps, the retry
/// succeeds; the fault is read once.
fn through_object<D: Isolation>(e: &mut Env<D>) -> TestResult {
    let pages = pool::pages_in_use();
    let seed = 1200;
    let obj = tryx!(e.core.alloc_fault_object(), "alloc_fault_object");
    let (dom, _src, dst) = prepare(e, FaultTarget::Object(obj), seed)?;
    let reasons = D::not_mapped(e, 0, true)?;
    first_write(e, &dst, seed)?;
    tryx!(e.core.process_faults(), "process_faults");
    let mut buf = [UserFault {
        cookie: 0,
        fault: Fault::EMPTY,
    }; 16];
    let n = tryx!(e.core.fault_read(obj, &mut buf), "fault_read");
    check!(n > 0, "no fault read from the object");
    for u in &buf[..n] {
        check_fault(&u.fault, e.devs[0].id.id, DST, true, reasons)?;
    }
    let f = buf[0].fault;
    let r = e.core.map(
        dom,
        Iova(f.addr & !0xfff),
        PhysAddr(dst.phys()),
        0x1000,
        prot_for(&f),
    );
    tryx!(r, "map the faulting page");
    retry(e, &dst, seed)?;
    let again = tryx!(e.core.fault_read(obj, &mut buf), "fault_read");
    check_eq!(again, 0, "a fault is read once");
    drop((_src, dst));
    cleanup(e, dom, pages)?;
    tryx!(e.core.free_fault_object(obj), "free_fault_object");
    Ok(())
}

fn vtd_handled(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, handled)
}

fn vtd_object(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, through_object)
}

fn smmu_handled(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, handled)
}

fn smmu_object(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, through_object)
}

/// The I/O page-fault suite.
pub static IOPF: Suite = Suite {
    name: "iopf",
    tests: &[
        Test {
            name: "vtd_fault_mapped_by_handler_then_retry",
            run: vtd_handled,
        },
        Test {
            name: "vtd_fault_read_from_object_then_retry",
            run: vtd_object,
        },
        Test {
            name: "smmuv3_fault_mapped_by_handler_then_retry",
            run: smmu_handled,
        },
        Test {
            name: "smmuv3_fault_read_from_object_then_retry",
            run: smmu_object,
        },
    ],
};
