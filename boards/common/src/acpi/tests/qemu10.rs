//! ACPI tables QEMU 10.0.2 + SeaBIOS build for `-machine q35 -device
//! intel-iommu` and two edu devices, dumped from the guest.

use super::*;

macro_rules! tables {
    ($dir:literal) => {
        [
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/RSDT.bin"))[..],
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/FACP.bin"))[..],
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/APIC.bin"))[..],
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/HPET.bin"))[..],
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/MCFG.bin"))[..],
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/DMAR.bin"))[..],
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/WAET.bin"))[..],
            &include_bytes!(concat!("../../../../q35/testdata/", $dir, "/DSDT.bin"))[..],
        ]
    };
}
fn m256() -> [&'static [u8]; 8] {
    tables!("qemu10-256m")
}
fn g3() -> [&'static [u8]; 8] {
    tables!("qemu10-3g")
}
const RSDP_256M: &[u8] = include_bytes!("../../../../q35/testdata/qemu10-256m/RSDP.bin");
const RSDP_3G: &[u8] = include_bytes!("../../../../q35/testdata/qemu10-3g/RSDP.bin");
const RSDP_ADDR: u64 = 0xf_5240;

/// Place every table where the RSDP, RSDT and FADT say it is.
fn machine(rsdp: &[u8], tables: &[&[u8]]) -> Mem {
    let mut m = Mem::default();
    m.put(RSDP_ADDR, rsdp.to_vec());
    let r = Rsdp::parse(rsdp).unwrap();
    let find = |sig: &[u8]| *tables.iter().find(|t| &t[..4] == sig).unwrap();
    let rsdt = find(b"RSDT");
    m.put(u64::from(r.rsdt), rsdt.to_vec());
    // The RSDT lists tables in the order QEMU builds them; so does the fixture list.
    let listed: StdVec<&[u8]> = tables
        .iter()
        .copied()
        .filter(|t| !matches!(&t[..4], b"RSDT" | b"DSDT"))
        .collect();
    let addrs: StdVec<u64> = rsdt[SDT_HEADER_LEN..]
        .chunks_exact(4)
        .map(|e| u64::from(u32::from_le_bytes(e.try_into().unwrap())))
        .collect();
    assert_eq!(addrs.len(), listed.len());
    for (a, t) in addrs.iter().zip(listed) {
        m.put(*a, t.to_vec());
    }
    let fadt = parse_fadt(find(b"FACP")).unwrap();
    m.put(fadt.dsdt, find(b"DSDT").to_vec());
    m
}

fn discover_fixture(rsdp: &[u8], tables: &[&[u8]]) -> (Platform, Fadt) {
    let m = machine(rsdp, tables);
    let mut p = Platform::default();
    let f = discover(&m, RSDP_ADDR, &mut p).unwrap();
    (p, f)
}

fn win(kind: WindowKind, base: u64, size: u64) -> PciWindow {
    PciWindow {
        kind,
        prefetchable: false,
        cpu_base: base,
        pci_base: base,
        size,
        segment: 0,
    }
}

#[test]
fn q35_256m() {
    let (p, f) = discover_fixture(RSDP_256M, &m256());
    assert_eq!(
        f.pm_timer,
        Some(PmTimer {
            port: 0x608,
            bits: 24
        })
    );
    assert_eq!(
        &p.ecam[..],
        &[Ecam {
            base: 0xb000_0000,
            segment: 0,
            bus_start: 0,
            bus_end: 0xff
        }]
    );
    assert_eq!(
        &p.windows[..],
        &[
            win(WindowKind::Io, 0, 0xcf8),
            win(WindowKind::Io, 0xd00, 0xf300),
            win(WindowKind::Mem32, 0x1000_0000, 0xa000_0000),
            win(WindowKind::Mem32, 0xc000_0000, 0x3ec0_0000),
            win(WindowKind::Mem64, 0x1_0000_0000, 0x8_0000_0000),
        ]
    );
    assert_eq!(p.dmar_haw, 48);
    assert_eq!(p.iommus.len(), 1);
    let u = &p.iommus[0];
    assert_eq!(
        (u.kind, u.base, u.size, u.segment),
        (IommuKind::Vtd, 0xfed9_0000, 0x1000, 0)
    );
    // QEMU lists every device of bus 0 instead of setting INCLUDE_PCI_ALL.
    assert!(!u.include_all);
    let paths: StdVec<_> = u
        .scopes
        .iter()
        .map(|s| (s.kind, s.start_bus, s.path[0]))
        .collect();
    assert_eq!(
        paths,
        [
            (ScopeKind::IoApic, 0xff, (0, 0)),
            (ScopeKind::Endpoint, 0, (0, 0)),
            (ScopeKind::Endpoint, 0, (1, 0)),
            (ScopeKind::Endpoint, 0, (2, 0)),
            (ScopeKind::Endpoint, 0, (31, 0)),
            (ScopeKind::Endpoint, 0, (31, 2)),
            (ScopeKind::Endpoint, 0, (31, 3)),
        ]
    );
    assert!(p.rmrrs.is_empty() && p.atsrs.is_empty());
}

#[test]
fn q35_3g() {
    let (p, _) = discover_fixture(RSDP_3G, &g3());
    assert_eq!(
        &p.windows[..],
        &[
            win(WindowKind::Io, 0, 0xcf8),
            win(WindowKind::Io, 0xd00, 0xf300),
            win(WindowKind::Mem32, 0x8000_0000, 0x3000_0000),
            win(WindowKind::Mem32, 0xc000_0000, 0x3ec0_0000),
            win(WindowKind::Mem64, 0x1_4000_0000, 0x8_0000_0000),
        ]
    );
}

#[test]
fn corrupted_tables_give_errors_not_panics() {
    // Flip every byte (keeping the checksum valid) of the DMAR, MCFG,
    // FADT and DSDT: each parse must return, whatever it returns.
    let t = m256();
    for table in [t[1], t[4], t[5], t[7]] {
        for i in 0..table.len() {
            if i == 9 {
                continue;
            }
            let mut b = table.to_vec();
            b[i] ^= 0xa5;
            fix_checksum(&mut b, 9);
            let mut p = Platform::default();
            let _ = parse_dmar(&b, &mut p);
            let _ = parse_mcfg(&b, &mut p.ecam);
            let _ = parse_fadt(&b);
            let _ = host_bridge_windows(&b, 0, &mut p.windows);
        }
    }
}

#[test]
fn every_prefix_of_the_dsdt_is_handled() {
    // Cutting the AML anywhere must give an error or fewer windows, never a panic.
    let dsdt = m256()[7];
    for cut in SDT_HEADER_LEN..dsdt.len() {
        let mut t = dsdt[..cut].to_vec();
        t[4..8].copy_from_slice(&(cut as u32).to_le_bytes());
        fix_checksum(&mut t, 9);
        let mut w: Vec<PciWindow, 8> = Vec::new();
        let _ = host_bridge_windows(&t, 0, &mut w);
    }
}
