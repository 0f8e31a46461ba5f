//! The VT-d DMA suite's environment: the VT-d driver over every DRHD the
//! DMAR table names, brought up once per boot (see [`crate::dma_env`]).

use core::ptr::NonNull;

use iommu::drivers::vtd::driver::Vtd;
use iommu::drivers::vtd::unit::Unit;

use crate::harness::{Ctx, Failure};
use crate::platform::IommuKind;
use crate::pool::PoolHal;

pub use crate::dma_env::DMA_TIMEOUT_NS;

/// The VT-d driver as the suites instantiate it (up to 4 DRHDs).
pub type Driver = Vtd<PoolHal, 4>;

/// The VT-d suite's state.
pub type Env = crate::dma_env::Env<Driver>;

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
    crate::dma_env::bring_up(c, driver, &instances)
}

/// Run `f` on the VT-d suite's state.
pub fn with_env(c: &Ctx, f: impl FnOnce(&mut Env) -> Result<(), Failure>) -> Result<(), Failure> {
    crate::dma_env::with(&ENV, c, bring_up, f)
}

/// The unit behind device `d`.
pub fn unit(e: &mut Env, d: usize) -> Result<&mut Unit, Failure> {
    let instance = e.devs[d].id.instance;
    Ok(crate::tryx!(e.core.driver_mut().unit_mut(instance), "unit"))
}
