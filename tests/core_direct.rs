//! Direct-mapped regions (VT-d RMRRs) through the core: mapped one-to-one
//! into every paging domain attached at the device's requester ID before
//! the hardware switches, kept there while the device is attached, and
//! refused when the domain maps the range elsewhere.

mod common;

use common::TestHal;
use common::mock::{Call, Mock, TestCaps, core_over};
use iommu::core::{DeviceId, DirectRegion, DomainId, Iommu, PagingFlags};
use iommu::pgtable::Prot;
use iommu::{Error, Iova, PhysAddr};

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<8, 4>>;

const DEV: DeviceId = DeviceId {
    instance: 0,
    id: 0x10,
};
const OTHER: DeviceId = DeviceId {
    instance: 0,
    id: 0x11,
};
const RMRR: DirectRegion = DirectRegion {
    base: 0x7f00_0000,
    len: 0x3000,
};
const RW: Prot = Prot::READ.union(Prot::WRITE);

fn core(pool: &TestHal) -> Box<Core<'_>> {
    let mut mock = Mock::new(1).with_pool(pool);
    mock.direct.push((DEV.id, RMRR));
    // An unaligned region is widened to whole pages.
    mock.direct.push((
        DEV.id,
        DirectRegion {
            base: 0x7f10_0800,
            len: 0x10,
        },
    ));
    core_over(pool, mock, &[(DEV, 8, false), (OTHER, 8, false)])
}

fn identity(c: &Core<'_>, dom: DomainId, start: u64, end: u64) -> bool {
    (start..end)
        .step_by(4096)
        .all(|p| c.iova_to_phys(dom, Iova(p)).unwrap() == Some(PhysAddr(p)))
}

#[test]
fn attach_maps_the_regions_one_to_one_before_the_hardware_switches() {
    let pool = TestHal::new(256);
    let mut c = core(&pool);
    let dom = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    assert!(!identity(&c, dom, 0x7f00_0000, 0x7f00_3000));
    c.attach(DEV, dom).unwrap();
    assert!(identity(&c, dom, 0x7f00_0000, 0x7f00_3000));
    assert!(identity(&c, dom, 0x7f10_0000, 0x7f10_1000));
    assert_eq!(
        c.iova_to_phys(dom, Iova(0x7f00_3000)).unwrap(),
        None,
        "no more than the region"
    );
    // Other devices get nothing.
    let other = c.alloc_paging(OTHER, PagingFlags::empty()).unwrap();
    c.attach(OTHER, other).unwrap();
    assert_eq!(c.iova_to_phys(other, Iova(0x7f00_0000)).unwrap(), None);
}

#[test]
fn regions_stay_while_attached_and_can_go_after() {
    let pool = TestHal::new(256);
    let mut c = core(&pool);
    let dom = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    c.attach(DEV, dom).unwrap();
    let busy = c.unmap_sync(dom, Iova(0x7f00_1000), 0x1000);
    assert!(matches!(busy, Err(Error::Busy { .. })), "{busy:?}");
    assert!(
        identity(&c, dom, 0x7f00_0000, 0x7f00_3000),
        "nothing was unmapped"
    );
    // Other ranges of the domain are the embedder's.
    c.map(dom, Iova(0x1000), PhysAddr(0x9000), 0x1000, RW)
        .unwrap();
    c.unmap_sync(dom, Iova(0x1000), 0x1000).unwrap();
    c.detach(DEV).unwrap();
    c.unmap_sync(dom, Iova(0x7f00_0000), 0x3000).unwrap();
}

#[test]
fn a_domain_mapping_the_range_elsewhere_is_refused_and_nothing_changes() {
    let pool = TestHal::new(256);
    let mut c = core(&pool);
    let old = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    c.attach(DEV, old).unwrap();
    let dom = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    c.map(dom, Iova(0x7f00_1000), PhysAddr(0x5000), 0x1000, RW)
        .unwrap();
    let calls = c.driver().calls.len();
    let r = c.attach(DEV, dom);
    assert_eq!(r, Err(Error::Overlap { iova: 0x7f00_1000 }));
    assert_eq!(
        c.attached(DEV, None).unwrap(),
        Some(old),
        "still on the old domain"
    );
    assert_eq!(c.driver().calls.len(), calls, "the driver saw nothing");
    assert_eq!(
        c.iova_to_phys(dom, Iova(0x7f00_0000)).unwrap(),
        None,
        "nothing added"
    );
    assert_eq!(
        c.iova_to_phys(dom, Iova(0x7f00_1000)).unwrap(),
        Some(PhysAddr(0x5000))
    );
}

#[test]
fn regions_already_mapped_one_to_one_stay_and_holes_are_filled() {
    let pool = TestHal::new(256);
    let mut c = core(&pool);
    let dom = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    c.map(dom, Iova(0x7f00_1000), PhysAddr(0x7f00_1000), 0x1000, RW)
        .unwrap();
    c.attach(DEV, dom).unwrap();
    assert!(identity(&c, dom, 0x7f00_0000, 0x7f00_3000));
}

#[test]
fn a_failed_attach_takes_the_regions_out_again() {
    let pool = TestHal::new(256);
    let mut c = core(&pool);
    let dom = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    let live = pool.counts().live_pages();
    c.driver_mut().fail_attach = Some(Error::Timeout { what: "mock" });
    assert!(c.attach(DEV, dom).is_err());
    assert_eq!(c.attached(DEV, None).unwrap(), Some(DomainId::BLOCKED));
    assert_eq!(c.iova_to_phys(dom, Iova(0x7f00_0000)).unwrap(), None);
    assert_eq!(
        pool.counts().live_pages(),
        live,
        "the tables the regions needed are freed"
    );
}

#[test]
fn pasids_identity_and_blocked_need_nothing() {
    let pool = TestHal::new(256);
    let mut c = core(&pool);
    let dom = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    let pasid = c.alloc_pasid(DEV).unwrap();
    c.attach_pasid(DEV, pasid, dom).unwrap();
    assert_eq!(
        c.iova_to_phys(dom, Iova(0x7f00_0000)).unwrap(),
        None,
        "a PASID's requests are not the RID's"
    );
    c.attach(DEV, DomainId::IDENTITY).unwrap();
    c.attach(DEV, DomainId::BLOCKED).unwrap();
}

#[test]
fn under_caching_mode_the_regions_are_invalidated_before_the_device_switches() {
    let pool = TestHal::new(256);
    let mut c = core(&pool);
    c.driver_mut().flush_on_map = true;
    let dom = c.alloc_paging(DEV, PagingFlags::empty()).unwrap();
    // Another device already translates through the domain: the new
    // mappings are invalidated through its tag, then DEV switches.
    c.attach(OTHER, dom).unwrap();
    let from = c.driver().calls.len();
    c.attach(DEV, dom).unwrap();
    let calls = &c.driver().calls[from..];
    let inv = calls
        .iter()
        .position(|k| {
            matches!(
                k,
                Call::Invalidate {
                    range: Some((0x7f00_0000, 0x7f00_3000)),
                    ..
                }
            )
        })
        .expect("the region was invalidated");
    let attach = calls
        .iter()
        .position(|k| matches!(k, Call::Attach { device, .. } if *device == DEV.id))
        .expect("DEV attached");
    assert!(inv < attach, "{calls:?}");
}
