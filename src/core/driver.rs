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
use crate::pgtable::TableFormat;

use super::direct::DirectRegion;
use super::iopf::{Fault, FaultResponder};
use super::sva::AddressSpace;
use super::tags::{TagInvalidate, TagView};
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
pub enum DomainRequest<'a, P, F> {
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
        parent: &'a DomainHw<P, F>,
        /// The user's configuration, with its type tag.
        data: UserData<'a>,
    },
}

/// What a driver gave a new domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainHw<P, F> {
    /// The tag its translations are cached under on its instance: VT-d
    /// domain ID, SMMU ASID (stage 1) or VMID (stage 2, nested).
    pub tag: u32,
    /// For a paging domain, the table format the core must build; `None`
    /// otherwise.
    pub format: Option<F>,
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

impl<P, F> DomainHw<P, F> {
    /// A domain cached under `tag`, with a table of `format` (paging) or none.
    pub fn new(tag: u32, format: Option<F>, private: P) -> Self {
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
pub enum DomainDesc<'a, P, F> {
    /// DMA is refused.
    Blocked,
    /// DMA addresses are physical addresses.
    Identity,
    /// An I/O page table.
    Paging {
        /// The driver's state for it.
        hw: &'a DomainHw<P, F>,
        /// Physical address of the table root.
        root: PhysAddr,
        /// Options it was allocated with.
        flags: PagingFlags,
    },
    /// A CPU page table.
    Sva {
        /// The driver's state for it.
        hw: &'a DomainHw<P, F>,
        /// The address space.
        space: &'a AddressSpace,
    },
    /// A user stage 1 on a paging parent (its configuration is in
    /// `hw.private`).
    Nested {
        /// The driver's state for it.
        hw: &'a DomainHw<P, F>,
        /// The parent's driver state.
        parent_hw: &'a DomainHw<P, F>,
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
/// The core ([`Iommu`](super::Iommu)) keeps every piece of bookkeeping:
/// domains, attachments, cache tags, PASIDs, bonds, fault grouping and
/// routing. A driver only writes what the core decided into its hardware
/// and reports what the hardware says. Every call names the instance (the
/// embedder's index, from the firmware tables), so one driver value serves
/// several DRHDs or SMMUs; a call for an instance the driver does not serve
/// returns `NotFound { what: Object::Instance }`.
///
/// A paging-only driver implements the required methods (probe, enable,
/// hw_info, domain_alloc, domain_free, attach) plus
/// [`TagInvalidate`] (invalidate, wait) and an empty [`FaultResponder`];
/// the optional features (PASIDs, nesting, faults) have default methods that
/// answer `Unsupported` (or report nothing), which the core passes on. A
/// complete example follows.
///
/// # Contracts
///
/// - The core calls nothing for an instance before `probe` and `enable`
///   succeeded for it, and never calls concurrently (it takes `&mut self`).
/// - `attach` writes the hardware entry (context / PASID entry, STE / CD)
///   for the new domain with its valid bit last and invalidates the caches
///   that held the old entry before it returns; whatever the device cached
///   under the old domain is invalidated too. If it fails, the device still
///   translates through the old domain. The core passes the domain it
///   believes is attached as `old`.
/// - `domain_free` is called only for a domain attached nowhere, once.
/// - Errors carry the register or field that said so (`Hardware`), or name
///   what is missing (`Unsupported`) or refused (`Incompatible`); a driver
///   never panics on hardware or user input.
///
/// # Example: a paging-only driver
///
/// A toy IOMMU with one instance whose "hardware" is a table of root
/// pointers indexed by requester ID (think: a legacy VT-d context table),
/// translating through VT-d second-level tables. Only that format's code is
/// compiled in, because the driver names it as its `Format`.
///
/// ```
/// use iommu::core::{
///     CacheTag, Caps, DeviceId, DeviceInfo, DomainDesc, DomainHw, DomainRequest, FaultResponder,
///     HW_INFO_TYPE_NONE, HwInfo, Iommu, IommuDriver, PagingFlags, TagInvalidate,
/// };
/// use iommu::hal::Hal;
/// use iommu::pgtable::{LargePages, Prot, VtdSl};
/// use iommu::{Error, Iova, Object, PhysAddr};
///
/// /// The toy hardware: a root pointer per requester ID (0: blocked).
/// struct ToyIommu {
///     roots: [u64; 256],
///     next_tag: u32,
///     flushes: u32,
/// }
///
/// impl ToyIommu {
///     fn check(&self, instance: u16) -> Result<(), Error> {
///         if instance == 0 { Ok(()) } else { Err(Error::NotFound { what: Object::Instance }) }
///     }
/// }
///
/// impl TagInvalidate for ToyIommu {
///     fn invalidate(&mut self, tag: &CacheTag, _: Option<(u64, u64)>, _: u64, _: bool)
///         -> Result<(), Error> {
///         self.check(tag.instance)?;
///         self.flushes += 1; // a real driver queues an IOTLB invalidation here
///         Ok(())
///     }
///     fn wait(&mut self, instance: u16) -> Result<(), Error> {
///         self.check(instance) // ...and waits for the queue here, with a timeout
///     }
/// }
///
/// // No page requests: the default answers Unsupported, never called.
/// impl FaultResponder for ToyIommu {}
///
/// impl IommuDriver for ToyIommu {
///     type DomainData = ();
///     type Format = VtdSl;
///     // It reads no fault records: the core leaves out fault handling.
///     const REPORTS_FAULTS: bool = false;
///
///     fn probe(&mut self, instance: u16) -> Result<HwInfo, Error> {
///         self.check(instance)?;
///         self.hw_info(instance)
///     }
///     fn enable(&mut self, instance: u16) -> Result<(), Error> {
///         self.check(instance) // every device starts blocked: roots are 0
///     }
///     fn hw_info(&self, instance: u16) -> Result<HwInfo, Error> {
///         self.check(instance)?;
///         Ok(HwInfo { ty: HW_INFO_TYPE_NONE, regs: [0; 8], len: 0 })
///     }
///     fn domain_alloc(&mut self, dev: &DeviceInfo, req: &DomainRequest<'_, (), VtdSl>)
///         -> Result<DomainHw<(), VtdSl>, Error> {
///         self.check(dev.dev.instance)?;
///         let DomainRequest::Paging { .. } = req else {
///             return Err(Error::Unsupported { what: "SVA and nested domains" });
///         };
///         self.next_tag += 1;
///         let format = VtdSl::new(48, LargePages::SIZE_2M)?;
///         Ok(DomainHw::new(self.next_tag, Some(format), ()))
///     }
///     fn domain_free(&mut self, _: u16, _: &DomainHw<(), VtdSl>) {}
///     fn attach(&mut self, dev: &DeviceInfo, pasid: Option<u32>,
///         new: &DomainDesc<'_, (), VtdSl>, _old: &DomainDesc<'_, (), VtdSl>)
///         -> Result<(), Error> {
///         if pasid.is_some() {
///             return Err(Error::Unsupported { what: "PASIDs" });
///         }
///         let root = match new {
///             DomainDesc::Blocked => 0,
///             DomainDesc::Paging { root, .. } => root.get(),
///             _ => return Err(Error::Unsupported { what: "this domain kind" }),
///         };
///         // Write the entry (valid last), then flush the context cache.
///         self.roots[dev.dev.id as usize % 256] = root;
///         Ok(())
///     }
/// }
///
/// /// Table pages from the heap (a firmware gives a static pool instead).
/// /// Each page table keeps a copy of the Hal: a zero-sized one costs nothing.
/// #[derive(Clone, Copy)]
/// struct HeapHal;
/// // SAFETY: each allocation is a fresh, zeroed, page-aligned heap block,
/// // leaked until freed here; physical = virtual on this toy.
/// unsafe impl Hal for HeapHal {
///     fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
///         let layout = std::alloc::Layout::from_size_align(count * 4096, count * 4096).ok()?;
///         // SAFETY: the layout has a non-zero size.
///         let p = unsafe { std::alloc::alloc_zeroed(layout) };
///         (!p.is_null()).then(|| PhysAddr(p as u64))
///     }
///     unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
///         let layout = std::alloc::Layout::from_size_align(count * 4096, count * 4096).unwrap();
///         // SAFETY: allocated above with this layout (the caller's promise).
///         unsafe { std::alloc::dealloc(phys.get() as *mut u8, layout) }
///     }
///     fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
///         phys.get() as *mut u8
///     }
///     fn now_ns(&self) -> u64 {
///         std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos() as u64)
///     }
/// }
///
/// let toy = ToyIommu { roots: [0; 256], next_tag: 0, flushes: 0 };
/// let mut core: Box<Iommu<ToyIommu, HeapHal, Caps<4, 4>>> = Box::new(Iommu::new(toy, HeapHal));
/// core.add_instance(0)?;
/// let dev = DeviceId { instance: 0, id: 0x08 };
/// core.register_device(DeviceInfo { dev, pasid_bits: 0, ats: false })?;
/// let dom = core.alloc_paging(dev, PagingFlags::empty())?;
/// core.map(dom, Iova(0x1000), PhysAddr(0x8000_0000), 0x1000, Prot::READ | Prot::WRITE)?;
/// core.attach(dev, dom)?;
/// let root = core.driver().roots[0x08];
/// assert_ne!(root, 0, "the device translates through the domain's table");
/// assert_eq!(core.iova_to_phys(dom, Iova(0x1000))?, Some(PhysAddr(0x8000_0000)));
/// core.unmap_sync(dom, Iova(0x1000), 0x1000)?; // one IOTLB flush, then a wait
/// assert_eq!(core.driver().flushes, 1);
/// // PASIDs are optional: this driver has none, and the core says so.
/// assert!(core.alloc_pasid(dev).is_err());
/// core.detach(dev)?;
/// core.free_domain(dom)?;
/// # Ok::<(), Error>(())
/// ```
pub trait IommuDriver: TagInvalidate + FaultResponder {
    /// What the driver keeps for each domain besides its tag and format
    /// (handed back in [`DomainHw::private`]).
    type DomainData;

    /// The table format of its paging domains: one [`Format`] when the
    /// hardware needs only that one (only its code is then compiled in), or
    /// [`AnyFormat`] to choose per domain.
    ///
    /// [`Format`]: crate::pgtable::Format
    /// [`AnyFormat`]: crate::pgtable::AnyFormat
    type Format: TableFormat;

    /// Whether the driver reports faults at all ([`drain_faults`] can
    /// return any). `false` says it never does: the core then compiles out
    /// its fault handling (draining, grouping, routing, the flush at the end
    /// of an attachment), which has nothing to do for such a driver. The
    /// default is `true`.
    ///
    /// [`drain_faults`]: Self::drain_faults
    const REPORTS_FAULTS: bool = true;

    /// Read the instance's identification and capabilities and check it can
    /// be driven (a typed error naming what is missing); returns its raw
    /// capability registers. Called once per instance, by
    /// [`Iommu::add_instance`](super::Iommu::add_instance), before anything
    /// else for it.
    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error>;

    /// Turn translation on (tables, queues, global invalidation), every
    /// device blocked. Called once, after a successful `probe`.
    fn enable(&mut self, instance: u16) -> Result<(), Error>;

    /// The raw capability registers, as `probe` returned them.
    fn hw_info(&self, instance: u16) -> Result<HwInfo, Error>;

    /// Allocate the hardware side of a domain for `dev`: its cache tag (DID,
    /// ASID or VMID), and for a paging domain the table format the core
    /// builds. For a nested request, validate the user data (every field,
    /// against the instance's capabilities: `InvalidField` / `Unsupported`
    /// naming the field; another driver's data type is
    /// `InvalidField("data_type")`). `Incompatible` / `Unsupported` when the
    /// request cannot be served; `Exhausted` when tags run out. On error
    /// nothing is kept.
    fn domain_alloc(
        &mut self,
        dev: &DeviceInfo,
        req: &DomainRequest<'_, Self::DomainData, Self::Format>,
    ) -> Result<DomainHw<Self::DomainData, Self::Format>, Error>;

    /// Give back what `domain_alloc` took. The domain is attached nowhere
    /// and no table of it is in use; called once per domain.
    fn domain_free(&mut self, instance: u16, hw: &DomainHw<Self::DomainData, Self::Format>);

    /// Make `dev` (at `pasid`, or its requester ID when `None`) translate
    /// through `new` instead of `old`, in one step (see the contracts
    /// above). `Incompatible` when `new` cannot serve this device (the core
    /// then tries another domain); `Unsupported` for what the hardware or
    /// driver lacks (PASIDs, a domain kind).
    fn attach(
        &mut self,
        dev: &DeviceInfo,
        pasid: Option<u32>,
        new: &DomainDesc<'_, Self::DomainData, Self::Format>,
        old: &DomainDesc<'_, Self::DomainData, Self::Format>,
    ) -> Result<(), Error>;

    /// Remove whatever is attached at `pasid` of `dev` (`old`), leaving the
    /// PASID untranslated (its requests fault), with the caches that held
    /// it invalidated before returning. Called only for a PASID the core
    /// attached something at through `attach`. The default answers
    /// `Unsupported` (a driver without PASIDs never gets here: its `attach`
    /// refused every PASID).
    fn detach_pasid(
        &mut self,
        dev: &DeviceInfo,
        pasid: u32,
        old: &DomainDesc<'_, Self::DomainData, Self::Format>,
    ) -> Result<(), Error> {
        let _ = (dev, pasid, old);
        Err(Error::Unsupported { what: "PASIDs" })
    }

    /// Validate and queue a user invalidation array for a nested domain, in
    /// order, up to the first entry that is malformed (in the driver's format
    /// for `array.data_type`) or fails; the outcome says how many were
    /// handled and why the first bad one stopped. The core waits
    /// ([`TagInvalidate::wait`]) once after the batch. Commands that name a
    /// device name it by the guest's virtual ID, resolved through `ids` (an
    /// ID the guest does not have is refused, so a guest reaches only its own
    /// devices); the driver fills in what the host owns (the parent's VMID,
    /// the nested domain's DID). The default refuses the whole array
    /// (`Unsupported` at index 0): a driver without nesting never allocates
    /// a nested domain.
    fn invalidate_user(
        &mut self,
        domain: &DomainDesc<'_, Self::DomainData, Self::Format>,
        tags: TagView<'_>,
        array: &UserArray<'_>,
        ids: &dyn VirtualIds,
    ) -> InvalidateOutcome {
        let _ = (domain, tags, ids);
        InvalidateOutcome {
            handled: 0,
            error: (array.count > 0).then_some((
                0,
                Error::Unsupported {
                    what: "nested translation",
                },
            )),
        }
    }

    /// Move pending fault records of `instance` into `out`, decoded into
    /// [`Fault`]s (acknowledging them in the hardware); returns how many.
    /// The core calls again while `out` comes back full, from
    /// [`process_faults`](super::Iommu::process_faults) and whenever an
    /// attachment ends. The default reports none: right for a driver that
    /// does not read fault records (faults then go unseen).
    fn drain_faults(&mut self, instance: u16, out: &mut [Fault]) -> Result<usize, Error> {
        let _ = (instance, out);
        Ok(0)
    }

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

    /// The direct-mapped regions of `dev` (VT-d RMRRs naming it): memory
    /// it must keep reaching at the same address. The core maps them
    /// one-to-one into every paging domain attached at its requester ID and
    /// keeps them there while it is attached. Fill `out`, return how many
    /// (at most `out.len()`). The default: none.
    fn direct_regions(&self, dev: &DeviceInfo, out: &mut [DirectRegion]) -> usize {
        let _ = (dev, out);
        0
    }

    /// Whether new mappings must be invalidated too (VT-d caching mode,
    /// CAP.CM = 1, as under emulation). The default: no.
    fn flush_on_map(&self, instance: u16) -> bool {
        let _ = instance;
        false
    }
}
