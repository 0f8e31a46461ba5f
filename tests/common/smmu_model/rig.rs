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

    /// Map `len` bytes at `iova` to fresh buffers (16 pages at most each,
    /// so 4 KiB leaves); the address of the first.
    pub fn map_buffer(&mut self, d: DomainId, iova: u64, len: u64) -> u64 {
        let mut first = None;
        let mut at = 0;
        while at < len {
            let chunk = (len - at).min(16 * 4096);
            let pages = (chunk / 4096) as usize;
            let pa = iommu::hal::Hal::alloc_pages(&self.hal, pages.next_power_of_two());
            let pa = pa.unwrap().0;
            self.core
                .map(d, Iova(iova + at), PhysAddr(pa), chunk, RW)
                .unwrap();
            first.get_or_insert(pa);
            at += chunk;
        }
        first.unwrap()
    }

    /// Unmap and sync.
    pub fn unmap(&mut self, d: DomainId, iova: u64, len: u64) {
        self.core.unmap_sync(d, Iova(iova), len).unwrap();
    }

    /// A nest parent (stage 2) for `dev`.
    pub fn parent(&mut self, dev: DeviceId) -> DomainId {
        self.core
            .alloc_paging(dev, PagingFlags::NEST_PARENT)
            .unwrap()
    }

    /// Map model pages one-to-one (IPA = PA) into a nest parent: guest
    /// memory the guest's tables and CDs live in.
    pub fn identity(&mut self, parent: DomainId, pages: &[u64]) {
        for &p in pages {
            self.core
                .map(parent, Iova(p), PhysAddr(p), 4096, RW)
                .unwrap();
        }
    }

    /// A guest's stage 1 in model memory, its pages mapped one-to-one into
    /// `parent`: a linear CD table of 2^`cd_bits` CDs, CD `ssid` with
    /// `asid` over a 4-level table mapping `iova` to `ipa` (nG). The CD
    /// table's address and the table root.
    pub fn guest_s1(
        &mut self,
        parent: DomainId,
        cd_bits: u8,
        ssid: u32,
        asid: u16,
        iova: u64,
        ipa: u64,
    ) -> (u64, u64) {
        use iommu::drivers::smmuv3::cd;
        let table = self.hal.page();
        let root = self.guest_table(parent, iova, ipa);
        let w = cd::build(&cd::Stage1 {
            ttb0: root,
            t0sz: 16,
            oas_bits: 48,
            mair: 0x44ff04,
            asid,
            stall: false,
        });
        self.guest_cd(table, ssid, &w);
        assert!(cd_bits <= 6, "one page of CDs");
        self.identity(parent, &[table]);
        (table, root)
    }

    /// Write CD `ssid` of a guest's linear CD table.
    pub fn guest_cd(&self, table: u64, ssid: u32, w: &[u64; 8]) {
        for (i, x) in w.iter().enumerate() {
            assert!(
                self.hal
                    .write_u64(table + u64::from(ssid) * 64 + 8 * i as u64, *x)
            );
        }
    }

    /// A 4-level AArch64 table of guest memory (mapped one-to-one into
    /// `parent`) mapping `iova` to `ipa` (nG, AF, EL0, read-write); its
    /// root.
    pub fn guest_table(&mut self, parent: DomainId, iova: u64, ipa: u64) -> u64 {
        let pages: Vec<u64> = (0..4).map(|_| self.hal.page()).collect();
        for level in 0..3 {
            let idx = (iova >> (39 - 9 * level)) & 0x1ff;
            assert!(
                self.hal
                    .write_u64(pages[level] + idx * 8, pages[level + 1] | 3)
            );
        }
        let leaf = ipa | 3 | (1 << 11) | (1 << 10) | (1 << 6);
        assert!(
            self.hal
                .write_u64(pages[3] + ((iova >> 12) & 0x1ff) * 8, leaf)
        );
        self.identity(parent, &pages);
        pages[0]
    }

    /// A nested domain on `parent` from a guest STE (stage 1 through the CD
    /// table at `cd_table` of 2^`cd_bits` CDs, S1DSS `dss`).
    pub fn nested(
        &mut self,
        dev: DeviceId,
        parent: DomainId,
        cd_table: u64,
        cd_bits: u8,
        dss: u64,
    ) -> DomainId {
        let w = vste(cd_table, cd_bits, dss);
        self.nested_from(dev, parent, w).unwrap()
    }

    /// A nested domain on `parent` from a guest STE's first two words.
    pub fn nested_from(
        &mut self,
        dev: DeviceId,
        parent: DomainId,
        w: [u64; 2],
    ) -> Result<DomainId, iommu::Error> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&w[0].to_le_bytes());
        bytes[8..].copy_from_slice(&w[1].to_le_bytes());
        let ty = iommu::drivers::smmuv3::user::HWPT_DATA_ARM_SMMUV3;
        self.core.alloc_nested(dev, parent, ty, &bytes)
    }

    /// Faults of `d` go to the recording handler with `cookie`
    /// (`faults::seen`).
    pub fn handled_by(&mut self, d: DomainId, cookie: usize) {
        let t = super::faults::target(cookie);
        self.core.set_fault_target(d, t).unwrap();
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

/// A guest STE's first two words: stage 1 through the CD table at
/// `cd_table` of 2^`cd_bits` CDs (S1DSS `dss` with substreams).
pub fn vste(cd_table: u64, cd_bits: u8, dss: u64) -> [u64; 2] {
    use iommu::drivers::smmuv3::ste;
    let mut w = [0u64; 2];
    ste::V.set(&mut w, 1);
    ste::CONFIG.set(&mut w, ste::config::S1_TRANS);
    ste::S1_CONTEXT_PTR.set_in_place(&mut w, cd_table);
    ste::S1_CD_MAX.set(&mut w, cd_bits.into());
    if cd_bits > 0 {
        ste::S1DSS.set(&mut w, dss);
    }
    w
}
