//! Hardware drivers, one module per IOMMU architecture.

pub mod bits;
pub mod smmuv3;
pub mod vtd;
