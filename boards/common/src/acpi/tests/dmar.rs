//! DMAR units, RMRRs, ATSRs and device scopes.

use super::*;

#[test]
fn dmar_units_rmrr_atsr() {
    let mut rmrr = vec![0, 0, 0, 0];
    rmrr.extend_from_slice(&0x000e_0000u64.to_le_bytes());
    rmrr.extend_from_slice(&0x000e_ffffu64.to_le_bytes());
    let mut atsr = vec![1, 0];
    atsr.extend_from_slice(&0u16.to_le_bytes());
    let body = dmar_body(
        39,
        &[
            drhd(
                0,
                2,
                0,
                0xfed9_1000,
                &[
                    scope(1, 0, 0, &[(3, 0)]),
                    scope(2, 0, 0, &[(0x1c, 0), (0, 1)]),
                ],
            ),
            drhd(1, 0, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)])]),
            dmar_struct(3, &[0; 12], &[]), // RHSA: skipped
            dmar_struct(1, &rmrr, &[scope(1, 0, 0, &[(0x14, 0)])]),
            dmar_struct(2, &atsr, &[]),
        ],
    );
    let t = sdt(b"DMAR", 1, &body);
    let mut p = Platform::default();
    parse_dmar(&t, &mut p).unwrap();
    assert_eq!(p.dmar_haw, 39);
    assert_eq!(p.iommus.len(), 2);
    let a = &p.iommus[0];
    assert_eq!(
        (a.kind, a.base, a.size, a.segment, a.include_all),
        (IommuKind::Vtd, 0xfed9_1000, 0x4000, 0, false)
    );
    assert_eq!(a.scopes.len(), 2);
    assert_eq!(a.scopes[0].kind, ScopeKind::Endpoint);
    assert_eq!(&a.scopes[0].path[..], &[(3, 0)]);
    assert_eq!(a.scopes[1].kind, ScopeKind::SubHierarchy);
    assert_eq!(&a.scopes[1].path[..], &[(0x1c, 0), (0, 1)]);
    let b = &p.iommus[1];
    assert_eq!((b.base, b.size, b.include_all), (0xfed9_0000, 0x1000, true));
    assert_eq!(b.scopes[0].kind, ScopeKind::IoApic);
    assert_eq!(
        (b.scopes[0].start_bus, b.scopes[0].enumeration_id),
        (0xff, 0)
    );
    assert_eq!(p.rmrrs.len(), 1);
    assert_eq!((p.rmrrs[0].base, p.rmrrs[0].limit), (0xe_0000, 0xe_ffff));
    assert_eq!(p.rmrrs[0].scopes[0].path[0], (0x14, 0));
    assert_eq!(p.atsrs.len(), 1);
    assert!(p.atsrs[0].all_ports);
    assert!(p.atsrs[0].scopes.is_empty());
}

#[test]
fn dmar_rejects_bad_structures() {
    let mut p = Platform::default();
    // Structure length running past the table.
    let mut s = drhd(1, 0, 0, 0xfed9_0000, &[]);
    s[2] = 40;
    let t = sdt(b"DMAR", 1, &dmar_body(39, &[s]));
    assert!(matches!(
        parse_dmar(&t, &mut p),
        Err(Error::Truncated { .. })
    ));
    // Zero-length structure (would loop forever).
    let t = sdt(b"DMAR", 1, &dmar_body(39, &[vec![0, 0, 0, 0]]));
    assert!(matches!(
        parse_dmar(&t, &mut p),
        Err(Error::Malformed { .. })
    ));
    // Device scope with an odd path length.
    let mut sc = scope(1, 0, 0, &[(1, 0)]);
    sc[1] = 7;
    sc.push(0);
    let t = sdt(b"DMAR", 1, &dmar_body(39, &[drhd(0, 0, 0, 0x1000, &[sc])]));
    assert!(matches!(
        parse_dmar(&t, &mut p),
        Err(Error::Malformed { .. })
    ));
    // Scope overrunning its DRHD.
    let mut sc = scope(1, 0, 0, &[(1, 0)]);
    sc[1] = 10;
    let t = sdt(b"DMAR", 1, &dmar_body(39, &[drhd(0, 0, 0, 0x1000, &[sc])]));
    assert!(matches!(
        parse_dmar(&t, &mut p),
        Err(Error::Truncated { .. })
    ));
    // Header only (no HAW).
    let t = sdt(b"DMAR", 1, &[]);
    assert!(matches!(
        parse_dmar(&t, &mut p),
        Err(Error::Truncated { .. })
    ));
    // Too many path hops for the Platform.
    let hops = [(1u8, 0u8); 9];
    let t = sdt(
        b"DMAR",
        1,
        &dmar_body(39, &[drhd(0, 0, 0, 0x1000, &[scope(1, 0, 0, &hops)])]),
    );
    assert_eq!(
        parse_dmar(&t, &mut p),
        Err(Error::TooMany {
            table: Signature::DMAR
        })
    );
}
