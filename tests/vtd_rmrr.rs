//! The VT-d driver's RMRR bookkeeping (host-tested: QEMU's DMAR has no
//! RMRR): what `add_rmrr` accepts and which devices `direct_regions` names.
//! The mapping itself is the core's (tests/core_direct.rs) and runs on
//! target with a region the test passes (vtd_dma::rmrr_*).

mod common;

use core::ptr::NonNull;

use common::TestHal;
use iommu::core::{DeviceId, DeviceInfo, DirectRegion, IommuDriver};
use iommu::drivers::vtd::driver::{MAX_RMRR_DEVICES, MAX_RMRRS, Vtd};
use iommu::{Error, Object};

fn info(id: u32) -> DeviceInfo {
    DeviceInfo {
        dev: DeviceId { instance: 3, id },
        pasid_bits: 0,
        ats: false,
    }
}

fn regions(v: &Vtd<&TestHal>, id: u32) -> Vec<DirectRegion> {
    let mut out = [DirectRegion { base: 0, len: 0 }; 8];
    let n = v.direct_regions(&info(id), &mut out);
    out[..n].to_vec()
}

#[test]
fn rmrrs_name_their_devices_and_bad_ones_are_refused() {
    let pool = TestHal::new(4);
    // A register block that is never driven here: add_unit only reads the
    // identity registers (zero).
    let regs = pool.alloc(1).unwrap();
    let mut v: Vtd<&TestHal> = Vtd::new(&pool);
    // SAFETY: a page of the pool, alive for the test, touched by nothing else.
    unsafe {
        v.add_unit(3, NonNull::new(pool.virt(regs)).unwrap())
            .unwrap()
    };
    v.add_rmrr(3, 0x7e00_0000, 0x7e00_ffff, &[0x10, 0x18])
        .unwrap();
    v.add_rmrr(3, 0x7f00_0000, 0x7f00_0fff, &[0x18]).unwrap();
    assert_eq!(
        regions(&v, 0x10),
        vec![DirectRegion {
            base: 0x7e00_0000,
            len: 0x1_0000
        }]
    );
    assert_eq!(regions(&v, 0x18).len(), 2);
    assert!(regions(&v, 0x20).is_empty());
    // Another instance's devices are not this unit's.
    let mut elsewhere = info(0x10);
    elsewhere.dev.instance = 4;
    let mut out = [DirectRegion { base: 0, len: 0 }; 8];
    assert_eq!(v.direct_regions(&elsewhere, &mut out), 0);

    let unaligned = v.add_rmrr(3, 0x7e00_0800, 0x7e00_ffff, &[1]);
    assert!(
        matches!(unaligned, Err(Error::Unaligned { .. })),
        "{unaligned:?}"
    );
    let limit = v.add_rmrr(3, 0x7e00_0000, 0x7e00_0ffe, &[1]);
    assert!(matches!(limit, Err(Error::Unaligned { .. })), "{limit:?}");
    let inverted = v.add_rmrr(3, 0x7e00_1000, 0x7e00_0fff, &[1]);
    assert!(inverted.is_err());
    let many = [0u16; MAX_RMRR_DEVICES + 1];
    assert_eq!(
        v.add_rmrr(3, 0, 0xfff, &many),
        Err(Error::Exhausted {
            what: Object::DirectRegion
        })
    );
    assert_eq!(
        v.add_rmrr(9, 0, 0xfff, &[1]),
        Err(Error::NotFound {
            what: Object::Instance
        })
    );
    for _ in 2..MAX_RMRRS {
        v.add_rmrr(3, 0, 0xfff, &[1]).unwrap();
    }
    assert_eq!(
        v.add_rmrr(3, 0, 0xfff, &[1]),
        Err(Error::Exhausted {
            what: Object::DirectRegion
        })
    );
    assert_eq!(regions(&v, 0x10).len(), 1, "refused calls changed nothing");
}
