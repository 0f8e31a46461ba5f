//! The example's VT-d half on the host, against the crate's model of a
//! VT-d unit (`tests/common/vtd_model.rs`): the same calls the bare-metal
//! program makes, with the model's register block and memory in place of
//! the machine's.

#[path = "../../../tests/common/vtd_model.rs"]
mod vtd_model;

use iommu::core::{DomainId, Iommu};
use iommu::drivers::vtd::driver::Vtd;
use iommu_porting::{Dmar, Drhd, PortCaps, Rmrr, service_faults, translate, vtd_bring_up};
use vtd_model::report::FaultRec;
use vtd_model::request::Req;
use vtd_model::{FakeUnit, ModelHal, UnitConfig};

type Core = Iommu<Vtd<ModelHal>, ModelHal, PortCaps>;

/// A DMAR as a firmware reader hands it over: one DRHD naming 00:02.0 in
/// a device scope, an RMRR for it.
const DMAR: Dmar<'static> = Dmar {
    drhds: &[Drhd {
        base: 0xfed9_0000,
        size: 0x1000,
        segment: 0,
        include_pci_all: false,
        source_ids: &[0x0010],
    }],
    rmrrs: &[Rmrr {
        drhd: 0,
        base: 0x000e_0000,
        limit: 0x000e_ffff,
        source_ids: &[0x0010],
    }],
};

fn up(hal: &ModelHal, unit: &FakeUnit) -> Box<Core> {
    let mut core = Box::new(Iommu::new(Vtd::new(hal.clone()), hal.clone()));
    // SAFETY: the model's register block lives as long as `unit`, which
    // every test drops after the core.
    unsafe { vtd_bring_up(&mut core, &DMAR, |_, _| Some(unit.base()), 1 << 32) }.unwrap();
    core
}

/// DMAR → `Vtd` → core → a device translating through a paging domain,
/// checked by the model's own walker; the RMRR is mapped one-to-one.
#[test]
fn dmar_to_translated_dma() {
    for config in [UnitConfig::legacy(), UnitConfig::scalable()] {
        let hal = ModelHal::new();
        let unit = FakeUnit::new(&hal, config);
        let mut core = up(&hal, &unit);
        let dev = DMAR.device(0, 0x0010).expect("named by the scope");
        assert_eq!(DMAR.device(0, 0x0018), None, "no INCLUDE_PCI_ALL unit");
        let dom = translate(&mut core, dev, 0x1000_0000, 0x8000_0000, 0x1000).unwrap();
        let t = unit.walk(Req::read(0x0010, 0x1000_0234)).unwrap();
        assert_eq!(t.pa, 0x8000_0234);
        let rmrr = unit.walk(Req::read(0x0010, 0x000e_0040)).unwrap();
        assert_eq!(rmrr.pa, 0x000e_0040, "RMRR one-to-one");
        assert!(
            unit.walk(Req::read(0x0018, 0x1000_0000)).is_err(),
            "others blocked"
        );
        core.detach(dev).unwrap();
        core.free_domain(dom).unwrap();
        core.remove_device(dev).unwrap();
        drop(core);
    }
}

/// A fault reaches the handler inside `process_faults`; the work it queued
/// (blocking the device) happens after, in `service_faults`.
#[test]
fn a_fault_blocks_the_device_after_process_faults() {
    let hal = ModelHal::new();
    let unit = FakeUnit::new(&hal, UnitConfig::legacy());
    let mut core = up(&hal, &unit);
    let dev = DMAR.device(0, 0x0010).unwrap();
    translate(&mut core, dev, 0x1000_0000, 0x8000_0000, 0x1000).unwrap();
    unit.inject_fault(FaultRec {
        sid: 0x0010,
        addr: 0x2000_0000,
        pasid: None,
        reason: 0x6,
        write: true,
        exec: false,
        privileged: false,
    })
    .unwrap();
    assert_eq!(service_faults(&mut core).unwrap(), 1);
    assert_eq!(core.attached(dev, None).unwrap(), Some(DomainId::BLOCKED));
    assert!(unit.walk(Req::read(0x0010, 0x1000_0000)).is_err());
    drop(core);
}
