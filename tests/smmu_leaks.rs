//! Leak loops of the real SMMUv3 driver and the real core against the
//! model: attach / replace / Identity / stage 2 / PASID / detach cycles and
//! map / unmap / sync iterations leave the pages, ASIDs and VMIDs as they
//! were, and the model's caches hold nothing of what was torn down.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::core::{DeviceId, DomainId};
use smmu_model::*;

const SID: u32 = 0x70;
const PASID_SID: u32 = 0x71;

/// One cycle over every kind of attachment; every domain freed at the end.
fn cycle(rig: &mut Rig, dev: DeviceId, pdev: DeviceId, pa: u64) {
    let (a, b, p) = (rig.paging(dev), rig.paging(dev), rig.parent(dev));
    rig.core
        .map(a, iommu::Iova(0x1000), iommu::PhysAddr(pa), 4096, RW)
        .unwrap();
    rig.core.attach(dev, a).unwrap();
    assert_eq!(rig.unit(0).dma(Req::read(SID, 0x1000)).unwrap().pa, pa);
    rig.core.attach(dev, b).unwrap();
    rig.core.attach(dev, DomainId::IDENTITY).unwrap();
    rig.core.attach(dev, p).unwrap();
    rig.core.detach(dev).unwrap();

    let c = rig.paging(pdev);
    let pasid = rig.core.alloc_pasid(pdev).unwrap();
    rig.core.attach(pdev, c).unwrap();
    rig.core.attach_pasid(pdev, pasid, c).unwrap();
    rig.core.detach_pasid(pdev, pasid).unwrap();
    rig.core.free_pasid(pasid).unwrap();
    rig.core.detach(pdev).unwrap();

    rig.unmap(a, 0x1000, 4096);
    for d in [a, b, p, c] {
        rig.core.free_domain(d).unwrap();
    }
}

/// 100 cycles: after the first (which makes the level-2 stream table and
/// the devices' CD tables, kept for their lifetime) the live pages, ASIDs
/// and VMIDs stay exactly where they were.
#[test]
fn attach_cycles_leave_nothing() {
    let mut rig = Rig::new(&[SmmuConfig::qemu().ssid_bits(8)]);
    let dev = rig.device(0, SID, 0, false);
    let pdev = rig.device(0, PASID_SID, 8, false);
    let ids = rig.ids_in_use(0);
    let buf = rig.hal.page();
    cycle(&mut rig, dev, pdev, buf);
    let pages = rig.hal.live_pages();
    assert_eq!(rig.ids_in_use(0), ids);
    for _ in 0..99 {
        cycle(&mut rig, dev, pdev, buf);
    }
    assert_eq!(rig.hal.live_pages(), pages);
    assert_eq!(rig.ids_in_use(0), ids);
    assert_eq!(
        rig.unit(0).dma(Req::read(SID, 0x1000)),
        Err(WalkFault::Abort("STE Config abort"))
    );
}

/// 10,000 map / DMA / unmap / sync iterations of varied sizes: the table
/// pages come back, each unmapped page faults after its sync, and the TLB
/// does not grow.
#[test]
fn map_unmap_iterations_leave_nothing() {
    let mut rig = Rig::qemu();
    let dev = rig.device(0, SID, 0, false);
    let d = rig.paging(dev);
    rig.core.attach(dev, d).unwrap();
    let buf = rig.map_buffer(d, 0x10_0000, 16 * 4096);
    rig.unmap(d, 0x10_0000, 16 * 4096);
    let pages = rig.hal.live_pages();
    let ids = rig.ids_in_use(0);
    for i in 0..10_000u64 {
        let n = [1u64, 2, 16][(i % 3) as usize];
        let iova = 0x4000_0000 + (i % 64) * 0x20_0000 + (i % 7) * 4096;
        rig.core
            .map(d, iommu::Iova(iova), iommu::PhysAddr(buf), n * 4096, RW)
            .unwrap();
        let last = iova + (n - 1) * 4096;
        assert_eq!(
            rig.unit(0).dma(Req::write(SID, last)).unwrap().pa,
            buf + (n - 1) * 4096
        );
        rig.unmap(d, iova, n * 4096);
        assert!(rig.unit(0).dma(Req::write(SID, last)).is_err());
    }
    assert_eq!(rig.hal.live_pages(), pages);
    assert_eq!(rig.ids_in_use(0), ids);
    assert_eq!(rig.unit(0).cache_sizes().2, 0, "nothing left in the TLB");
}
