//! Several SMMUs served by one real SMMUv3 driver (instances 0 and 1)
//! against the model: each enabled on its own, attaches and invalidations
//! of a device reaching only its own SMMU, the same StreamID on both SMMUs
//! being two devices, ASIDs and VMIDs allocated per SMMU, faults routed by
//! instance.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::Error;
use iommu::core::{DomainId, PagingFlags};
use smmu_model::*;

const SID: u32 = 0x60;

fn two() -> Rig {
    Rig::new(&[SmmuConfig::qemu(), SmmuConfig::qemu().sid_bits(8)])
}

/// Both SMMUs are enabled, each with its own tables and queues.
#[test]
fn each_smmu_is_enabled_on_its_own() {
    let rig = two();
    for i in 0..2 {
        let u = rig.unit(i);
        assert_eq!(u.cr0ack() & spec::cr0::SMMUEN, spec::cr0::SMMUEN);
        assert_eq!(count(&u.log(), "CFGI_ALL"), 1);
    }
    let base = |i: u16| rig.unit(i).reg64(spec::reg::STRTAB_BASE);
    assert_ne!(base(0), base(1));
}

/// The same StreamID behind each SMMU: attaching one device writes only
/// its SMMU's STE, and DMA through the other SMMU still aborts; unmapping
/// its domain invalidates only on its SMMU.
#[test]
fn attach_and_invalidation_reach_only_their_smmu() {
    let mut rig = two();
    let a = rig.device(0, SID, 0, false);
    let b = rig.device(1, SID, 0, false);
    let da = rig.paging(a);
    let pa = rig.map_buffer(da, 0x1000, 4096);
    rig.clear_logs();
    rig.core.attach(a, da).unwrap();
    assert!(count(&rig.unit(0).take_log(), "CFGI_STE") > 0);
    assert_eq!(rig.unit(1).take_log(), [], "nothing on the other SMMU");
    assert_eq!(rig.unit(0).dma(Req::read(SID, 0x1000)).unwrap().pa, pa);
    assert_eq!(
        rig.unit(1).dma(Req::read(SID, 0x1000)),
        Err(WalkFault::Abort("STE Config abort"))
    );

    let db = rig.paging(b);
    let pb = rig.map_buffer(db, 0x1000, 4096);
    rig.core.attach(b, db).unwrap();
    assert_eq!(rig.unit(1).dma(Req::read(SID, 0x1000)).unwrap().pa, pb);
    rig.clear_logs();
    rig.unmap(da, 0x1000, 4096);
    let (l0, l1) = (rig.unit(0).take_log(), rig.unit(1).take_log());
    assert_eq!(count(&l0, "TLBI_NH_VA"), 1);
    assert_eq!(syncs(&l0), 1);
    assert_eq!(l1, [], "the other SMMU's TLB is not touched");
    assert!(rig.unit(0).dma(Req::read(SID, 0x1000)).is_err());
    assert_eq!(rig.unit(1).dma(Req::read(SID, 0x1000)).unwrap().pa, pb);
}

/// ASIDs and VMIDs come from each SMMU's own space: the first domain of
/// each gets the same tag; freeing one leaves the other SMMU's untouched.
#[test]
fn tags_are_per_smmu() {
    let mut rig = two();
    let a = rig.device(0, SID, 0, false);
    let b = rig.device(1, SID, 0, false);
    let (da, db) = (rig.paging(a), rig.paging(b));
    assert_eq!(rig.tag(da), rig.tag(db));
    let (pa, pb) = (
        rig.core.alloc_paging(a, PagingFlags::NEST_PARENT).unwrap(),
        rig.core.alloc_paging(b, PagingFlags::NEST_PARENT).unwrap(),
    );
    assert_eq!(rig.tag(pa), rig.tag(pb));
    let before = rig.ids_in_use(1);
    rig.clear_logs();
    rig.core.free_domain(da).unwrap();
    rig.core.free_domain(pa).unwrap();
    assert_eq!(rig.ids_in_use(1), before);
    assert_eq!(rig.unit(1).take_log(), []);
    let l0 = rig.unit(0).take_log();
    assert_eq!(count(&l0, "TLBI_NH_ASID") + count(&l0, "TLBI_S12_VMALL"), 2);
}

/// A domain of one SMMU cannot be attached to a device of the other.
#[test]
fn domains_stay_on_their_smmu() {
    let mut rig = two();
    let a = rig.device(0, SID, 0, false);
    let b = rig.device(1, SID, 0, false);
    let da = rig.paging(a);
    rig.clear_logs();
    assert!(matches!(
        rig.core.attach(b, da),
        Err(Error::Incompatible { .. })
    ));
    assert_eq!(rig.unit(1).take_log(), []);
}

/// The same StreamID faulting on both SMMUs: each event goes to the domain
/// attached behind the SMMU that recorded it.
#[test]
fn faults_are_routed_by_instance() {
    let mut rig = two();
    let a = rig.device(0, SID, 0, false);
    let b = rig.device(1, SID, 0, false);
    let (da, db) = (rig.paging(a), rig.paging(b));
    rig.handled_by(da, 1);
    rig.handled_by(db, 1);
    rig.core.attach(a, da).unwrap();
    rig.core.attach(b, db).unwrap();
    assert!(rig.unit(0).dma(Req::read(SID, 0xa000)).is_err());
    assert!(rig.unit(1).dma(Req::read(SID, 0xb000)).is_err());
    assert_eq!(rig.core.process_faults().unwrap(), 2);
    let got: Vec<(DomainId, u16, u64)> = seen()
        .iter()
        .map(|(_, d, g)| (*d, g[0].instance, g[0].addr))
        .collect();
    assert_eq!(got, [(da, 0, 0xa000), (db, 1, 0xb000)]);
}
