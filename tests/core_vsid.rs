//! Virtual device IDs: SMMUv3 user invalidations that name a device reach
//! only devices of the same guest (nest parent), under their real IDs.

mod common;

use common::TestHal;
use common::mock::{Call, Mock, NestedCaps, SMMU_CMD, SMMU_STE, TestCaps, UserInv, core_over};
use iommu::core::{DeviceId, DomainId, Iommu, PagingFlags};
use iommu::drivers::smmuv3::user::{SmmuV3Inv, SmmuV3SteCaps};
use iommu::{Error, Object};

type Core<'a> = Iommu<Mock<'a>, &'a TestHal, TestCaps<16, 16>>;

const A: DeviceId = DeviceId {
    instance: 0,
    id: 0x100,
};
const B: DeviceId = DeviceId {
    instance: 0,
    id: 0x200,
};
const X: DeviceId = DeviceId {
    instance: 1,
    id: 0x100,
};

fn core(pool: &TestHal) -> Box<Core<'_>> {
    let mut mock = Mock::new(2).with_pool(pool);
    mock.nested = Some(NestedCaps::SmmuV3(SmmuV3SteCaps {
        ssid_bits: 16,
        oas_bits: 44,
        two_level_cd: true,
    }));
    core_over(pool, mock, &[A, B, X].map(|dev| (dev, 16, true)))
}

/// A valid stage-1 vSTE: V, CFG = S1 translate, a CD table pointer.
fn vste() -> [u8; 16] {
    let w0: u64 = 1 | (0b101 << 1) | 0x8000_0040;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w0.to_le_bytes());
    b
}

fn commands(cmds: &[SmmuV3Inv]) -> Vec<u8> {
    cmds.iter().flat_map(|c| c.to_bytes()).collect()
}

/// The user invalidations the driver received.
fn received(c: &Core<'_>) -> Vec<SmmuV3Inv> {
    c.driver()
        .calls
        .iter()
        .filter_map(|k| match k {
            Call::InvalidateUser {
                inv: UserInv::SmmuV3(i),
                ..
            } => Some(*i),
            _ => None,
        })
        .collect()
}

/// Two guests on instance 0: parent `p1` with a nested domain, A known as
/// virtual SID 7; parent `p2`, B known as virtual SID 9.
fn two_guests(c: &mut Core<'_>) -> (DomainId, DomainId, DomainId) {
    let p1 = c.alloc_paging(A, PagingFlags::NEST_PARENT).unwrap();
    let p2 = c.alloc_paging(B, PagingFlags::NEST_PARENT).unwrap();
    let n1 = c.alloc_nested(A, p1, SMMU_STE, &vste()).unwrap();
    c.attach(A, n1).unwrap();
    c.set_virtual_id(A, p1, 7).unwrap();
    c.set_virtual_id(B, p2, 9).unwrap();
    (p1, p2, n1)
}

#[test]
fn commands_naming_a_device_reach_its_real_id_and_only_the_same_guest() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (_, _, n1) = two_guests(&mut c);
    c.driver_mut().clear();
    let cmds = [
        SmmuV3Inv::CfgiCd {
            sid: 7,
            ssid: 3,
            leaf: true,
        },
        SmmuV3Inv::AtcInv {
            sid: 7,
            ssid: None,
            addr: 0,
            size: 52,
            global: false,
        },
        SmmuV3Inv::TlbiNhAll,
        // B's virtual SID, but B belongs to the other guest.
        SmmuV3Inv::CfgiCdAll { sid: 9 },
        SmmuV3Inv::CfgiCdAll { sid: 7 },
    ];
    let out = c
        .invalidate_user(n1, SMMU_CMD, &commands(&cmds), 16, cmds.len())
        .unwrap();
    assert_eq!(out.handled, 3);
    assert_eq!(
        out.error,
        Some((
            3,
            Error::InvalidField {
                field: "cmd[0].SID",
                value: 9
            }
        ))
    );
    assert_eq!(
        received(&c),
        vec![
            SmmuV3Inv::CfgiCd {
                sid: A.id,
                ssid: 3,
                leaf: true
            },
            SmmuV3Inv::AtcInv {
                sid: A.id,
                ssid: None,
                addr: 0,
                size: 52,
                global: false
            },
            SmmuV3Inv::TlbiNhAll,
        ]
    );
    // One wait for what was queued.
    assert_eq!(c.driver().waits(), vec![0]);
}

#[test]
fn a_virtual_id_nobody_has_is_refused_before_the_driver_sees_it() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (_, _, n1) = two_guests(&mut c);
    c.driver_mut().clear();
    let cmds = [SmmuV3Inv::CfgiCdAll { sid: 0x100 }];
    let out = c
        .invalidate_user(n1, SMMU_CMD, &commands(&cmds), 16, 1)
        .unwrap();
    assert_eq!(out.handled, 0);
    assert_eq!(
        out.error,
        Some((
            0,
            Error::InvalidField {
                field: "cmd[0].SID",
                value: 0x100
            }
        ))
    );
    assert!(c.driver().calls.is_empty(), "{:?}", c.driver().calls);
}

#[test]
fn set_virtual_id_refusals_change_nothing() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (p1, p2, n1) = two_guests(&mut c);
    let plain = c.alloc_paging(A, PagingFlags::empty()).unwrap();
    let px = c.alloc_paging(X, PagingFlags::NEST_PARENT).unwrap();
    c.clear_virtual_id(B).unwrap();
    let before = [A, B, X].map(|d| c.virtual_id(d).unwrap());
    let cases = [
        (
            B,
            p1,
            7,
            Error::Busy {
                what: "virtual ID already used under this parent",
            },
        ),
        (
            A,
            p2,
            1,
            Error::Busy {
                what: "device already has a virtual ID",
            },
        ),
        (
            B,
            plain,
            1,
            Error::Incompatible {
                what: "parent is not a nest-parent paging domain",
            },
        ),
        (
            B,
            n1,
            1,
            Error::Incompatible {
                what: "parent is not a nest-parent paging domain",
            },
        ),
        (
            B,
            DomainId::IDENTITY,
            1,
            Error::Incompatible {
                what: "parent is not a nest-parent paging domain",
            },
        ),
        (
            B,
            px,
            1,
            Error::Incompatible {
                what: "parent belongs to another IOMMU instance",
            },
        ),
        (
            DeviceId {
                instance: 0,
                id: 0x999,
            },
            p1,
            1,
            Error::NotFound {
                what: Object::Device,
            },
        ),
    ];
    for (dev, parent, vid, err) in cases {
        assert_eq!(
            c.set_virtual_id(dev, parent, vid),
            Err(err),
            "{dev:?} {vid}"
        );
        assert_eq!([A, B, X].map(|d| c.virtual_id(d).unwrap()), before);
    }
    assert_eq!(
        c.clear_virtual_id(B),
        Err(Error::NotFound {
            what: Object::VirtualId
        })
    );
    // The same virtual ID under another parent is another guest's: fine.
    c.set_virtual_id(B, p2, 7).unwrap();
    assert_eq!(c.virtual_id(B).unwrap(), Some((p2, 7)));
}

#[test]
fn freeing_the_parent_forgets_its_virtual_ids() {
    let pool = TestHal::new(64);
    let mut c = core(&pool);
    let (p1, p2, n1) = two_guests(&mut c);
    c.detach(A).unwrap();
    c.free_domain(n1).unwrap();
    c.free_domain(p1).unwrap();
    assert_eq!(c.virtual_id(A).unwrap(), None);
    assert_eq!(c.virtual_id(B).unwrap(), Some((p2, 9)));
    // A can be given an ID under another parent now.
    c.set_virtual_id(A, p2, 7).unwrap();
}
