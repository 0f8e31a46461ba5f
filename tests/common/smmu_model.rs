//! A model of an Arm SMMUv3 for host tests of the real driver
//! (`iommu::drivers::smmuv3`): the architecture's layouts read from the
//! specification (STEs, CDs, commands, event records), an independent
//! walker (stream table → STE → CD → stage-1 / stage-2 tables, nested) and
//! configuration caches with a TLB that the driver's commands must empty.
//!
//! Test files include it with `#[path = "common/smmu_model.rs"] mod smmu_model;`.

#![allow(dead_code, unused_imports)]

#[path = "smmu_model/cache.rs"]
pub mod cache;
#[path = "smmu_model/cmdq.rs"]
pub mod cmdq;
#[path = "smmu_model/entry.rs"]
pub mod entry;
#[path = "model_hal.rs"]
pub mod hal;
#[path = "smmu_model/request.rs"]
pub mod request;
#[path = "smmu_model/spec.rs"]
pub mod spec;
#[path = "smmu_model/walk.rs"]
pub mod walk;

pub use cmdq::{Cmd, TlbiAddr};
pub use entry::{Cd, Ste};
pub use hal::ModelHal;
pub use request::{EventRec, Kind, Perm, Req, Translated, WalkFault};
pub use spec::{SmmuConfig, StallModel, evt};
