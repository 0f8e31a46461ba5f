//! Hardware drivers, one module per IOMMU architecture.

pub mod smmuv3;
pub mod vtd;
