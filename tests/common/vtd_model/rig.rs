//! A core over the real VT-d driver over fake units: what most tests start
//! from.

use iommu::Error;
use iommu::core::{Caps, DeviceId, DeviceInfo, DomainId, Iommu};
use iommu::drivers::vtd::driver::Vtd;

use super::fake::FakeUnit;
use super::hal::ModelHal;
use super::spec::UnitConfig;

/// 32 domains, 16 devices, the whole PASID space, 2 instances.
pub type VtdCaps = Caps<32, 16, 16384, 2>;
pub type Driver = Vtd<ModelHal, 4>;
pub type Core = Iommu<Driver, ModelHal, VtdCaps>;

/// The core, the fake units (instance `i` is `units[i]`) and the memory.
/// Fields drop in order: the core before the units it drives.
pub struct Rig {
    pub core: Box<Core>,
    pub units: Vec<FakeUnit>,
    pub hal: ModelHal,
}

impl Rig {
    /// Units served by the driver as instances 0, 1, ..., not yet added to
    /// the core (nothing written to them).
    pub fn bare(configs: &[UnitConfig]) -> Rig {
        let hal = ModelHal::new();
        let units: Vec<FakeUnit> = configs.iter().map(|c| FakeUnit::new(&hal, *c)).collect();
        let mut vtd = Driver::new(hal.clone());
        for (i, u) in units.iter().enumerate() {
            // SAFETY: the block lives as long as the unit, which the rig
            // drops after the core.
            unsafe { vtd.add_unit(i as u16, u.base()) }.unwrap();
        }
        Rig {
            core: Box::new(Iommu::new(vtd, hal.clone())),
            units,
            hal,
        }
    }

    /// Units added to the core (probed and enabled).
    pub fn new(configs: &[UnitConfig]) -> Rig {
        let mut rig = Self::bare(configs);
        for i in 0..configs.len() {
            rig.core.add_instance(i as u16).unwrap();
        }
        rig
    }

    pub fn legacy() -> Rig {
        Self::new(&[UnitConfig::legacy()])
    }

    pub fn scalable() -> Rig {
        Self::new(&[UnitConfig::scalable()])
    }

    pub fn unit(&self, instance: u16) -> &FakeUnit {
        &self.units[instance as usize]
    }

    /// Register a device.
    pub fn device(&mut self, instance: u16, sid: u16, pasid_bits: u8, ats: bool) -> DeviceId {
        let dev = DeviceId {
            instance,
            id: sid.into(),
        };
        self.core
            .register_device(DeviceInfo {
                dev,
                pasid_bits,
                ats,
            })
            .unwrap();
        dev
    }

    /// Faults of `d` go to the recording handler with `cookie`
    /// (`faults::seen`).
    pub fn handled_by(&mut self, d: DomainId, cookie: usize) {
        let t = super::faults::target(cookie);
        self.core.set_fault_target(d, t).unwrap();
    }

    /// Every unit's log emptied.
    pub fn clear_logs(&self) {
        for u in &self.units {
            u.take_log();
        }
    }

    pub fn driver(&self) -> &Driver {
        self.core.driver()
    }

    pub fn dids(&self, instance: u16) -> u32 {
        self.core.driver().dids_in_use(instance).unwrap()
    }
}

/// `Err` as a string, for messages.
pub fn err(e: Error) -> String {
    e.to_string()
}
