//! The SVA suite: a device shares the CPU's own address space. The CPU's
//! page table gets a window of pages (see [`crate::cpu_window`]); the
//! device, bound to the space as a whole device (its requester ID: QEMU's
//! devices issue no PASID), reads and writes them at the same virtual
//! addresses the CPU uses; a page the CPU unmaps stays reachable by the
//! device until the core's `invalidate_range`, and faults after it.

use core::sync::atomic::{AtomicU64, Ordering};

use iommu::core::{
    AddressSpace, DomainId, Fault, FaultHandler, FaultTarget, IommuDriver, Response,
};
use iommu::pgtable::Gather;
use iommu::{Error, PhysAddr};

use crate::cpu_window::CpuWindow;
use crate::dma_env::{Env, holds, need_devices, unchanged};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, Failure, Suite, Test, TestResult};
use crate::pool::{self, Page};
use crate::{check, check_eq, skip, tryx};

/// Where the CPU maps the shared pages: a top-level slot the boot maps
/// leave free (64 TiB up).
const WINDOW: u64 = 0x4000_0000_0000;

static SVA_FAULTS: spin::Mutex<heapless::Vec<u64, 8>> = spin::Mutex::new(heapless::Vec::new());

fn on_fault(_: usize, _: DomainId, group: &[iommu::core::Fault]) -> iommu::core::Response {
    let mut seen = SVA_FAULTS.lock();
    for f in group {
        let _ = seen.push(f.addr);
    }
    iommu::core::Response::Invalid
}

/// The CPU's address space as an SVA bind names it: the window's live
/// root and format, and the CPU's ASID.
fn space_of(c: &Ctx, win: &CpuWindow) -> AddressSpace {
    let (root, format) = win.space();
    let (_, _, asid) = (c.ops.cpu.space)();
    AddressSpace {
        root: PhysAddr(root),
        format,
        asid,
    }
}

/// The CPU writes a page through its virtual address; the device copies it
/// to another by virtual address; the CPU reads the copy.
fn round_trip<D: IommuDriver>(
    e: &mut Env<D>,
    d: usize,
    win: &CpuWindow,
    src: &Page,
    dst: &Page,
    seed: u32,
) -> TestResult {
    let (va_src, va_dst) = (win.base, win.base + 0x1000);
    for i in 0..BUF_SIZE {
        // SAFETY: the CPU's own mapping of `src`, made by the window.
        unsafe { ((va_src + i as u64) as *mut u8).write_volatile(pool::pattern(seed, i)) };
    }
    e.dma_read(d, va_src, BUF_SIZE)?;
    e.dma_write(d, va_dst, BUF_SIZE)?;
    holds(dst, seed, "the device's copy, at the physical page")?;
    let via_cpu = (0..BUF_SIZE).find(|&i| {
        // SAFETY: as above, `dst`'s mapping.
        unsafe { ((va_dst + i as u64) as *const u8).read_volatile() != pool::pattern(seed, i) }
    });
    check!(
        via_cpu.is_none(),
        "the CPU reads the copy by virtual address: byte {:?} differs",
        via_cpu
    );
    let _ = src;
    Ok(())
}

pub(crate) fn shared<D: IommuDriver>(c: &Ctx, e: &mut Env<D>) -> TestResult {
    need_devices(e, 2)?;
    let hal = *e.core.hal();
    let mut win = tryx!(CpuWindow::new(c.ops.cpu, hal, WINDOW), "CPU window");
    let (src, dst, spare) = (e.page()?, e.page()?, e.page()?);
    tryx!(win.map(WINDOW, src.phys()), "CPU map");
    tryx!(win.map(WINDOW + 0x1000, dst.phys()), "CPU map");
    tryx!(win.map(WINDOW + 0x2000, spare.phys()), "CPU map");
    let pages = pool::pages_in_use();
    let space = space_of(c, &win);
    let target = FaultTarget::Handler(FaultHandler {
        func: on_fault,
        cookie: 0,
    });
    let sid = tryx!(e.core.register_space(space, target), "register_space");
    let (a, b) = (e.devs[0].id, e.devs[1].id);
    let bond = match e.core.bind_device(a, sid) {
        Ok(b) => b,
        Err(Error::Unsupported { what }) => {
            tryx!(e.core.teardown_space(sid), "teardown");
            skip!("no SVA on this IOMMU: {}", what);
        }
        Err(err) => {
            return Err(Failure::fail(
                file!(),
                line!(),
                format_args!("bind_device: {:?}", err),
            ));
        }
    };
    let asid = space.asid;
    if asid != 0 {
        // The format tags with an ASID (SMMUv3 CD): the CPU's own.
        let dom = tryx!(e.core.bond_info(bond), "bond").domain;
        let tag = tryx!(e.core.domain_hw(dom), "domain_hw").tag & 0xffff;
        check_eq!(tag, asid, "the SVA domain's ASID is the CPU's");
        defmt::println!(
            "sva: the device's context uses the CPU's ASID {=u32:#x}",
            asid
        );
    }
    round_trip(e, 0, &win, &src, &dst, 1000)?;
    defmt::println!(
        "sva: the device read and wrote the CPU's pages at the CPU's virtual addresses"
    );
    // A second device on the same instance reuses the space's domain.
    let bond_b = tryx!(e.core.bind_device(b, sid), "bind the second device");
    let (da, db) = (
        tryx!(e.core.bond_info(bond), "bond").domain,
        tryx!(e.core.bond_info(bond_b), "bond").domain,
    );
    if e.devs[0].id.instance == e.devs[1].id.instance {
        check_eq!(da, db, "the second bind reuses the SVA domain");
    }
    round_trip(e, 1, &win, &src, &dst, 1001)?;
    // The CPU unmaps the destination: until invalidate_range the device
    // may still reach the page, after it the write faults.
    let va = WINDOW + 0x1000;
    let mut g = Gather::new();
    tryx!(win.unmap(va, &mut g), "CPU unmap");
    dst.fill(1002);
    e.dma_read(0, WINDOW, BUF_SIZE)?;
    e.dma_write(0, va, BUF_SIZE)?;
    check!(
        dst.mismatch(1002, 0, BUF_SIZE).is_some(),
        "the unmapped page was not reached before invalidate_range: nothing was cached, the test below cannot fail"
    );
    defmt::println!(
        "sva: the unmapped page was still reached before invalidate_range (the IOMMU caches)"
    );
    dst.fill(1003);
    SVA_FAULTS.lock().clear();
    tryx!(
        e.core.invalidate_range(sid, va, va + 0x1000),
        "invalidate_range"
    );
    win.release(&mut g);
    e.dma_write(0, va, 4)?;
    unchanged(&dst, 1003, "the unmapped page after invalidate_range")?;
    tryx!(e.core.process_faults(), "process_faults");
    let seen = SVA_FAULTS.lock().clone();
    check!(
        seen.iter().any(|&f| f & !0xfff == va),
        "the fault reached the space's handler: {:?}",
        seen
    );
    // Unbind both and tear down: nothing left.
    tryx!(e.core.unbind(bond_b), "unbind");
    tryx!(e.core.unbind(bond), "unbind");
    tryx!(e.core.teardown_space(sid), "teardown_space");
    check_eq!(
        tryx!(e.core.attached(a, None), "attached"),
        Some(DomainId::BLOCKED),
        "device A blocked again"
    );
    check_eq!(
        tryx!(e.core.attached(b, None), "attached"),
        Some(DomainId::BLOCKED),
        "device B blocked again"
    );
    check_eq!(pool::pages_in_use(), pages, "pool pages after teardown");
    tryx!(win.unmap(WINDOW, &mut g), "CPU unmap");
    tryx!(win.unmap(WINDOW + 0x2000, &mut g), "CPU unmap");
    win.release(&mut g);
    Ok(())
}

/// The page the demand pager maps (physical address; 0: none).
static DEMAND_PAGE: AtomicU64 = AtomicU64::new(0);
/// Faults the demand pager served.
static DEMANDS: AtomicU64 = AtomicU64::new(0);

/// An SVA space's fault handler that pages on demand: it maps the faulting
/// page into the CPU's own table itself (no core call: the space's table
/// is the CPU's, not the core's), as an OS's page-fault path would.
fn demand_pager(cookie: usize, _: DomainId, group: &[Fault]) -> Response {
    // SAFETY: `cookie` is the address of the test's `CpuWindow`, which
    // outlives the bond; nothing else touches it while `process_faults`
    // runs this handler.
    let win = unsafe { &mut *(cookie as *mut CpuWindow) };
    let page = DEMAND_PAGE.swap(0, Ordering::Relaxed);
    let Some(f) = group.first() else {
        return Response::Invalid;
    };
    if page == 0 || win.map(f.addr & !0xfff, page).is_err() {
        return Response::Invalid;
    }
    DEMANDS.fetch_add(1, Ordering::Relaxed);
    Response::Success
}

/// The device writes at a virtual address the CPU has not mapped yet: it
/// faults, the space's handler maps a page into the CPU's table, and the
/// retried write lands there, seen by the CPU at the same address.
fn demand_paged<D: IommuDriver>(c: &Ctx, e: &mut Env<D>) -> TestResult {
    need_devices(e, 1)?;
    let hal = *e.core.hal();
    let mut win = tryx!(CpuWindow::new(c.ops.cpu, hal, WINDOW), "CPU window");
    let (src, dst) = (e.page()?, e.page()?);
    tryx!(win.map(WINDOW, src.phys()), "CPU map");
    src.fill(1300);
    dst.fill(1301);
    let space = space_of(c, &win);
    let target = FaultTarget::Handler(FaultHandler {
        func: demand_pager,
        cookie: &mut win as *mut CpuWindow as usize,
    });
    let sid = tryx!(e.core.register_space(space, target), "register_space");
    let bond = match e.core.bind_device(e.devs[0].id, sid) {
        Ok(b) => b,
        Err(err) => {
            tryx!(e.core.teardown_space(sid), "teardown");
            skip!("no SVA bind here: {:?}", err);
        }
    };
    let va = WINDOW + 0x1000;
    e.dma_read(0, WINDOW, BUF_SIZE)?;
    DEMANDS.store(0, Ordering::Relaxed);
    DEMAND_PAGE.store(dst.phys(), Ordering::Relaxed);
    e.dma_write(0, va, BUF_SIZE)?;
    unchanged(&dst, 1301, "the page before the handler mapped it")?;
    tryx!(e.core.process_faults(), "process_faults");
    check_eq!(
        DEMANDS.load(Ordering::Relaxed),
        1,
        "the handler mapped the faulting page once"
    );
    e.dma_write(0, va, BUF_SIZE)?;
    holds(&dst, 1300, "the retried write")?;
    // SAFETY: the CPU's mapping of `dst`, made by the handler.
    let first = unsafe { (va as *const u8).read_volatile() };
    check_eq!(
        first,
        pool::pattern(1300, 0),
        "the CPU reads it at the same address"
    );
    defmt::println!(
        "sva: a device write at an unmapped VA faulted, the space's handler mapped the page in the CPU's table, the retry landed"
    );
    tryx!(e.core.unbind(bond), "unbind");
    tryx!(e.core.teardown_space(sid), "teardown_space");
    let mut g = Gather::new();
    tryx!(win.unmap(WINDOW, &mut g), "CPU unmap");
    tryx!(win.unmap(va, &mut g), "CPU unmap");
    win.release(&mut g);
    Ok(())
}

fn sva_vtd(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, |e| shared(c, e))
}

fn sva_smmu(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, |e| shared(c, e))
}

fn demand_vtd(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, |e| demand_paged(c, e))
}

fn demand_smmu(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, |e| demand_paged(c, e))
}

/// The SVA suite.
pub static SVA: Suite = Suite {
    name: "sva",
    tests: &[
        Test {
            name: "vtd_device_shares_cpu_space",
            run: sva_vtd,
        },
        Test {
            name: "smmuv3_device_shares_cpu_space",
            run: sva_smmu,
        },
        Test {
            name: "vtd_fault_paged_in_by_the_space_handler",
            run: demand_vtd,
        },
        Test {
            name: "smmuv3_fault_paged_in_by_the_space_handler",
            run: demand_smmu,
        },
    ],
};
