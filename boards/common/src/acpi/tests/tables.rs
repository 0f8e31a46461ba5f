//! RSDP, table header, MCFG, FADT and whole-machine discovery.

use super::*;

#[test]
fn rsdp_v0_and_v2() {
    let r = Rsdp::parse(&rsdp_v0(0x7fe_1234)).unwrap();
    assert_eq!(
        r,
        Rsdp {
            revision: 0,
            rsdt: 0x7fe_1234,
            xsdt: 0
        }
    );
    let r = Rsdp::parse(&rsdp_v2(0x1000, 0x2000)).unwrap();
    assert_eq!(
        r,
        Rsdp {
            revision: 2,
            rsdt: 0x1000,
            xsdt: 0x2000
        }
    );

    let mut bad = rsdp_v0(1);
    bad[0] = b'X';
    assert!(matches!(Rsdp::parse(&bad), Err(Error::BadSignature { .. })));
    let mut bad = rsdp_v0(1);
    bad[16] ^= 1;
    assert_eq!(
        Rsdp::parse(&bad),
        Err(Error::BadChecksum {
            table: Signature::RSDP
        })
    );
    let mut bad = rsdp_v2(1, 2);
    bad[24] ^= 1; // only the extended checksum covers the XSDT address
    assert_eq!(
        Rsdp::parse(&bad),
        Err(Error::BadChecksum {
            table: Signature::RSDP
        })
    );
    assert!(matches!(
        Rsdp::parse(&rsdp_v0(1)[..19]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        Rsdp::parse(&rsdp_v2(1, 2)[..30]),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn validate_checks_header_length_checksum() {
    let t = sdt(b"TEST", 1, &[1, 2, 3]);
    assert_eq!(validate(&t, None).unwrap().len(), 39);
    // Extra bytes after the table are not part of it.
    let mut longer = t.clone();
    longer.extend_from_slice(&[0xff; 5]);
    assert_eq!(
        validate(&longer, Some(Signature(*b"TEST"))).unwrap(),
        &t[..]
    );
    assert!(matches!(
        validate(&t, Some(Signature::DMAR)),
        Err(Error::BadSignature { .. })
    ));
    assert!(matches!(
        validate(&t[..38], None),
        Err(Error::Truncated { .. })
    ));
    let mut bad = t.clone();
    bad[37] ^= 0x40;
    assert!(matches!(
        validate(&bad, None),
        Err(Error::BadChecksum { .. })
    ));
    let mut short = t.clone();
    short[4] = 10;
    assert!(matches!(
        validate(&short, None),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn mcfg_entries() {
    let t = sdt(
        b"MCFG",
        1,
        &mcfg_body(&[(0xb000_0000, 0, 0, 0xff), (0x4_0000_0000, 1, 2, 3)]),
    );
    let mut out: Vec<Ecam, 4> = Vec::new();
    parse_mcfg(&t, &mut out).unwrap();
    assert_eq!(
        &out[..],
        &[
            Ecam {
                base: 0xb000_0000,
                segment: 0,
                bus_start: 0,
                bus_end: 0xff
            },
            Ecam {
                base: 0x4_0020_0000,
                segment: 1,
                bus_start: 2,
                bus_end: 3
            },
        ]
    );
    let mut one: Vec<Ecam, 1> = Vec::new();
    assert_eq!(
        parse_mcfg(&t, &mut one),
        Err(Error::TooMany {
            table: Signature::MCFG
        })
    );
    // A cut entry.
    let mut body = mcfg_body(&[(0xb000_0000, 0, 0, 0xff)]);
    body.truncate(body.len() - 1);
    let t = sdt(b"MCFG", 1, &body);
    assert!(matches!(
        parse_mcfg(&t, &mut out),
        Err(Error::Truncated { .. })
    ));
    let t = sdt(b"MCFG", 1, &mcfg_body(&[(0xb000_0000, 0, 5, 4)]));
    assert!(matches!(
        parse_mcfg(&t, &mut out),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn fadt_timer_and_dsdt() {
    // ACPI 2.0+: X_ fields win.
    let f = parse_fadt(&fadt(244, 0x1000, 0x2000, 0x608, Some((1, 0x1608)), true)).unwrap();
    assert_eq!(
        f,
        Fadt {
            dsdt: 0x2000,
            pm_timer: Some(PmTimer {
                port: 0x1608,
                bits: 32
            })
        }
    );
    // X_ fields zero: fall back to the 32-bit ones.
    let f = parse_fadt(&fadt(244, 0x1000, 0, 0x608, None, false)).unwrap();
    assert_eq!(
        f,
        Fadt {
            dsdt: 0x1000,
            pm_timer: Some(PmTimer {
                port: 0x608,
                bits: 24
            })
        }
    );
    // X_PM_TMR_BLK in memory space: not usable, fall back.
    let f = parse_fadt(&fadt(244, 0x1000, 0, 0x608, Some((0, 0xfee0_0000)), true)).unwrap();
    assert_eq!(
        f.pm_timer,
        Some(PmTimer {
            port: 0x608,
            bits: 32
        })
    );
    // ACPI 1.0 FADT.
    let f = parse_fadt(&fadt(116, 0x3000, 0, 0xb008, None, false)).unwrap();
    assert_eq!(
        f,
        Fadt {
            dsdt: 0x3000,
            pm_timer: Some(PmTimer {
                port: 0xb008,
                bits: 24
            })
        }
    );
    // No timer.
    let f = parse_fadt(&fadt(116, 0x3000, 0, 0, None, false)).unwrap();
    assert_eq!(f.pm_timer, None);
    // I/O port out of range.
    assert!(matches!(
        parse_fadt(&fadt(244, 0, 0, 0, Some((1, 0x1_0000)), false)),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        parse_fadt(&sdt(b"FACP", 1, &[0; 40])),
        Err(Error::Truncated { .. })
    ));
    assert_eq!(PmTimer { port: 0, bits: 24 }.mask(), 0xff_ffff);
    assert_eq!(PmTimer { port: 0, bits: 32 }.mask(), u32::MAX);
}

#[test]
fn discover_through_rsdt_and_xsdt() {
    for (rsdp, dmar) in [
        (rsdp_v0(0x7fe_0000), true),
        (rsdp_v2(0, 0x7fe_5000), true),
        (rsdp_v0(0x7fe_0000), false),
    ] {
        let m = machine(rsdp, dmar);
        let mut p = Platform::default();
        let fadt = discover(&m, 0xf_5000, &mut p).unwrap();
        assert_eq!(
            fadt.pm_timer,
            Some(PmTimer {
                port: 0x608,
                bits: 32
            })
        );
        assert_eq!(p.ecam[0].base, 0xb000_0000);
        assert_eq!(p.windows.len(), 4);
        if dmar {
            assert_eq!(p.dmar_haw, 39);
            assert_eq!(p.iommus[0].base, 0xfed9_0000);
            assert!(p.iommus[0].include_all);
        } else {
            assert_eq!(p.dmar_haw, 0);
            assert!(p.iommus.is_empty());
        }
    }
}

#[test]
fn discover_reports_missing_and_unmapped() {
    let mut m = machine(rsdp_v0(0x7fe_0000), true);
    // Drop the MCFG.
    m.0.retain(|(a, _)| *a != 0x7fe_2000);
    let mut p = Platform::default();
    assert!(matches!(
        discover(&m, 0xf_5000, &mut p),
        Err(Error::Unmapped {
            addr: 0x7fe_2000,
            ..
        })
    ));
    let m = machine(rsdp_v0(0x7fe_0000), true);
    assert!(matches!(
        discover(&m, 0x1234, &mut p),
        Err(Error::Unmapped { .. })
    ));
    // RSDT without MCFG.
    let mut m = Mem::default();
    m.put(0xf_5000, rsdp_v0(0x1000));
    m.put(0x1000, sdt(b"RSDT", 1, &[]));
    assert_eq!(
        discover(&m, 0xf_5000, &mut p),
        Err(Error::Missing {
            table: Signature::MCFG
        })
    );
    // Corrupt DSDT.
    let mut m = machine(rsdp_v0(0x7fe_0000), false);
    for (a, b) in m.0.iter_mut() {
        if *a == 0x7fe_4000 {
            b[40] ^= 1;
        }
    }
    let mut p = Platform::default();
    assert_eq!(
        discover(&m, 0xf_5000, &mut p),
        Err(Error::BadChecksum {
            table: Signature::DSDT
        })
    );
}
