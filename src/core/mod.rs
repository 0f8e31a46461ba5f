//! The hardware-agnostic layer: what every IOMMU driver shares.
//!
//! Built so far: the global PASID allocator ([`pasid`]). Domains, attach,
//! cache tags, SVA bonds and I/O page-fault routing follow.

pub mod pasid;

pub use pasid::{Pasid, PasidAllocator};
