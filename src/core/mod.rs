//! The hardware-agnostic layer: what every IOMMU driver shares.
//!
//! Built so far: the global PASID allocator ([`pasid`]) and cache tags with
//! batched invalidation ([`tags`]). Domains, attach, SVA bonds and I/O
//! page-fault routing follow.

pub mod pasid;
pub mod tags;

pub use pasid::{Pasid, PasidAllocator};
pub use tags::{CacheTag, CacheTags, TagInvalidate, TagKind};
