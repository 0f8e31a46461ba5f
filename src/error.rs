//! The crate's error type.

use core::fmt;

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A wait for the hardware ran out of time.
    Timeout {
        /// What was being waited for.
        what: &'static str,
    },
    /// The hardware reported an error in a register.
    Hardware {
        /// The register that said so.
        register: &'static str,
        /// Its value.
        value: u64,
    },
    /// The hardware refused an entry of one of its queues (a VT-d
    /// invalidation descriptor, an SMMUv3 command); the driver repaired the
    /// queue, which works again.
    QueueEntry {
        /// The register that said so, with the error it reported.
        register: &'static str,
        /// What the entry was (descriptor type or command name, as the
        /// specification names it).
        entry: &'static str,
        /// Its index in the queue.
        index: u32,
    },
    /// The hardware does not offer what was asked for.
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// An address or size is not aligned as required.
    Unaligned {
        /// The offending value.
        value: u64,
        /// Required alignment in bytes.
        align: u64,
    },
    /// A value is outside the allowed range.
    OutOfRange {
        /// What was out of range.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The unit is in a state that forbids the operation.
    Busy {
        /// What is busy.
        what: &'static str,
    },
    /// A mapping already covers part of the range.
    Overlap {
        /// First address found mapped.
        iova: u64,
    },
    /// Part of the range is not mapped.
    NotMapped {
        /// First address found unmapped.
        iova: u64,
    },
    /// The range would cut a block mapping in two (blocks are never split).
    SplitBlock {
        /// Start of the block.
        iova: u64,
        /// Size of the block.
        size: u64,
    },
    /// The embedder's allocator ran out of pages.
    NoMemory,
    /// A PASID is outside what the caller may use, or not allocated.
    BadPasid {
        /// The PASID.
        pasid: u32,
    },
    /// Nothing matches what was named.
    NotFound {
        /// What was looked for.
        what: Object,
    },
    /// A fixed-capacity resource is used up: there is no room for another.
    Exhausted {
        /// What there is no room for.
        what: Object,
    },
    /// The domain cannot be attached to this device as it is (another IOMMU
    /// instance, a format or feature the device's IOMMU lacks): allocate a
    /// domain for the device instead.
    Incompatible {
        /// What does not match.
        what: &'static str,
    },
    /// A field of untrusted user data (nested stage-1 configuration, a user
    /// invalidation entry) is not acceptable.
    InvalidField {
        /// The field, named as in its format's definition.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

/// What a [`Error::NotFound`] or [`Error::Exhausted`] names: the objects of
/// the core, the iommufd layer and the drivers, so that callers match on
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Object {
    /// An IOMMU instance (added to the core, or served by the driver).
    Instance,
    /// A registered device.
    Device,
    /// A domain (or, for `Exhausted`, a domain slot of the core).
    Domain,
    /// An SVA domain of one address space (one per IOMMU instance).
    SpaceDomain,
    /// A registered address space.
    Space,
    /// A device's bond to an address space.
    Bond,
    /// A user of one bond (its count).
    BondUser,
    /// Something attached at a device's PASID.
    Attachment,
    /// A PASID (below the device's width).
    Pasid,
    /// A cache tag on a domain.
    CacheTag,
    /// A fault waiting in the core's queue.
    QueuedFault,
    /// A fault object.
    FaultObject,
    /// A fault group read from a fault object, named by its cookie.
    FaultCookie,
    /// A device's virtual (guest) ID.
    VirtualId,
    /// A mapping of an IOAS.
    IoasMapping,
    /// An allowed or reserved range of an IOAS.
    IoasRange,
    /// A paging domain mirroring an IOAS.
    IoasDomain,
    /// Free I/O virtual address space of the size asked for.
    Iova,
    /// A slot for an attachment whose faults could not be flushed yet.
    UnflushedAttachment,
    /// A direct-mapped region (a DMAR RMRR) a driver records.
    DirectRegion,
}

impl Object {
    /// The object's name, as messages spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Object::Instance => "IOMMU instance",
            Object::Device => "device",
            Object::Domain => "domain",
            Object::SpaceDomain => "SVA domain of this address space",
            Object::Space => "address space",
            Object::Bond => "bond",
            Object::BondUser => "user of this bond",
            Object::Attachment => "attachment at this PASID",
            Object::Pasid => "PASID below the device's width",
            Object::CacheTag => "cache tag",
            Object::QueuedFault => "queued fault",
            Object::FaultObject => "fault object",
            Object::FaultCookie => "fault cookie",
            Object::VirtualId => "virtual ID",
            Object::IoasMapping => "mapping of this IOAS",
            Object::IoasRange => "range of this IOAS",
            Object::IoasDomain => "domain of this IOAS",
            Object::Iova => "free IOVA range of this size",
            Object::UnflushedAttachment => "attachment waiting for its faults to be flushed",
            Object::DirectRegion => "direct-mapped region",
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `InvalidField { field, value }`: a field of untrusted user data refused.
#[cfg_attr(not(any(feature = "vtd", feature = "smmuv3")), allow(dead_code))]
pub(crate) const fn invalid(field: &'static str, value: u64) -> Error {
    Error::InvalidField { field, value }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout { what } => write!(f, "timed out waiting for {what}"),
            Error::Hardware { register, value } => {
                write!(f, "hardware error: {register} = {value:#x}")
            }
            Error::Unsupported { what } => write!(f, "not supported by this IOMMU: {what}"),
            Error::Unaligned { value, align } => {
                write!(f, "{value:#x} is not aligned to {align:#x}")
            }
            Error::OutOfRange { what, value } => write!(f, "{what} out of range: {value:#x}"),
            Error::Busy { what } => write!(f, "busy: {what}"),
            Error::QueueEntry {
                register,
                entry,
                index,
            } => write!(f, "{register}: {entry} at queue index {index} refused"),
            Error::Overlap { iova } => write!(f, "already mapped at {iova:#x}"),
            Error::NotMapped { iova } => write!(f, "not mapped at {iova:#x}"),
            Error::SplitBlock { iova, size } => {
                write!(f, "range cuts the {size:#x}-byte block at {iova:#x}")
            }
            Error::NoMemory => write!(f, "out of memory for tables"),
            Error::BadPasid { pasid } => write!(f, "bad PASID {pasid:#x}"),
            Error::Exhausted { what } => write!(f, "no room for another {what}"),
            Error::NotFound { what } => write!(f, "no such {what}"),
            Error::Incompatible { what } => write!(f, "incompatible domain: {what}"),
            Error::InvalidField { field, value } => {
                write!(f, "invalid user data: {field} = {value:#x}")
            }
        }
    }
}

impl core::error::Error for Error {}
