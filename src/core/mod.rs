//! The hardware-agnostic layer: what every IOMMU driver shares.
//!
//! Built so far: the global PASID allocator ([`pasid`]), cache tags with
//! batched invalidation ([`tags`]) and the I/O page-fault group queue
//! ([`iopf`]); nested user data and user invalidation arrays are validated
//! in [`nested`]. The driver trait, domains, attach (which routes faults to
//! the attached domain's handler), SVA bonds and iommufd objects follow.

pub mod iopf;
pub mod nested;
pub mod pasid;
pub mod tags;

pub use iopf::{Access, Fault, FaultKind, FaultQueue, FaultResponder, Response};
pub use nested::{NestedCaps, NestedConfig, NestedDataType, UserInv};
pub use pasid::{Pasid, PasidAllocator};
pub use tags::{CacheTag, CacheTags, TagInvalidate, TagKind};
