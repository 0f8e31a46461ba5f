//! AML PkgLength, `_CRS` buffers, resource templates and host-bridge windows.

use super::*;
use crate::acpi::aml::pkg_length;

#[test]
fn pkg_length_encodings() {
    assert_eq!(pkg_length(&[0x3f]), Some((63, 1)));
    assert_eq!(pkg_length(&[0x45, 0x12]), Some((0x125, 2)));
    assert_eq!(pkg_length(&[0x81, 0x23, 0x01]), Some((0x1231, 3)));
    assert_eq!(pkg_length(&[0xc2, 0x01, 0x02, 0x03]), Some((0x302012, 4)));
    assert_eq!(pkg_length(&[0x50, 0x12]), None); // reserved bits set
    assert_eq!(pkg_length(&[0x81, 0x23]), None); // cut
    assert_eq!(pkg_length(&[]), None);
}

#[test]
fn resource_template_decoding() {
    let t = host_bridge_template();
    let rs: StdVec<_> = resources(&t).collect::<Result<_, _>>().unwrap();
    assert_eq!(rs.len(), 8);
    assert_eq!(rs[1], Resource::Small(8)); // I/O port descriptor
    let Resource::Address(q) = rs[7] else {
        panic!()
    };
    assert_eq!(
        (q.kind, q.min, q.max, q.translation, q.size()),
        (0, 1 << 32, 0x8_ffff_ffff, 1 << 36, 0x8_0000_0000)
    );
    assert!(q.prefetchable());
    // Cut inside a large item.
    let cut = &t[..t.len() - 10];
    assert!(resources(cut).any(|r| matches!(r, Err(Error::Truncated { .. }))));
    // Extended address space descriptor.
    let mut e = vec![0x8b, 53, 0, 0, 0x0c, 0x06, 1, 0];
    for v in [0u64, 0x2000_0000, 0x2fff_ffff, 0, 0x1000_0000, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    let Some(Ok(Resource::Address(a))) = resources(&e).next() else {
        panic!()
    };
    assert_eq!(
        (a.min, a.max, a.len),
        (0x2000_0000, 0x2fff_ffff, 0x1000_0000)
    );
    assert!(a.prefetchable()); // type flags 0x06: MEM = 3
}

#[test]
fn host_bridge_from_dsdt() {
    let dsdt = sdt(b"DSDT", 1, &dsdt_aml());
    let mut w: Vec<PciWindow, 8> = Vec::new();
    host_bridge_windows(&dsdt, 0, &mut w).unwrap();
    let io = |b: u64, s: u64| PciWindow {
        kind: WindowKind::Io,
        prefetchable: false,
        cpu_base: b,
        pci_base: b,
        size: s,
        segment: 0,
    };
    assert_eq!(
        &w[..],
        &[
            io(0, 0xcf8),
            io(0xd00, 0xf300),
            PciWindow {
                kind: WindowKind::Mem32,
                prefetchable: false,
                cpu_base: 0x8000_0000,
                pci_base: 0x8000_0000,
                size: 0x3000_0000,
                segment: 0
            },
            PciWindow {
                kind: WindowKind::Mem64,
                prefetchable: true,
                cpu_base: 0x11_0000_0000,
                pci_base: 0x1_0000_0000,
                size: 0x8_0000_0000,
                segment: 0
            },
        ]
    );
    // Only the expander bridge: it is taken.
    let mut pxb = word_as(2, 0, 0x80, 0x8f, 0);
    pxb.extend(dword_as(0, 0x03, 0xc000_0000, 0xc0ff_ffff, 0));
    pxb.extend(END_TAG);
    let dsdt = sdt(b"DSDT", 1, &name_crs_buffer(&pxb));
    let mut w: Vec<PciWindow, 8> = Vec::new();
    host_bridge_windows(&dsdt, 0, &mut w).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].kind, w[0].cpu_base, w[0].size),
        (WindowKind::Mem32, 0xc000_0000, 0x100_0000)
    );
    // No host bridge at all.
    let dsdt = sdt(b"DSDT", 1, &[0x10, 0x05, b'_', b'S', b'B', b'_']);
    assert_eq!(
        host_bridge_windows(&dsdt, 0, &mut w),
        Err(Error::NoHostBridge)
    );
    // Too many windows for the output.
    let dsdt = sdt(b"DSDT", 1, &dsdt_aml());
    let mut small: Vec<PciWindow, 2> = Vec::new();
    assert_eq!(
        host_bridge_windows(&dsdt, 0, &mut small),
        Err(Error::TooMany {
            table: Signature::DSDT
        })
    );
}

#[test]
fn crs_buffer_scan_survives_garbage() {
    // A `_CRS` NameOp at the very end, with a cut PkgLength, and random bytes.
    let mut aml = vec![0x08, b'_', b'C', b'R', b'S', 0x11, 0x45];
    aml.extend_from_slice(&[0x08, b'_', b'C', b'R', b'S', 0x11, 0x04, 0x0a, 0x10, 0x79]);
    aml.extend_from_slice(&[0x08, b'_', b'C', b'R', b'S', 0x11]);
    let found: StdVec<_> = crs_buffers(&aml).collect();
    assert_eq!(found.len(), 1);
    // Declared size larger than the byte list: cut to the list.
    assert_eq!(found[0].1, &[0x79][..]);
}
