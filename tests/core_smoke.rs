//! Smoke test of the core over the mock driver.

mod common;

use common::TestHal;
use common::mock::{Call, Mock, Seen};
use iommu::core::{DeviceId, DeviceInfo, DomainId, Iommu, PagingFlags};
use iommu::pgtable::Prot;

#[test]
fn attach_map_unmap_sync() {
    let pool = TestHal::new(256);
    let mut core: Box<Iommu<Mock, &TestHal, 8, 8>> =
        Box::new(Iommu::new(Mock::new(2).with_pool(&pool), &pool));
    core.add_instance(0).unwrap();
    let dev = DeviceId {
        instance: 0,
        id: 0x10,
    };
    core.register_device(DeviceInfo {
        dev,
        pasid_bits: 8,
        ats: false,
    })
    .unwrap();
    let d = core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    core.attach(dev, d).unwrap();
    core.map(d, 0x10_0000, 0x20_0000, 0x1000, Prot::READ | Prot::WRITE)
        .unwrap();
    assert_eq!(core.iova_to_phys(d, 0x10_0000).unwrap(), Some(0x20_0000));
    core.driver_mut().clear();
    core.unmap_sync(d, 0x10_0000, 0x1000).unwrap();
    assert_eq!(core.driver().waits(), vec![0]);
    core.detach(dev).unwrap();
    assert!(matches!(
        core.driver().calls.last(),
        Some(Call::Attach {
            new: Seen::Blocked,
            ..
        })
    ));
    assert_eq!(core.attached(dev, None).unwrap(), Some(DomainId::BLOCKED));
    core.free_domain(d).unwrap();
    assert!(core.driver().live.is_empty());
    drop(core);
    assert_eq!(pool.counts().live_pages(), 0);
}
