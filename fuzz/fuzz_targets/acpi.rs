//! `iommu_board::acpi`: the RSDP → RSDT/XSDT walk, MCFG, DMAR, FADT and the
//! DSDT's `_CRS` host-bridge windows, on tables whose bodies are arbitrary
//! bytes (firmware tables are what the board finds in memory; nothing in
//! them is trusted). The input layout is in `src/firmware.rs`.
//!
//! Asserts: no panic, in `discover` over a memory image holding the tables,
//! in each parser on its table directly, and in `Rsdp::parse`, `validate`,
//! `crs_buffers` and `resources` on the raw input. `validate` returns
//! exactly the length the header gives, at least the header. MCFG windows
//! equal a model computed here in u128 from the entries (PCI Firmware
//! 3.3: base of bus 0 + 1 MiB per bus; accepted only if the window through
//! `bus_end` ends below 2^64 (an exclusive end a `u64` holds) and `bus_start <= bus_end`). A DRHD's
//! register set (2^N 4 KiB pages) ends below 2^64; an RMRR's base is
//! at most its limit. `_CRS` windows are non-empty and end below 2^64
//! on the bus and the CPU side, memory windows are at least
//! `MIN_MEM_WINDOW` and clear of the VGA hole, `Mem32` exactly when the bus
//! end is below 4 GiB. The PM timer is 24 or 32 bits. When `discover`
//! succeeds, its ECAMs, units and windows are those the parsers give on the
//! same tables.

#![no_main]

use heapless::Vec as HVec;
use iommu_board::acpi::{
    self, Error, MIN_MEM_WINDOW, PhysMem, Resource, Rsdp, crs_buffers, host_bridge_windows,
    parse_dmar, parse_fadt, parse_mcfg, resources, validate,
};
use iommu_board::platform::{Ecam, IommuKind, PciWindow, Platform, WindowKind};
use iommu_fuzz::firmware::acpi as input;
use libfuzzer_sys::fuzz_target;

/// 2^64: the end (exclusive) of every window lies below it.
const TOP: u128 = 1 << 64;

/// Physical memory from address 0.
struct Mem(Vec<u8>);

impl PhysMem for Mem {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        self.0.get(start..start.checked_add(len)?)
    }
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// The MCFG model: entries of 16 bytes from offset 44.
fn model_mcfg(t: &[u8]) -> Option<Vec<Ecam>> {
    let body = t.get(44..)?;
    if body.len() % 16 != 0 {
        return None;
    }
    body.chunks_exact(16)
        .map(|e| {
            let base = le64(e, 0);
            let (bus_start, bus_end) = (e[10], e[11]);
            let end = u128::from(base) + ((u128::from(bus_end) + 1) << 20);
            if base == 0 || bus_end < bus_start || end >= TOP {
                return None;
            }
            Some(Ecam {
                base: base + (u64::from(bus_start) << 20),
                segment: u16::from_le_bytes([e[8], e[9]]),
                bus_start,
                bus_end,
            })
        })
        .collect()
}

fn check_windows(windows: &[PciWindow]) {
    for w in windows {
        assert_ne!(w.size, 0);
        let pci_end = u128::from(w.pci_base) + u128::from(w.size);
        assert!(pci_end < TOP, "{w:?}");
        assert!(u128::from(w.cpu_base) + u128::from(w.size) < TOP, "{w:?}");
        match w.kind {
            WindowKind::Io => {}
            kind => {
                assert!(w.size >= MIN_MEM_WINDOW);
                assert!(pci_end <= 0xa_0000 || w.pci_base > 0xb_ffff);
                assert_eq!(kind == WindowKind::Mem32, pci_end <= 1 << 32, "{w:?}");
            }
        }
    }
}

fn check_platform(p: &Platform) {
    for u in &p.iommus {
        assert_eq!(u.kind, IommuKind::Vtd);
        assert!(u.size >= 4096 && u.size.is_power_of_two() && u.size <= 4096 << 15);
        assert!(u128::from(u.base) + u128::from(u.size) < TOP);
    }
    for r in &p.rmrrs {
        assert!(r.base <= r.limit);
    }
}

fuzz_target!(|data: &[u8]| {
    // The raw input through the entry points that take bytes.
    if let Ok(r) = Rsdp::parse(data) {
        assert!(r.revision >= 2 || r.xsdt == 0);
    }
    if let Ok(t) = validate(data, None) {
        assert!(t.len() >= acpi::SDT_HEADER_LEN);
        let len = u32::from_le_bytes(data[4..8].try_into().unwrap());
        assert_eq!(t.len() as u64, u64::from(len));
        assert_eq!(t, &data[..t.len()]);
    }
    for (at, buf) in crs_buffers(data) {
        assert!(at < data.len());
        for r in resources(buf).take(4096) {
            if let Ok(Resource::Address(a)) = r {
                let _ = (a.size(), a.prefetchable());
            }
        }
    }

    let inp = input::decode(data);
    let fixed = inp.flags & 2 == 0;
    let tables: Vec<Vec<u8>> = input::SIGS
        .iter()
        .zip(inp.bodies)
        .map(|(sig, body)| input::table(*sig, body, fixed))
        .collect();

    // Each parser on its own table.
    let mut ecam: HVec<Ecam, 4> = HVec::new();
    let mcfg = parse_mcfg(&tables[0], &mut ecam);
    if fixed {
        match model_mcfg(&tables[0]) {
            Some(m) if m.len() <= 4 => assert_eq!(mcfg, Ok(()), "model accepts"),
            Some(_) => assert_eq!(
                mcfg,
                Err(Error::TooMany {
                    table: acpi::Signature::MCFG
                })
            ),
            None => assert!(mcfg.is_err(), "model refuses"),
        }
        if mcfg.is_ok() {
            assert_eq!(ecam.as_slice(), model_mcfg(&tables[0]).unwrap().as_slice());
        }
    }
    let mut dmar = Platform::default();
    let dmar_ok = parse_dmar(&tables[1], &mut dmar).is_ok();
    check_platform(&dmar);
    if let Ok(Some(t)) = parse_fadt(&tables[2]).map(|f| f.pm_timer) {
        assert!(t.bits == 24 || t.bits == 32);
    }
    let mut windows: HVec<PciWindow, 8> = HVec::new();
    let crs = host_bridge_windows(&tables[3], 0, &mut windows);
    check_windows(&windows);

    // The whole walk from the RSDP.
    let (image, addrs) = input::image(&inp);
    let mem = Mem(image);
    let mut p = Platform::default();
    let Ok(fadt) = acpi::discover(&mem, 0, &mut p) else {
        return;
    };
    check_platform(&p);
    check_windows(&p.windows);
    assert!(mcfg.is_ok());
    assert_eq!(p.ecam.as_slice(), ecam.as_slice());
    if dmar_ok {
        assert_eq!(p.iommus.len(), dmar.iommus.len());
        for (a, b) in p.iommus.iter().zip(&dmar.iommus) {
            assert_eq!((a.base, a.size, a.segment), (b.base, b.size, b.segment));
        }
    }
    if fadt.dsdt == addrs[3] as u64 {
        assert!(crs.is_ok());
        assert_eq!(p.windows.as_slice(), windows.as_slice());
    }
});
