//! The hardware-agnostic layer: what every IOMMU driver shares.
//!
//! [`Iommu`] is the core object over one [`IommuDriver`]: it owns domains
//! (Blocked, Identity, Paging over the page-table engine, Sva over a CPU page
//! table, Nested on a paging parent), per-(device, PASID) attachments, the
//! global PASID allocator ([`pasid`]), cache tags with batched invalidation
//! ([`tags`]), SVA bonds ([`sva`]), and I/O page-fault grouping and routing
//! ([`iopf`]) to each domain's handler or fault object. Nested user data and
//! user invalidation arrays go to the driver as bytes with their type tag
//! ([`user`]): each driver owns and validates its formats.

mod attach;
pub mod config;
pub mod direct;
mod domain;
pub mod driver;
mod fault;
mod fault_object;
pub mod iommu;
pub mod iopf;
mod nested;
pub mod pasid;
mod slots;
pub mod sva;
pub mod tags;
pub mod user;

pub use config::{ArrayStore, Capacities, Caps, ConstEmpty, VecStore};
pub use direct::{DirectRegion, MAX_DIRECT_REGIONS};
pub use driver::{
    DeviceId, DeviceInfo, DomainDesc, DomainHw, DomainRequest, HW_INFO_TYPE_NONE, HwInfo,
    IommuDriver, PagingFlags,
};
pub use iommu::{DomainId, DomainKind, FaultHandler, FaultObjectId, FaultTarget, Iommu, UserFault};
pub use iopf::{
    Access, Fault, FaultKind, FaultQueue, FaultResponder, FixedFaultQueue, GroupKey, Response,
};
pub use pasid::{Pasid, PasidAllocator};
pub use sva::{AddressSpace, BondId, BondInfo, CpuFormat, SpaceId};
pub use tags::{CacheTag, CacheTags, FixedCacheTags, TagInvalidate, TagKind, TagView};
pub use user::{InvalidateOutcome, UserArray, UserData, VirtualIds};
