//! What the VT-d DMA suite shares: the driver and core, brought up once per
//! boot over every DRHD the DMAR table names, the edu devices registered
//! under the unit that covers each, DMA helpers, and the faults the core
//! routed to the suite's handler.

use core::ptr::NonNull;

use iommu::core::{
    Caps, DeviceId, DeviceInfo, DomainId, Fault, FaultHandler, FaultTarget, Iommu, Response,
};
use iommu::drivers::vtd::driver::Vtd;
use iommu::drivers::vtd::unit::Unit;
use iommu::pgtable::Prot;
use iommu::{Error, Iova, PhysAddr};

use crate::edu::{BUF_SIZE, Edu};
use crate::harness::{Ctx, Failure};
use crate::platform::IommuKind;
use crate::pool::{Page, PoolHal};

/// The core as the suite instantiates it.
pub type Core = Iommu<Vtd<PoolHal, 4>, PoolHal, Caps<16, 16, 1>>;

/// How long one edu transfer may take (they take ~100 ms of virtual time).
pub const DMA_TIMEOUT_NS: u64 = 5_000_000_000;

/// An edu device as the core knows it.
pub struct Dev {
    /// The device.
    pub edu: Edu,
    /// Its IOMMU instance and source-id.
    pub id: DeviceId,
    /// Physical base of its unit's registers.
    pub regs: u64,
}

/// The suite's state: one core for the whole boot (translation, once on,
/// stays on).
pub struct Env {
    /// The core over the VT-d driver.
    pub core: Core,
    /// The edu devices, in scan order.
    pub devs: heapless::Vec<Dev, 8>,
    /// The board's clock.
    pub now: fn() -> u64,
    /// Why bring-up failed, if it did (every test then fails with it).
    pub broken: Option<Error>,
}

static ENV: spin::Mutex<Option<Env>> = spin::Mutex::new(None);

fn bring_up(c: &Ctx) -> Result<Env, Failure> {
    let hal = PoolHal { now: c.ops.now_ns };
    let mut driver: Vtd<PoolHal, 4> = Vtd::new(hal);
    let mut instances: heapless::Vec<u16, 4> = heapless::Vec::new();
    for (i, u) in c.platform.iommus.iter().enumerate() {
        if u.kind != IommuKind::Vtd {
            continue;
        }
        let Some(base) = NonNull::new(crate::pci::phys_ptr(u.base)) else {
            continue;
        };
        // SAFETY: a DRHD register base from the DMAR table, identity-mapped
        // as device memory by the board; only this suite drives the unit.
        let r = unsafe { driver.add_unit(i as u16, base) };
        crate::tryx!(r, "add_unit");
        let _ = instances.push(i as u16);
    }
    if instances.is_empty() {
        return Err(Failure::skip(format_args!("no VT-d unit on this board")));
    }
    let mut env = Env {
        core: Iommu::new(driver, hal),
        devs: heapless::Vec::new(),
        now: c.ops.now_ns,
        broken: None,
    };
    for i in instances {
        crate::tryx!(env.core.add_instance(i), "add_instance (probe + enable)");
    }
    for edu in Edu::all(c.pci) {
        let Some(pci) = c.pci.get(edu.segment, edu.bdf) else {
            continue;
        };
        let Some(cov) = crate::pci::coverage(c.platform, c.pci, pci) else {
            continue;
        };
        let id = DeviceId {
            instance: cov.iommu as u16,
            id: cov.stream_id,
        };
        let info = DeviceInfo {
            dev: id,
            pasid_bits: 0,
            ats: false,
        };
        crate::tryx!(env.core.register_device(info), "register_device");
        let regs = c.platform.iommus[cov.iommu].base;
        let _ = env.devs.push(Dev { edu, id, regs });
    }
    Ok(env)
}

/// The suite's state, brought up on first use.
pub fn env(c: &Ctx) -> Result<spin::MutexGuard<'static, Option<Env>>, Failure> {
    let mut g = ENV.lock();
    if g.is_none() {
        *g = Some(bring_up(c)?);
    }
    Ok(g)
}

/// Run `f` on the suite's state.
pub fn with_env(c: &Ctx, f: impl FnOnce(&mut Env) -> Result<(), Failure>) -> Result<(), Failure> {
    let mut g = env(c)?;
    let Some(e) = g.as_mut() else {
        return Err(Failure::skip(format_args!("no VT-d environment")));
    };
    f(e)
}

impl Env {
    /// The pool as the driver sees it.
    pub fn hal(&self) -> PoolHal {
        *self.core.driver().hal()
    }

    /// A fresh DMA page.
    pub fn page(&self) -> Result<Page, Failure> {
        Page::new(self.hal())
            .ok_or_else(|| Failure::fail(file!(), line!(), format_args!("page pool empty")))
    }

    /// The unit behind device `d`.
    pub fn unit(&mut self, d: usize) -> Result<&mut Unit, Failure> {
        let instance = self.devs[d].id.instance;
        Ok(crate::tryx!(
            self.core.driver_mut().unit_mut(instance),
            "unit"
        ))
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
        use iommu::core::IommuDriver;
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
