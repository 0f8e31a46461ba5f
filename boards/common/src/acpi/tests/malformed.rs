//! Malformed tables that once overflowed, panicked or gave a wrong result:
//! each now gives its typed error (or the right answer).

use super::*;
use crate::acpi::aml::pkg_length;

#[test]
fn mcfg_window_past_2_64_is_malformed() {
    // 256 buses from 0xffff_ffff_f000_0000 end at 2^64: only the start of
    // bus_start was checked, so the window's end was not representable.
    let t = sdt(
        b"MCFG",
        1,
        &mcfg_body(&[(0xffff_ffff_f000_0000, 0, 0, 0xff)]),
    );
    let mut out: Vec<Ecam, 4> = Vec::new();
    assert_eq!(
        parse_mcfg(&t, &mut out),
        Err(Error::Malformed {
            table: Signature::MCFG,
            offset: SDT_HEADER_LEN + 8
        })
    );
    // Second entry: the window for buses up to 0x1f (32 MiB from its bus 0
    // base) ends 1 MiB past 2^64.
    let t = sdt(
        b"MCFG",
        1,
        &mcfg_body(&[
            (0xb000_0000, 0, 0, 0xff),
            (0xffff_ffff_fe10_0000, 1, 0x10, 0x1f),
        ]),
    );
    assert_eq!(
        parse_mcfg(&t, &mut Vec::<Ecam, 4>::new()),
        Err(Error::Malformed {
            table: Signature::MCFG,
            offset: SDT_HEADER_LEN + 8 + 16
        })
    );
    // 2 MiB lower, the window ends at 0xffff_ffff_fff0_0000.
    let t = sdt(
        b"MCFG",
        1,
        &mcfg_body(&[(0xffff_ffff_fdf0_0000, 1, 0x10, 0x1f)]),
    );
    parse_mcfg(&t, &mut out).unwrap();
    assert_eq!(
        &out[..],
        &[Ecam {
            base: 0xffff_ffff_fef0_0000,
            segment: 1,
            bus_start: 0x10,
            bus_end: 0x1f
        }]
    );
}

#[test]
fn root_table_with_a_part_entry_is_malformed() {
    // An RSDT of one entry and two stray bytes, an XSDT of one entry and
    // four: the part entry was dropped silently.
    let mut m = Mem::default();
    m.put(0xf_5000, rsdp_v0(0x1000));
    let mut body = 0x2000u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0, 0]);
    m.put(0x1000, sdt(b"RSDT", 1, &body));
    let rsdp = Rsdp::read(&m, 0xf_5000).unwrap();
    assert!(matches!(
        Tables::new(&m, &rsdp),
        Err(Error::Malformed {
            table: Signature::RSDT,
            offset: 4
        })
    ));
    let mut m = Mem::default();
    m.put(0xf_5000, rsdp_v2(0, 0x1000));
    let mut body = 0x2000u64.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 4]);
    m.put(0x1000, sdt(b"XSDT", 1, &body));
    let mut p = Platform::default();
    assert_eq!(
        discover(&m, 0xf_5000, &mut p),
        Err(Error::Malformed {
            table: Signature::XSDT,
            offset: 4
        })
    );
}

#[test]
fn drhd_registers_past_2_64_are_malformed() {
    // A DRHD of 2^2 pages at 0xffff_ffff_ffff_d000: its register set ran
    // past 2^64 (base + size was never checked).
    let t = sdt(
        b"DMAR",
        1,
        &dmar_body(39, &[drhd(0, 2, 0, 0xffff_ffff_ffff_d000, &[])]),
    );
    let mut p = Platform::default();
    assert_eq!(
        parse_dmar(&t, &mut p),
        Err(Error::Malformed {
            table: Signature::DMAR,
            offset: 48
        })
    );
    // One page lower it fits.
    let t = sdt(
        b"DMAR",
        1,
        &dmar_body(39, &[drhd(0, 2, 0, 0xffff_ffff_ffff_b000, &[])]),
    );
    let mut p = Platform::default();
    parse_dmar(&t, &mut p).unwrap();
    assert_eq!(
        (p.iommus[0].base, p.iommus[0].size),
        (0xffff_ffff_ffff_b000, 0x4000)
    );
}

#[test]
fn dmar_scope_lengths_are_checked_against_their_structure() {
    let mut p = Platform::default();
    // A scope whose length byte says 0xfe inside a DRHD that ends right
    // after its 6 fixed bytes.
    let mut sc = scope(1, 0, 0, &[]);
    sc[1] = 0xfe;
    let t = sdt(b"DMAR", 1, &dmar_body(39, &[drhd(0, 0, 0, 0x1000, &[sc])]));
    assert_eq!(
        parse_dmar(&t, &mut p),
        Err(Error::Truncated {
            table: Signature::DMAR,
            offset: 48 + 16
        })
    );
    // A lone type byte at the end of the DRHD: the length byte belongs to
    // the next structure.
    let mut d = drhd(0, 0, 0, 0x1000, &[vec![1]]);
    d.extend(drhd(0, 0, 0, 0x2000, &[]));
    let t = sdt(b"DMAR", 1, &dmar_body(39, &[d]));
    assert_eq!(
        parse_dmar(&t, &mut p),
        Err(Error::Truncated {
            table: Signature::DMAR,
            offset: 48 + 16
        })
    );
    // A path of 4 hops (6 + 8 bytes) is read whole.
    let t = sdt(
        b"DMAR",
        1,
        &dmar_body(
            39,
            &[drhd(
                0,
                0,
                0,
                0x1000,
                &[scope(2, 0, 0, &[(1, 0), (2, 0), (3, 0), (4, 1)])],
            )],
        ),
    );
    let mut p = Platform::default();
    parse_dmar(&t, &mut p).unwrap();
    assert_eq!(
        &p.iommus[0].scopes[0].path[..],
        &[(1, 0), (2, 0), (3, 0), (4, 1)]
    );
}

/// A QWord address-space descriptor with every field given.
fn qword_raw(kind: u8, min: u64, max: u64, tra: u64, len: u64) -> StdVec<u8> {
    let mut d = vec![0x8a, 43, 0, kind, 0x0c, 0x01];
    for v in [0, min, max, tra, len] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d
}

/// The windows of a DSDT holding one host bridge: bus 0..ff and `desc`;
/// also the offset of `desc` in the table.
fn windows_of(desc: &[u8]) -> (Result<StdVec<PciWindow>, Error>, usize) {
    let mut template = word_as(2, 0, 0, 0xff, 0);
    template.extend_from_slice(desc);
    template.extend(END_TAG);
    let dsdt = sdt(b"DSDT", 1, &name_crs_buffer(&template));
    let at = dsdt.windows(desc.len()).position(|w| w == desc).unwrap();
    let mut out: Vec<PciWindow, 8> = Vec::new();
    let r = host_bridge_windows(&dsdt, 0, &mut out).map(|()| out.to_vec());
    (r, at)
}

#[test]
fn dsdt_window_past_2_64_is_malformed() {
    let malformed = |offset| {
        Err(Error::Malformed {
            table: Signature::DSDT,
            offset,
        })
    };
    // Bus side: 8 GiB from 0xffff_ffff_0000_0000 (_LEN given). The end
    // saturated and the window was returned with pci_base + size past 2^64.
    let (r, at) = windows_of(&qword_raw(0, 0xffff_ffff_0000_0000, 0, 0, 0x2_0000_0000));
    assert_eq!(r, malformed(at));
    // CPU side: 4 GiB at bus 0x1000_0000, _TRA 0xffff_ffff_0000_0000.
    let (r, at) = windows_of(&qword_raw(
        0,
        0x1000_0000,
        0x1_0fff_ffff,
        0xffff_ffff_0000_0000,
        0,
    ));
    assert_eq!(r, malformed(at));
    // _MIN 0, _MAX u64::MAX, _LEN 0: 2^64 bytes, whose size saturated to
    // u64::MAX.
    let (r, at) = windows_of(&qword_raw(0, 0, u64::MAX, 0, 0));
    assert_eq!(r, malformed(at));
    // I/O windows too.
    let (r, at) = windows_of(&qword_raw(1, u64::MAX - 0xff, u64::MAX, 0, 0x1000));
    assert_eq!(r, malformed(at));
}

#[test]
fn dsdt_negative_translation_is_kept() {
    // _TRA is modular: bus 0x1_0000_0000.. seen by the CPU at 0x8000_0000.
    let (r, _) = windows_of(&qword_raw(
        0,
        0x1_0000_0000,
        0x1_0fff_ffff,
        0xffff_ffff_8000_0000,
        0,
    ));
    assert_eq!(
        r.unwrap(),
        [PciWindow {
            kind: WindowKind::Mem64,
            prefetchable: false,
            cpu_base: 0x8000_0000,
            pci_base: 0x1_0000_0000,
            size: 0x1000_0000,
            segment: 0
        }]
    );
    // A window ending at u64::MAX (inclusive) is not accepted: its end is 2^64.
    let (r, at) = windows_of(&qword_raw(0, 0xffff_ffff_0000_0000, u64::MAX, 0, 0));
    assert_eq!(
        r,
        Err(Error::Malformed {
            table: Signature::DSDT,
            offset: at
        })
    );
}

#[test]
fn crs_package_lengths_outside_the_aml_are_skipped() {
    // PkgLength shorter than its own encoding, and a 4-byte PkgLength of
    // 0x0fff_ffff far past the AML: neither is a buffer, none panics.
    let mut template = word_as(2, 0, 0, 0xff, 0);
    template.extend(END_TAG);
    for pkg in [&[0x00][..], &[0xcf, 0xff, 0xff, 0xff]] {
        let mut aml = vec![0x08, b'_', b'C', b'R', b'S', 0x11];
        aml.extend_from_slice(pkg);
        aml.push(0x0a);
        aml.push(template.len() as u8);
        aml.extend_from_slice(&template);
        assert_eq!(crs_buffers(&aml).count(), 0);
        let dsdt = sdt(b"DSDT", 1, &aml);
        let mut out: Vec<PciWindow, 8> = Vec::new();
        assert_eq!(
            host_bridge_windows(&dsdt, 0, &mut out),
            Err(Error::NoHostBridge)
        );
    }
    assert_eq!(
        pkg_length(&[0xcf, 0xff, 0xff, 0xff]),
        Some((0x0fff_ffff, 4))
    );
}
