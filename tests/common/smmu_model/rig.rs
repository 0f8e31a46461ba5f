//! A core over the real SMMUv3 driver over fake SMMUs: what most tests
//! start from.

use iommu::core::{Caps, DeviceId, DeviceInfo, DomainId, Iommu, PagingFlags};
use iommu::drivers::smmuv3::driver::Smmu;
use iommu::drivers::smmuv3::unit::Unit;
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};

use super::fake::FakeSmmu;
use super::hal::ModelHal;
use super::spec::SmmuConfig;

/// 32 domains, 16 devices, the whole PASID space, 2 instances.
pub type SmmuCaps = Caps<32, 16, 16384, 2>;
pub type Driver = Smmu<ModelHal, 4>;
pub type Core = Iommu<Driver, ModelHal, SmmuCaps>;

/// Read and write.
pub const RW: Prot = Prot::READ.union(Prot::WRITE);

/// The core, the fake SMMUs (instance `i` is `units[i]`) and the memory.
/// Fields drop in order: the core before the SMMUs it drives.
pub struct Rig {
    pub core: Box<Core>,
    pub units: Vec<FakeSmmu>,
    pub hal: ModelHal,
}

impl Rig {
    /// SMMUs served by the driver as instances 0, 1, ..., not yet added to
    /// the core (nothing written to them).
    pub fn bare(configs: &[SmmuConfig]) -> Rig {
        let hal = ModelHal::new();
        let units: Vec<FakeSmmu> = configs.iter().map(|c| FakeSmmu::new(&hal, *c)).collect();
        let mut smmu = Driver::new(hal.clone());
        for (i, u) in units.iter().enumerate() {
            // SAFETY: the block lives as long as the unit, which the rig
            // drops after the core.
            unsafe { smmu.add_unit(i as u16, u.base()) }.unwrap();
        }
        Rig {
            core: Box::new(Iommu::new(smmu, hal.clone())),
            units,
            hal,
        }
    }

    /// SMMUs added to the core (probed and enabled).
    pub fn new(configs: &[SmmuConfig]) -> Rig {
        let mut rig = Self::bare(configs);
        for i in 0..configs.len() {
            rig.core.add_instance(i as u16).unwrap();
        }
        rig
    }

    /// One SMMU like QEMU's.
    pub fn qemu() -> Rig {
        Self::new(&[SmmuConfig::qemu()])
    }

    pub fn unit(&self, instance: u16) -> &FakeSmmu {
        &self.units[instance as usize]
    }

    /// The driver's state of an SMMU.
    pub fn smmu(&mut self, instance: u16) -> &mut Unit {
        self.core.driver_mut().unit_mut(instance).unwrap()
    }

    /// Register a device.
    pub fn device(&mut self, instance: u16, sid: u32, pasid_bits: u8, ats: bool) -> DeviceId {
        let dev = DeviceId { instance, id: sid };
        self.core
            .register_device(DeviceInfo {
                dev,
                pasid_bits,
                ats,
            })
            .unwrap();
        dev
    }

    /// A paging domain for `dev` (stage 1 where the SMMU has it).
    pub fn paging(&mut self, dev: DeviceId) -> DomainId {
        self.core.alloc_paging(dev, PagingFlags::empty()).unwrap()
    }

    /// Map `len` bytes at `iova` to a fresh buffer; its address.
    pub fn map_buffer(&mut self, d: DomainId, iova: u64, len: u64) -> u64 {
        let pages = (len / 4096) as usize;
        let pa = iommu::hal::Hal::alloc_pages(&self.hal, pages).unwrap().0;
        self.core.map(d, Iova(iova), PhysAddr(pa), len, RW).unwrap();
        pa
    }

    /// Unmap and sync.
    pub fn unmap(&mut self, d: DomainId, iova: u64, len: u64) {
        self.core.unmap_sync(d, Iova(iova), len).unwrap();
    }

    /// Every SMMU's log emptied.
    pub fn clear_logs(&self) {
        for u in &self.units {
            u.take_log();
        }
    }

    /// A domain's cache tag (ASID or VMID, with its kind bits).
    pub fn tag(&self, d: DomainId) -> u32 {
        self.core.domain_hw(d).unwrap().tag
    }

    /// ASIDs and VMIDs in use on an SMMU (reserved ones included).
    pub fn ids_in_use(&mut self, instance: u16) -> (u32, u32) {
        let u = self.smmu(instance);
        (u.asids.in_use(), u.vmids.in_use())
    }
}
