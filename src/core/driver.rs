//! The boundary between the core and an IOMMU driver.
//!
//! A driver programs one kind of hardware (VT-d, SMMUv3, or a test mock) and
//! may serve several instances of it; every call names the instance. The
//! trait is deliberately small: everything that is not "write this to the
//! hardware" — domain bookkeeping, attach handles, cache tags, PASIDs, SVA
//! bonds, fault grouping and routing — is the core's
//! ([`Iommu`](super::Iommu)).

use crate::error::Error;
use crate::pgtable::{ArmS1, ArmS2, VtdSl, X86_64};

use super::iopf::{Fault, FaultResponder};
use super::nested::{NestedCaps, NestedConfig, UserInv};
use super::sva::AddressSpace;
use super::tags::TagInvalidate;

/// A device as the core knows it: which IOMMU instance translates it and
/// under which ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceId {
    /// The IOMMU instance (the embedder's index, from the firmware tables).
    pub instance: u16,
    /// The ID the IOMMU sees: PCI requester ID (VT-d source-id) or StreamID.
    pub id: u32,
}

/// What the core knows about a registered device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Instance and ID.
    pub dev: DeviceId,
    /// PASID width the device supports (PCIe PASID capability, or SMMU
    /// SubstreamID bits); 0 for none. At most 20.
    pub pasid_bits: u8,
    /// Whether the device's translation cache (PCIe ATS) is enabled: attach
    /// then records a device-TLB cache tag too.
    pub ats: bool,
}

/// The page-table format a driver chose for a paging domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingFormat {
    /// VT-d second-level table.
    VtdSl(VtdSl),
    /// x86-64 (VT-d first-level) table.
    X86_64(X86_64),
    /// Arm VMSAv8-64 stage 1.
    ArmS1(ArmS1),
    /// Arm VMSAv8-64 stage 2.
    ArmS2(ArmS2),
}

bitflags::bitflags! {
    /// Options of a paging domain (iommufd's `IOMMU_HWPT_ALLOC_*` flags).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct PagingFlags: u32 {
        /// The domain will be the stage-2 parent of nested domains.
        const NEST_PARENT = 1 << 0;
        /// The hardware should track dirty pages in the table. Passed to
        /// the driver, which may refuse it; the page-table engine does not
        /// read and clear dirty bits yet, so `iommufd` refuses the flag.
        const DIRTY_TRACKING = 1 << 1;
    }
}

/// What the core asks a driver to allocate a domain for.
#[derive(Clone, Copy, Debug)]
pub enum DomainRequest<'a> {
    /// An I/O page table the core will own and map into.
    Paging {
        /// Options.
        flags: PagingFlags,
    },
    /// A domain that translates through a CPU page table.
    Sva {
        /// The address space.
        space: &'a AddressSpace,
    },
    /// A user-managed stage-1 on a paging parent.
    Nested {
        /// The parent's hardware state.
        parent: &'a DomainHw,
        /// The validated user configuration.
        config: &'a NestedConfig,
    },
}

/// What a driver gave a new domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainHw {
    /// The tag its translations are cached under on its instance: VT-d
    /// domain ID, SMMU ASID (stage 1) or VMID (stage 2, nested).
    pub tag: u32,
    /// For a paging domain, the table format the core must build; `None`
    /// otherwise.
    pub format: Option<PagingFormat>,
    /// Driver-private value, handed back in every [`DomainDesc`].
    pub private: u64,
}

/// Which domain, as handed to a driver's attach / detach.
#[derive(Clone, Copy, Debug)]
pub enum DomainDesc<'a> {
    /// DMA is refused.
    Blocked,
    /// DMA addresses are physical addresses.
    Identity,
    /// An I/O page table.
    Paging {
        /// The driver's state for it.
        hw: &'a DomainHw,
        /// Physical address of the table root.
        root: u64,
        /// Options it was allocated with.
        flags: PagingFlags,
    },
    /// A CPU page table.
    Sva {
        /// The driver's state for it.
        hw: &'a DomainHw,
        /// The address space.
        space: &'a AddressSpace,
    },
    /// A user stage-1 on a paging parent.
    Nested {
        /// The driver's state for it.
        hw: &'a DomainHw,
        /// Validated user configuration.
        config: &'a NestedConfig,
        /// The parent's driver state.
        parent_hw: &'a DomainHw,
        /// Physical address of the parent's table root.
        parent_root: u64,
    },
}

/// Which layout [`HwInfo::regs`] follows (iommufd's `iommu_hw_info_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwInfoType {
    /// VT-d: `regs[0]` = CAP_REG, `regs[1]` = ECAP_REG.
    Vtd,
    /// SMMUv3: `regs[0..6]` = IDR0..IDR5, `regs[6]` = IIDR, `regs[7]` = AIDR.
    SmmuV3,
    /// Anything else (a test driver): layout is the driver's.
    Other,
}

/// Raw capability registers of an instance, for a user deciding what nested
/// configuration it may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwInfo {
    /// Layout.
    pub ty: HwInfoType,
    /// Register values; `len` of them are meaningful.
    pub regs: [u64; 8],
    /// Number of meaningful values.
    pub len: usize,
}

/// A hardware IOMMU driver, serving one or more instances.
///
/// Cache invalidation ([`TagInvalidate`]) and page responses
/// ([`FaultResponder`]) are part of it. Every call names the instance; a call
/// for an instance the driver does not serve returns `NotFound`.
///
/// Contract for attach: the hardware entry (context / PASID entry, STE / CD)
/// for the new domain is written with its valid bit last and its caches
/// invalidated before `attach` returns, and whatever the device cached under
/// the old domain is invalidated too. If `attach` fails, the device still
/// translates through the old domain.
pub trait IommuDriver: TagInvalidate + FaultResponder {
    /// Read the instance's identification and capabilities and check it can
    /// be driven; returns its raw capability registers.
    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error>;

    /// Turn translation on (tables, queues); every device starts Blocked.
    fn enable(&mut self, instance: u16) -> Result<(), Error>;

    /// The raw capability registers (as `probe` returned them).
    fn hw_info(&self, instance: u16) -> Result<HwInfo, Error>;

    /// Which nested user data the instance accepts, with its limits; `None`
    /// when it cannot nest.
    fn nested_caps(&self, instance: u16) -> Option<NestedCaps>;

    /// Allocate the hardware side of a domain for `dev` (tag, format).
    /// `Incompatible` / `Unsupported` when the request cannot be served.
    fn domain_alloc(
        &mut self,
        dev: &DeviceInfo,
        req: &DomainRequest<'_>,
    ) -> Result<DomainHw, Error>;

    /// Give back what `domain_alloc` took (the domain is attached nowhere).
    fn domain_free(&mut self, instance: u16, hw: &DomainHw);

    /// Make `dev` (at `pasid`, or its requester ID when `None`) translate
    /// through `new` instead of `old`, in one step. `Incompatible` when `new`
    /// cannot serve this device (the core then tries another domain).
    fn attach(
        &mut self,
        dev: &DeviceInfo,
        pasid: Option<u32>,
        new: &DomainDesc<'_>,
        old: &DomainDesc<'_>,
    ) -> Result<(), Error>;

    /// Remove whatever is attached at `pasid` of `dev` (`old`), leaving the
    /// PASID untranslated (its requests fault).
    fn detach_pasid(
        &mut self,
        dev: &DeviceInfo,
        pasid: u32,
        old: &DomainDesc<'_>,
    ) -> Result<(), Error>;

    /// Queue one validated user invalidation for a nested domain (the core
    /// calls [`TagInvalidate::wait`] after the batch). SMMUv3 commands that
    /// name a device carry its real StreamID: the core translated the guest's
    /// virtual ID. The driver fills in the VMID of the nested domain's parent.
    fn invalidate_user(&mut self, domain: &DomainDesc<'_>, inv: &UserInv) -> Result<(), Error>;

    /// Move pending fault records of `instance` into `out`, decoded; returns
    /// how many. The core calls again while `out` comes back full.
    fn drain_faults(&mut self, instance: u16, out: &mut [Fault]) -> Result<usize, Error>;

    /// Whether new mappings must be invalidated too (VT-d caching mode,
    /// CAP.CM = 1, as under emulation).
    fn flush_on_map(&self, instance: u16) -> bool {
        let _ = instance;
        false
    }
}
