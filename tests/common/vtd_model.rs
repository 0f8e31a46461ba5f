//! A model of a VT-d remapping unit for host tests of the real driver
//! (`iommu::drivers::vtd`): a memory-backed register block with an emulator
//! thread behind it that behaves like the hardware (GCMD → GSTS, the
//! invalidation queue with its errors, fault records, the page request
//! queue), translation caches that the driver's invalidations must empty,
//! and a translation walker written from the specification, independent of
//! the driver's field definitions.
//!
//! Test files include it with `#[path = "common/vtd_model.rs"] mod vtd_model;`.

#![allow(dead_code, unused_imports)]

#[path = "vtd_model/cache.rs"]
pub mod cache;
#[path = "vtd_model/emu.rs"]
pub mod emu;
#[path = "vtd_model/fake.rs"]
pub mod fake;
#[path = "fault_log.rs"]
pub mod faults;
#[path = "model_hal.rs"]
pub mod hal;
#[path = "vtd_model/inv.rs"]
pub mod inv;
#[path = "vtd_model/report.rs"]
pub mod report;
#[path = "vtd_model/request.rs"]
pub mod request;
#[path = "vtd_model/rig.rs"]
pub mod rig;
#[path = "vtd_model/spec.rs"]
pub mod spec;
#[path = "model_unit.rs"]
pub mod unit;
#[path = "vtd_model/walk.rs"]
pub mod walk;

pub use emu::{Event, QueueFault};
pub use fake::{FakeUnit, invs, invs_no_waits, waits};
pub use faults::seen;
pub use hal::ModelHal;
pub use inv::{CcScope, DevRange, Inv, IotlbScope, PcScope, PiotlbScope};
pub use report::{FaultRec, PageReq};
pub use rig::{Core, Rig, VtdCaps};
pub use spec::UnitConfig;
pub use walk::{Ctx, Kind, PasidEnt, Req, Translated, WalkFault};
