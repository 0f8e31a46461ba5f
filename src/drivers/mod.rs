//! Hardware drivers, one module per IOMMU architecture.

pub mod bits;
#[cfg(feature = "smmuv3")]
pub mod smmuv3;
#[cfg(feature = "vtd")]
pub mod vtd;
