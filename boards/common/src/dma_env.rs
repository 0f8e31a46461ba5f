//! What the DMA suites share, whatever the IOMMU: the core over a driver,
//! brought up once per boot, the edu devices it covers, DMA helpers, the
//! faults the core routed to the suites' handler, and the checks every
//! suite makes of memory and fault records.

use iommu::core::{
    Caps, DeviceId, DeviceInfo, DomainId, Fault, FaultHandler, FaultTarget, Iommu, IommuDriver,
    PagingFlags, Response,
};
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};

use crate::edu::{BUF_SIZE, Edu};
use crate::harness::{Ctx, Failure, TestResult};
use crate::pool::{self, Page, PoolHal};
use crate::{check, check_eq, skip, tryx};

/// The core as the suites instantiate it over driver `D`.
pub type CoreOf<D> = Iommu<D, PoolHal, Caps<16, 16, 1>>;

/// IOVAs of the first paging domain (64 GiB: not a physical address of
/// these machines, inside every width their IOMMUs walk, 39 bits included).
pub const IOVA_A: u64 = 0x10_0000_0000;
/// IOVAs of the second.
pub const IOVA_B: u64 = 0x20_0000_0000;
/// Mapped nowhere.
pub const UNMAPPED: u64 = 0x18_0000_0000;

/// How long one edu transfer may take (they take ~100 ms of virtual time).
pub const DMA_TIMEOUT_NS: u64 = 5_000_000_000;

/// An edu device as the core knows it.
pub struct Dev {
    /// The device.
    pub edu: Edu,
    /// Its IOMMU instance and source-id / StreamID.
    pub id: DeviceId,
    /// Physical base of its IOMMU's registers.
    pub regs: u64,
}

/// A suite's state: one core for the whole boot (translation, once on,
/// stays on).
pub struct Env<D: IommuDriver> {
    /// The core over the driver.
    pub core: CoreOf<D>,
    /// The edu devices, in scan order.
    pub devs: heapless::Vec<Dev, 8>,
    /// The board's clock.
    pub now: fn() -> u64,
}

/// A core over `driver` with `instances` added (probe + enable) and every
/// edu device those instances cover registered.
pub fn bring_up<D: IommuDriver>(c: &Ctx, driver: D, instances: &[u16]) -> Result<Env<D>, Failure> {
    let hal = PoolHal { now: c.ops.now_ns };
    let mut env = Env {
        core: Iommu::new(driver, hal),
        devs: heapless::Vec::new(),
        now: c.ops.now_ns,
    };
    let before = pool::pages_in_use();
    for &i in instances {
        tryx!(env.core.add_instance(i), "add_instance (probe + enable)");
    }
    defmt::println!(
        "dma_env: {=usize} IOMMU(s) brought up with {=u32} pool pages (tables and queues)",
        instances.len(),
        pool::pages_in_use() - before
    );
    for edu in Edu::all(c.pci) {
        let Some(pci) = c.pci.get(edu.segment, edu.bdf) else {
            continue;
        };
        let Some(cov) = crate::pci::coverage(c.platform, c.pci, pci) else {
            continue;
        };
        if !instances.contains(&(cov.iommu as u16)) {
            continue;
        }
        let id = DeviceId {
            instance: cov.iommu as u16,
            id: cov.stream_id,
        };
        let info = DeviceInfo {
            dev: id,
            pasid_bits: 0,
            ats: false,
        };
        tryx!(env.core.register_device(info), "register_device");
        let regs = c.platform.iommus[cov.iommu].base;
        let _ = env.devs.push(Dev { edu, id, regs });
    }
    Ok(env)
}

/// Run `f` on the state in `slot`, brought up by `up` on first use.
pub fn with<D: IommuDriver>(
    slot: &spin::Mutex<Option<Env<D>>>,
    c: &Ctx,
    up: fn(&Ctx) -> Result<Env<D>, Failure>,
    f: impl FnOnce(&mut Env<D>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut g = slot.lock();
    if g.is_none() {
        *g = Some(up(c)?);
    }
    match g.as_mut() {
        Some(e) => f(e),
        None => Err(Failure::skip(format_args!("no environment"))),
    }
}

impl<D: IommuDriver> Env<D> {
    /// The pool as the driver sees it.
    pub fn hal(&self) -> PoolHal {
        *self.core.hal()
    }

    /// A fresh DMA page.
    pub fn page(&self) -> Result<Page, Failure> {
        Page::new(self.hal())
            .ok_or_else(|| Failure::fail(file!(), line!(), format_args!("page pool empty")))
    }

    /// Device `d` reads `len` bytes at `iova` into its buffer.
    pub fn dma_read(&self, d: usize, iova: u64, len: usize) -> Result<(), Failure> {
        let e = &self.devs[d].edu;
        e.set_bus_master(true);
        crate::tryx!(
            e.copy_to_device(iova, 0, len, self.now, DMA_TIMEOUT_NS),
            "edu read DMA"
        );
        Ok(())
    }

    /// Device `d` writes `len` bytes of its buffer at `iova`.
    pub fn dma_write(&self, d: usize, iova: u64, len: usize) -> Result<(), Failure> {
        let e = &self.devs[d].edu;
        e.set_bus_master(true);
        crate::tryx!(
            e.copy_from_device(0, iova, len, self.now, DMA_TIMEOUT_NS),
            "edu write DMA"
        );
        Ok(())
    }

    /// Map `page` at `iova` in `dom`.
    pub fn map(
        &mut self,
        dom: DomainId,
        iova: u64,
        page: &Page,
        prot: Prot,
    ) -> Result<(), Failure> {
        let r = self
            .core
            .map(dom, Iova(iova), PhysAddr(page.phys()), 4096, prot);
        crate::tryx!(r, "map");
        Ok(())
    }

    /// Let the core drain and route every pending fault; what reached the
    /// suite's handler since the last call.
    pub fn faults(&mut self) -> Result<heapless::Vec<(DomainId, Fault), 16>, Failure> {
        crate::tryx!(self.core.process_faults(), "process_faults");
        Ok(core::mem::take(&mut *SEEN.lock()))
    }

    /// Send `dom`'s faults to the suite's handler.
    pub fn capture_faults(&mut self, dom: DomainId) -> Result<(), Failure> {
        let h = FaultTarget::Handler(FaultHandler {
            func: record,
            cookie: 0,
        });
        crate::tryx!(self.core.set_fault_target(dom, h), "set_fault_target");
        Ok(())
    }

    /// Fault records of device `d`'s unit, read by the driver directly
    /// (faults of Blocked and Identity devices, which the core drops).
    pub fn raw_faults(&mut self, d: usize) -> Result<heapless::Vec<Fault, 8>, Failure> {
        let instance = self.devs[d].id.instance;
        let mut buf = [Fault::EMPTY; 8];
        let n = crate::tryx!(
            self.core.driver_mut().drain_faults(instance, &mut buf),
            "drain_faults"
        );
        Ok(buf[..n].iter().copied().collect())
    }

    /// Load device `d`'s whole buffer from `iova` (which must be mapped
    /// readable for it).
    pub fn load(&self, d: usize, iova: u64) -> Result<(), Failure> {
        self.dma_read(d, iova, BUF_SIZE)
    }
}

static SEEN: spin::Mutex<heapless::Vec<(DomainId, Fault), 16>> =
    spin::Mutex::new(heapless::Vec::new());

fn record(_cookie: usize, dom: DomainId, group: &[Fault]) -> Response {
    let mut seen = SEEN.lock();
    for f in group {
        let _ = seen.push((dom, *f));
    }
    Response::Invalid
}

// ---------------------------------------------------------------- checks

/// A paging domain for device `d`, its faults sent to the suites' handler.
pub fn paging<D: IommuDriver>(e: &mut Env<D>, d: usize) -> Result<DomainId, Failure> {
    let dom = tryx!(
        e.core.alloc_paging(e.devs[d].id, PagingFlags::empty()),
        "alloc_paging"
    );
    e.capture_faults(dom)?;
    Ok(dom)
}

/// The cache tag the driver gave `dom` (DID, ASID or VMID).
pub fn tag<D: IommuDriver>(e: &Env<D>, dom: DomainId) -> Result<u16, Failure> {
    Ok(tryx!(e.core.domain_hw(dom), "domain_hw").tag as u16)
}

/// Check one fault record against what the device did.
pub fn check_fault(f: &Fault, sid: u32, addr: u64, write: bool, reasons: &[u16]) -> TestResult {
    defmt::println!(
        "dma: fault sid {=u32:#x} addr {=u64:#x} {=str} reason {=u16:#x}",
        f.device,
        f.addr,
        if write { "write" } else { "read" },
        f.reason
    );
    check_eq!(f.device, sid, "fault source-id");
    check_eq!(f.addr & !0xfff, addr & !0xfff, "fault address");
    let access = if write {
        iommu::core::Access::WRITE
    } else {
        iommu::core::Access::READ
    };
    check!(
        f.access.contains(access),
        "fault access {:?}, want {:?}",
        f.access,
        access
    );
    check!(
        reasons.contains(&f.reason),
        "fault reason {:#x} not among {:x?}",
        f.reason,
        reasons
    );
    Ok(())
}

/// Exactly one fault reached the handler, for `dom`, matching.
pub fn one_fault<D: IommuDriver>(
    e: &mut Env<D>,
    dom: DomainId,
    d: usize,
    addr: u64,
    write: bool,
    reasons: &[u16],
) -> TestResult {
    let seen = e.faults()?;
    check_eq!(seen.len(), 1, "faults routed to the handler ({:?})", seen);
    check_eq!(
        seen[0].0,
        dom,
        "fault routed to the domain attached at the device"
    );
    check_fault(&seen[0].1, e.devs[d].id.id, addr, write, reasons)
}

/// Nothing faulted.
pub fn no_fault<D: IommuDriver>(e: &mut Env<D>, d: usize) -> TestResult {
    let seen = e.faults()?;
    check!(seen.is_empty(), "unexpected faults {:?}", seen);
    let raw = e.raw_faults(d)?;
    check!(raw.is_empty(), "unexpected fault records {:?}", raw);
    Ok(())
}

/// `p` still holds the pattern `seed` (nothing wrote it).
pub fn unchanged(p: &Page, seed: u32, what: &str) -> TestResult {
    if let Some(i) = p.mismatch(seed, 0, BUF_SIZE) {
        check!(false, "{}: byte {} changed to {:#x}", what, i, p.get(i));
    }
    Ok(())
}

/// `p` holds the pattern `seed` (a DMA wrote it).
pub fn holds(p: &Page, seed: u32, what: &str) -> TestResult {
    if let Some(i) = p.mismatch(seed, 0, BUF_SIZE) {
        check!(
            false,
            "{}: byte {} is {:#x}, want {:#x}",
            what,
            i,
            p.get(i),
            pool::pattern(seed, i)
        );
    }
    Ok(())
}

/// Skip unless `n` edu devices are behind the IOMMU.
pub fn need_devices<D: IommuDriver>(e: &Env<D>, n: usize) -> TestResult {
    if e.devs.len() < n {
        skip!(
            "needs {} edu devices behind the IOMMU, found {} (cargo xtask test --edus N)",
            n,
            e.devs.len()
        );
    }
    Ok(())
}

/// One translated round trip on device 0 through a fresh domain: the
/// driver still works (after an error it recovered from).
pub fn translated_smoke<D: IommuDriver>(e: &mut Env<D>) -> TestResult {
    let dom = paging(e, 0)?;
    let (src, dst) = (e.page()?, e.page()?);
    src.fill(700);
    e.map(dom, IOVA_A, &src, Prot::READ)?;
    e.map(dom, IOVA_A + 0x1000, &dst, Prot::READ | Prot::WRITE)?;
    tryx!(e.core.attach(e.devs[0].id, dom), "attach");
    e.dma_read(0, IOVA_A, BUF_SIZE)?;
    e.dma_write(0, IOVA_A + 0x1000, BUF_SIZE)?;
    holds(&dst, 700, "translated round trip")?;
    no_fault(e, 0)?;
    tryx!(e.core.detach(e.devs[0].id), "detach");
    tryx!(e.core.free_domain(dom), "free");
    Ok(())
}
