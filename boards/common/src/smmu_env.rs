//! The SMMUv3 DMA suite's environment: the SMMUv3 driver over every SMMU
//! the device tree names, brought up once per boot (see
//! [`crate::dma_env`]). `iommu.smmu-strtab=linear` on the command line
//! forces linear stream tables.

use core::ptr::NonNull;

use iommu::drivers::smmuv3::driver::Smmu;
use iommu::drivers::smmuv3::unit::Unit;

use crate::harness::{Ctx, Failure};
use crate::platform::IommuKind;
use crate::pool::PoolHal;

/// The SMMUv3 driver as the suites instantiate it (up to 2 SMMUs).
pub type Driver = Smmu<PoolHal, 2>;

/// The SMMUv3 suite's state.
pub type Env = crate::dma_env::Env<Driver>;

static ENV: spin::Mutex<Option<Env>> = spin::Mutex::new(None);

/// Whether the command line asks for linear stream tables.
pub fn linear(c: &Ctx) -> bool {
    crate::cmdline::get(&c.platform.cmdline, "iommu.smmu-strtab") == Some("linear")
}

fn bring_up(c: &Ctx) -> Result<Env, Failure> {
    let hal = PoolHal { now: c.ops.now_ns };
    let mut driver: Smmu<PoolHal, 2> = Smmu::new(hal);
    let mut instances: heapless::Vec<u16, 2> = heapless::Vec::new();
    for (i, u) in c.platform.iommus.iter().enumerate() {
        if u.kind != IommuKind::SmmuV3 {
            continue;
        }
        let Some(base) = NonNull::new(crate::pci::phys_ptr(u.base)) else {
            continue;
        };
        // SAFETY: an "arm,smmu-v3" register base from the device tree (both
        // pages), identity-mapped as device memory; only this suite drives it.
        let r = unsafe { driver.add_unit(i as u16, base) };
        crate::tryx!(r, "add_unit");
        crate::tryx!(
            driver.set_linear_stream_table(i as u16, linear(c)),
            "stream table layout"
        );
        if instances.push(i as u16).is_err() {
            break;
        }
    }
    if instances.is_empty() {
        return Err(Failure::skip(format_args!("no SMMUv3 on this board")));
    }
    crate::dma_env::bring_up(c, driver, &instances)
}

/// Run `f` on the SMMUv3 suite's state.
pub fn with_env(c: &Ctx, f: impl FnOnce(&mut Env) -> Result<(), Failure>) -> Result<(), Failure> {
    crate::dma_env::with(&ENV, c, bring_up, f)
}

/// The SMMU behind device `d`.
pub fn unit(e: &mut Env, d: usize) -> Result<&mut Unit, Failure> {
    let instance = e.devs[d].id.instance;
    Ok(crate::tryx!(e.core.driver_mut().unit_mut(instance), "unit"))
}
