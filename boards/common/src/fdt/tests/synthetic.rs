//! Hand-made trees: translation through buses, `iommu-map`, and errors.

use super::*;

#[test]
fn synthetic_tree() {
    let blob = synthetic(|w| {
        w.prop(
            "iommu-map",
            V::Cells(&[0x1000, 9, 0x100, 0x800, 0x1800, 7, 0, 0x800]),
        )
        .prop("iommu-map-mask", V::Cells(&[0xffff]));
    });
    let fdt = Fdt::new(&blob).unwrap();
    let p = platform(&fdt, "test").unwrap();
    assert_eq!(p.cmdline.as_str(), "a=b c");
    assert_eq!(
        p.ram.as_slice(),
        &[
            Region {
                base: 0x8000_0000,
                size: 0x4000_0000
            },
            Region {
                base: 0x8_0000_0000,
                size: 0x1000_0000
            }
        ]
    );
    // The SMMUs sit behind bus ranges 0 -> 0x1_0000_0000.
    let bases: StdVec<_> = p
        .iommus
        .iter()
        .map(|u| (u.base, u.size, u.phandle))
        .collect();
    assert_eq!(
        bases,
        [(0x1_0020_0000, 0x2_0000, 7), (0x1_0040_0000, 0x2_0000, 9)]
    );
    assert!(p.iommus.iter().all(|u| u.segment == 3));
    // 8 MiB of ECAM covers 8 buses: 0x10..=0x17.
    assert_eq!(
        p.ecam.as_slice(),
        &[Ecam {
            base: 0x4000_0000,
            segment: 3,
            bus_start: 0x10,
            bus_end: 0x17
        }]
    );
    assert_eq!(
        p.windows.as_slice(),
        &[
            PciWindow {
                kind: WindowKind::Mem32,
                prefetchable: true,
                cpu_base: 0x2000_0000,
                pci_base: 0x2000_0000,
                size: 0x1000_0000,
                segment: 3
            },
            PciWindow {
                kind: WindowKind::Mem64,
                prefetchable: true,
                cpu_base: 0x10_0000_0000,
                pci_base: 0x2_0000_0000,
                size: 0x4000_0000,
                segment: 3
            }
        ]
    );
    assert_eq!(
        p.rid_maps.as_slice(),
        &[
            RidMap {
                segment: 3,
                rid_base: 0x1000,
                iommu: 1,
                sid_base: 0x100,
                len: 0x800
            },
            RidMap {
                segment: 3,
                rid_base: 0x1800,
                iommu: 0,
                sid_base: 0,
                len: 0x800
            }
        ]
    );
    assert_eq!(address_limit(&fdt).unwrap(), 0x10_4000_0000);
}

#[test]
fn discovery_errors() {
    let err =
        |f: &dyn Fn(&mut Writer)| platform(&Fdt::new(&synthetic(f)).unwrap(), "t").unwrap_err();
    assert_eq!(
        err(&|w| {
            w.prop("iommu-map", V::Cells(&[0, 8, 0, 0x100]));
        }),
        Error::UnknownPhandle(8)
    );
    assert_eq!(
        err(&|w| {
            w.prop("iommu-map", V::Cells(&[0, 7, 0, 0x100]))
                .prop("iommu-map-mask", V::Cells(&[0xff00]));
        }),
        Error::Unsupported("iommu-map-mask")
    );
    assert_eq!(
        err(&|w| {
            w.prop("iommu-map", V::Cells(&[0, 7, 0]));
        }),
        Error::BadProperty("iommu-map")
    );
    assert_eq!(
        err(&|w| {
            w.prop("bus-range", V::Cells(&[5]));
        }),
        Error::BadProperty("bus-range")
    );
    // A property after a subnode is a structure error.
    assert!(matches!(
        err(&|w| {
            w.begin("child").end().prop("late", V::Cells(&[1]));
        }),
        Error::BadStructure(_)
    ));
}

#[test]
fn structure_errors() {
    // Unbalanced: the root is never closed.
    let mut w = Writer::default();
    w.begin("").begin("a").end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    assert!(matches!(
        fdt.nodes().last(),
        Some(Err(Error::BadStructure(_)))
    ));

    // Too deep.
    let mut w = Writer::default();
    for _ in 0..=MAX_DEPTH {
        w.begin("n");
    }
    for _ in 0..=MAX_DEPTH {
        w.end();
    }
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.nodes().last().unwrap().unwrap_err(), Error::TooDeep);

    // A property name outside the strings block.
    let mut w = Writer::default();
    w.begin("").prop("x", V::Cells(&[1])).end();
    let mut blob = w.finish();
    let off_struct = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    // begin token + "\0" padded (4) + prop token + len => nameoff at +16
    blob[off_struct + 16..off_struct + 20].copy_from_slice(&0x1000u32.to_be_bytes());
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.root().unwrap_err(), Error::BadString(0x1000));

    // An empty tree has no root.
    let blob = Writer::default().finish();
    let fdt = Fdt::new(&blob).unwrap();
    assert!(matches!(fdt.root(), Err(Error::BadStructure(0))));

    // A cmdline longer than Platform holds.
    let long = "x".repeat(300);
    let mut w = Writer::default();
    w.begin("")
        .begin("chosen")
        .prop("bootargs", V::Str(&long))
        .end()
        .end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::TooMany("cmdline"));
}
