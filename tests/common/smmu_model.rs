//! A model of an Arm SMMUv3 for host tests of the real driver
//! (`iommu::drivers::smmuv3`): a memory-backed register block (page 0 and
//! page 1) with an emulator thread behind it that behaves like the hardware
//! (GBPA, CR0 → CR0ACK, GERROR / GERRORN, the command queue with its
//! errors, event and PRI queues with their overflow), configuration caches
//! and a TLB that the driver's commands must empty, an independent walker
//! (stream table → STE → CD → stage-1 / stage-2 tables, nested), and a
//! watch over every entry the driver rewrites.
//!
//! Test files include it with `#[path = "common/smmu_model.rs"] mod smmu_model;`.

#![allow(dead_code, unused_imports)]

#[path = "smmu_model/cache.rs"]
pub mod cache;
#[path = "smmu_model/cmdq.rs"]
pub mod cmdq;
#[path = "smmu_model/emu.rs"]
pub mod emu;
#[path = "smmu_model/entry.rs"]
pub mod entry;
#[path = "smmu_model/fake.rs"]
pub mod fake;
#[path = "fault_log.rs"]
pub mod faults;
#[path = "model_hal.rs"]
pub mod hal;
#[path = "smmu_model/records.rs"]
pub mod records;
#[path = "smmu_model/request.rs"]
pub mod request;
#[path = "smmu_model/rig.rs"]
pub mod rig;
#[path = "smmu_model/spec.rs"]
pub mod spec;
#[path = "model_unit.rs"]
pub mod unit;
#[path = "smmu_model/walk.rs"]
pub mod walk;
#[path = "smmu_model/watch.rs"]
pub mod watch;

pub use cmdq::{Cmd, TlbiAddr};
pub use emu::{Event, Knobs, Queue};
pub use entry::{Cd, Ste};
pub use fake::{FakeSmmu, cmds, cmds_no_syncs, count, syncs};
pub use faults::seen;
pub use hal::ModelHal;
pub use records::PriReq;
pub use request::{EventRec, Kind, Perm, Req, Translated, WalkFault};
pub use rig::{Core, RW, Rig, SmmuCaps, vste};
pub use spec::{SmmuConfig, StallModel, evt};
pub use watch::{Change, Changes, Entry};
