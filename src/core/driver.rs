//! The boundary between the core and an IOMMU driver.
//!
//! A driver programs one kind of hardware (VT-d, SMMUv3, or a test mock) and
//! may serve several instances of it; every call names the instance. The
//! trait is deliberately small: everything that is not "write this to the
//! hardware" — domain bookkeeping, attach handles, cache tags, PASIDs, SVA
//! bonds, fault grouping and routing — is the core's
//! ([`Iommu`](super::Iommu)).

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::pgtable::{ArmS1, ArmS2, VtdSl, X86_64};

use super::iopf::{Fault, FaultResponder};
use super::sva::AddressSpace;
use super::tags::TagInvalidate;
use super::user::{InvalidateOutcome, UserArray, UserData, VirtualIds};

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
pub enum DomainRequest<'a, P> {
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
    /// A user-managed stage 1 on a paging parent, from untrusted user data
    /// the driver validates field by field against the instance's
    /// capabilities (refusing with `InvalidField` / `Unsupported` naming the
    /// field, or `InvalidField("data_type")` for a format it does not take).
    Nested {
        /// The parent's hardware state (a nest-parent paging domain of the
        /// same instance: the core checked).
        parent: &'a DomainHw<P>,
        /// The user's configuration, with its type tag.
        data: UserData<'a>,
    },
}

/// What a driver gave a new domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainHw<P> {
    /// The tag its translations are cached under on its instance: VT-d
    /// domain ID, SMMU ASID (stage 1) or VMID (stage 2, nested).
    pub tag: u32,
    /// For a paging domain, the table format the core must build; `None`
    /// otherwise.
    pub format: Option<PagingFormat>,
    /// The domain, attached at a requester ID, also translates that device's
    /// PASID-tagged requests through tables the user manages (an SMMUv3
    /// nested domain whose guest CD table has substreams): the guest owns
    /// the device's PASIDs, so faults carrying a PASID with no attachment of
    /// its own go to this domain, and the core attaches nothing else at a
    /// PASID of that device meanwhile.
    pub user_pasids: bool,
    /// Driver-private state (the validated user configuration of a nested
    /// domain, for instance), handed back in every [`DomainDesc`].
    pub private: P,
}

impl<P> DomainHw<P> {
    /// A domain cached under `tag`, with a table of `format` (paging) or none.
    pub fn new(tag: u32, format: Option<PagingFormat>, private: P) -> Self {
        DomainHw {
            tag,
            format,
            user_pasids: false,
            private,
        }
    }
}

/// Which domain, as handed to a driver's attach / detach.
#[derive(Clone, Copy, Debug)]
pub enum DomainDesc<'a, P> {
    /// DMA is refused.
    Blocked,
    /// DMA addresses are physical addresses.
    Identity,
    /// An I/O page table.
    Paging {
        /// The driver's state for it.
        hw: &'a DomainHw<P>,
        /// Physical address of the table root.
        root: PhysAddr,
        /// Options it was allocated with.
        flags: PagingFlags,
    },
    /// A CPU page table.
    Sva {
        /// The driver's state for it.
        hw: &'a DomainHw<P>,
        /// The address space.
        space: &'a AddressSpace,
    },
    /// A user stage 1 on a paging parent (its configuration is in
    /// `hw.private`).
    Nested {
        /// The driver's state for it.
        hw: &'a DomainHw<P>,
        /// The parent's driver state.
        parent_hw: &'a DomainHw<P>,
        /// Physical address of the parent's table root.
        parent_root: PhysAddr,
    },
}

/// `IOMMU_HW_INFO_TYPE_NONE`: [`HwInfo::ty`] of a driver whose registers
/// follow no published layout (a test driver). Each driver names its own
/// type number beside its formats.
pub const HW_INFO_TYPE_NONE: u32 = 0;

/// Raw capability registers of an instance, for a user deciding what nested
/// configuration it may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwInfo {
    /// Which layout `regs` follows (iommufd's `enum iommu_hw_info_type`,
    /// numbered by the driver).
    pub ty: u32,
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
    /// What the driver keeps for each domain besides its tag and format
    /// (handed back in [`DomainHw::private`]).
    type DomainData;

    /// Read the instance's identification and capabilities and check it can
    /// be driven; returns its raw capability registers.
    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error>;

    /// Turn translation on (tables, queues); every device starts Blocked.
    fn enable(&mut self, instance: u16) -> Result<(), Error>;

    /// The raw capability registers (as `probe` returned them).
    fn hw_info(&self, instance: u16) -> Result<HwInfo, Error>;

    /// Allocate the hardware side of a domain for `dev` (tag, format).
    /// `Incompatible` / `Unsupported` when the request cannot be served.
    fn domain_alloc(
        &mut self,
        dev: &DeviceInfo,
        req: &DomainRequest<'_, Self::DomainData>,
    ) -> Result<DomainHw<Self::DomainData>, Error>;

    /// Give back what `domain_alloc` took (the domain is attached nowhere).
    fn domain_free(&mut self, instance: u16, hw: &DomainHw<Self::DomainData>);

    /// Make `dev` (at `pasid`, or its requester ID when `None`) translate
    /// through `new` instead of `old`, in one step. `Incompatible` when `new`
    /// cannot serve this device (the core then tries another domain).
    fn attach(
        &mut self,
        dev: &DeviceInfo,
        pasid: Option<u32>,
        new: &DomainDesc<'_, Self::DomainData>,
        old: &DomainDesc<'_, Self::DomainData>,
    ) -> Result<(), Error>;

    /// Remove whatever is attached at `pasid` of `dev` (`old`), leaving the
    /// PASID untranslated (its requests fault).
    fn detach_pasid(
        &mut self,
        dev: &DeviceInfo,
        pasid: u32,
        old: &DomainDesc<'_, Self::DomainData>,
    ) -> Result<(), Error>;

    /// Validate and queue a user invalidation array for a nested domain, in
    /// order, up to the first entry that is malformed (in the driver's format
    /// for `array.data_type`) or fails; the outcome says how many were
    /// handled and why the first bad one stopped. The core waits
    /// ([`TagInvalidate::wait`]) once after the batch. Commands that name a
    /// device name it by the guest's virtual ID, resolved through `ids` (an
    /// ID the guest does not have is refused, so a guest reaches only its own
    /// devices); the driver fills in what the host owns (the parent's VMID,
    /// the nested domain's DID).
    fn invalidate_user(
        &mut self,
        domain: &DomainDesc<'_, Self::DomainData>,
        array: &UserArray<'_>,
        ids: &dyn VirtualIds,
    ) -> InvalidateOutcome;

    /// Move pending fault records of `instance` into `out`, decoded; returns
    /// how many. The core calls again while `out` comes back full.
    fn drain_faults(&mut self, instance: u16, out: &mut [Fault]) -> Result<usize, Error>;

    /// Make every fault `dev` raised before this call visible to
    /// [`drain_faults`](Self::drain_faults): page requests still on their
    /// way to the queue, stalled transactions not yet recorded. The core
    /// calls it, then drains, whenever one of the device's attachments ends,
    /// so that no fault of the old attachment is delivered after the change
    /// (VT-d: an invalidation-wait with page-request drain; SMMUv3: a
    /// CMD_SYNC after the configuration change, for PRI and stall). The
    /// default does nothing: right for hardware that records a fault before
    /// it completes the change that ends the attachment.
    fn flush_faults(&mut self, dev: &DeviceInfo) -> Result<(), Error> {
        let _ = dev;
        Ok(())
    }

    /// Whether new mappings must be invalidated too (VT-d caching mode,
    /// CAP.CM = 1, as under emulation).
    fn flush_on_map(&self, instance: u16) -> bool {
        let _ = instance;
        false
    }
}
