//! The DTBs QEMU builds for virt with an SMMUv3, and damaged copies of them.

use super::*;

#[test]
fn qemu_virt_smmuv3() {
    let fdt = Fdt::new(VIRT).unwrap();
    let p = platform(&fdt, "virt").unwrap();
    assert_eq!(p.board, "virt");
    assert_eq!(p.cmdline.as_str(), "iommu.profile=virt-nested");
    assert_eq!(
        p.ram.as_slice(),
        &[Region {
            base: 0x4000_0000,
            size: 0x1000_0000
        }]
    );
    assert_eq!(
        p.ecam.as_slice(),
        &[Ecam {
            base: 0x40_1000_0000,
            segment: 0,
            bus_start: 0,
            bus_end: 255
        }]
    );
    assert_eq!(p.windows.as_slice(), &windows(0));
    assert_eq!(p.iommus.len(), 1);
    let smmu = &p.iommus[0];
    assert_eq!(smmu.kind, IommuKind::SmmuV3);
    assert_eq!((smmu.base, smmu.size), (0x905_0000, 0x2_0000));
    assert_eq!((smmu.segment, smmu.include_all), (0, false));
    assert!(smmu.scopes.is_empty());
    assert_ne!(smmu.phandle, 0);
    assert_eq!(
        p.rid_maps.as_slice(),
        &[RidMap {
            segment: 0,
            rid_base: 0,
            iommu: 0,
            sid_base: 0,
            len: 0x1_0000
        }]
    );
    assert!(p.rmrrs.is_empty() && p.atsrs.is_empty());
    assert_eq!(p.dmar_haw, 0);
    // The high PCIe MMIO window ends the address space.
    assert_eq!(address_limit(&fdt).unwrap(), 0x100_0000_0000);
    let node = fdt.find_phandle(smmu.phandle).unwrap().unwrap();
    assert_eq!(node.name(), "smmuv3@9050000");
    assert_eq!(node.base_name(), "smmuv3");
}

#[test]
fn qemu_virt_low_ecam_3g() {
    let fdt = Fdt::new(VIRT_LOW_ECAM_3G).unwrap();
    let p = platform(&fdt, "virt").unwrap();
    assert_eq!(p.cmdline.as_str(), "iommu.profile=virt-s1 quiet");
    assert_eq!(
        p.ram.as_slice(),
        &[Region {
            base: 0x4000_0000,
            size: 0xc000_0000
        }]
    );
    assert_eq!(
        p.ecam.as_slice(),
        &[Ecam {
            base: 0x3f00_0000,
            segment: 0,
            bus_start: 0,
            bus_end: 15
        }]
    );
    assert_eq!(p.windows.as_slice(), &windows(0));
    assert_eq!(p.rid_maps.len(), 1);
}

#[test]
fn header_errors() {
    assert_eq!(Fdt::new(&[]).unwrap_err(), Error::Truncated);
    let mut bad = VIRT.to_vec();
    bad[0] = 0;
    assert_eq!(Fdt::new(&bad).unwrap_err(), Error::BadMagic(0x000d_feed));
    assert_eq!(
        Fdt::new(&VIRT[..VIRT.len() - 1]).unwrap_err(),
        Error::Truncated
    );
    assert_eq!(Fdt::total_size(VIRT).unwrap(), VIRT.len());
    let mut old = VIRT.to_vec();
    old[20..24].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(
        Fdt::new(&old).unwrap_err(),
        Error::UnsupportedVersion(2, 16)
    );
    let mut off = VIRT.to_vec();
    off[8..12].copy_from_slice(&0x10_0000u32.to_be_bytes());
    assert_eq!(Fdt::new(&off).unwrap_err(), Error::BadHeader);
    // A longer buffer than the tree is fine.
    let mut long = VIRT.to_vec();
    long.extend_from_slice(&[0xff; 64]);
    assert!(platform(&Fdt::new(&long).unwrap(), "virt").is_ok());
}

#[test]
fn corrupt_structure_is_an_error_not_a_panic() {
    // Flip every byte of the structure block in turn: parsing must
    // return (Ok or Err), never panic or loop.
    let fdt_off = u32::from_be_bytes(VIRT[8..12].try_into().unwrap()) as usize;
    for i in (fdt_off..fdt_off + 2048).step_by(3) {
        let mut b = VIRT.to_vec();
        b[i] ^= 0xa5;
        if let Ok(fdt) = Fdt::new(&b) {
            let _ = platform(&fdt, "virt");
            let _ = address_limit(&fdt);
        }
    }
    // Truncating the structure block is reported.
    let mut b = VIRT.to_vec();
    let size_struct = u32::from_be_bytes(b[36..40].try_into().unwrap());
    b[36..40].copy_from_slice(&(size_struct - 8).to_be_bytes());
    let fdt = Fdt::new(&b).unwrap();
    assert!(matches!(
        platform(&fdt, "virt"),
        Err(Error::BadStructure(_))
    ));
}
