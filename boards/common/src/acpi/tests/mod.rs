//! Host tests of the ACPI readers: table builders, an in-memory
//! [`PhysMem`](super::PhysMem), and the QEMU q35 dumps.

extern crate std;
use std::vec;
use std::vec::Vec as StdVec;

use heapless::Vec;

use super::*;
use crate::platform::{Ecam, IommuKind, PciWindow, ScopeKind, WindowKind};

mod aml;
mod dmar;
mod malformed;
mod qemu10;
mod tables;

/// A table: header + body, checksum fixed.
fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> StdVec<u8> {
    let mut t = StdVec::new();
    t.extend_from_slice(sig);
    t.extend_from_slice(&((SDT_HEADER_LEN + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum
    t.extend_from_slice(b"TESTID"); // OEM ID
    t.extend_from_slice(b"TESTTBL "); // OEM table ID
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(b"TEST"); // creator ID
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    assert_eq!(t.len(), SDT_HEADER_LEN);
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

fn fix_checksum(t: &mut [u8], at: usize) {
    t[at] = 0;
    let s = t.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    t[at] = 0u8.wrapping_sub(s);
}

fn rsdp_v0(rsdt: u32) -> StdVec<u8> {
    let mut r = StdVec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0); // checksum
    r.extend_from_slice(b"BOCHS ");
    r.push(0); // revision
    r.extend_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut r, 8);
    r
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> StdVec<u8> {
    let mut r = rsdp_v0(rsdt);
    r[15] = 2;
    fix_checksum(&mut r, 8);
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.push(0); // extended checksum
    r.extend_from_slice(&[0; 3]);
    fix_checksum(&mut r, 32);
    r
}

/// Physical memory made of chunks at fixed addresses.
#[derive(Default)]
struct Mem(StdVec<(u64, StdVec<u8>)>);

impl Mem {
    fn put(&mut self, addr: u64, bytes: StdVec<u8>) {
        self.0.push((addr, bytes));
    }
}

impl PhysMem for Mem {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.0.iter().find_map(|(base, b)| {
            let off = usize::try_from(addr.checked_sub(*base)?).ok()?;
            b.get(off..off.checked_add(len)?)
        })
    }
}

fn mcfg_body(entries: &[(u64, u16, u8, u8)]) -> StdVec<u8> {
    let mut b = vec![0u8; 8];
    for &(base, seg, s, e) in entries {
        b.extend_from_slice(&base.to_le_bytes());
        b.extend_from_slice(&seg.to_le_bytes());
        b.push(s);
        b.push(e);
        b.extend_from_slice(&[0; 4]);
    }
    b
}

fn scope(kind: u8, id: u8, bus: u8, path: &[(u8, u8)]) -> StdVec<u8> {
    let mut s = vec![kind, (6 + 2 * path.len()) as u8, 0, 0, id, bus];
    for &(d, f) in path {
        s.push(d);
        s.push(f);
    }
    s
}

fn dmar_struct(kind: u16, fixed: &[u8], scopes: &[StdVec<u8>]) -> StdVec<u8> {
    let len = 4 + fixed.len() + scopes.iter().map(|s| s.len()).sum::<usize>();
    let mut s = StdVec::new();
    s.extend_from_slice(&kind.to_le_bytes());
    s.extend_from_slice(&(len as u16).to_le_bytes());
    s.extend_from_slice(fixed);
    for sc in scopes {
        s.extend_from_slice(sc);
    }
    s
}

fn drhd(flags: u8, size: u8, seg: u16, base: u64, scopes: &[StdVec<u8>]) -> StdVec<u8> {
    let mut f = vec![flags, size];
    f.extend_from_slice(&seg.to_le_bytes());
    f.extend_from_slice(&base.to_le_bytes());
    dmar_struct(0, &f, scopes)
}

fn dmar_body(haw: u8, structs: &[StdVec<u8>]) -> StdVec<u8> {
    let mut b = vec![haw - 1, 1];
    b.extend_from_slice(&[0; 10]);
    for s in structs {
        b.extend_from_slice(s);
    }
    b
}

/// A FADT of `len` bytes (116 = ACPI 1.0, 244 = ACPI 2.0+ with X_ fields).
fn fadt(
    len: usize,
    dsdt: u32,
    x_dsdt: u64,
    pm: u32,
    x_pm: Option<(u8, u64)>,
    ext: bool,
) -> StdVec<u8> {
    let mut b = vec![0u8; len - SDT_HEADER_LEN];
    let at = |o: usize| o - SDT_HEADER_LEN;
    b[at(40)..at(44)].copy_from_slice(&dsdt.to_le_bytes());
    b[at(76)..at(80)].copy_from_slice(&pm.to_le_bytes());
    b[at(91)] = 4;
    let flags: u32 = if ext { 1 << 8 } else { 0 };
    b[at(112)..at(116)].copy_from_slice(&flags.to_le_bytes());
    if len >= 244 {
        b[at(140)..at(148)].copy_from_slice(&x_dsdt.to_le_bytes());
        if let Some((space, addr)) = x_pm {
            b[at(208)] = space;
            b[at(209)] = 32;
            b[at(211)] = 3;
            b[at(212)..at(220)].copy_from_slice(&addr.to_le_bytes());
        }
    }
    sdt(b"FACP", if len >= 244 { 3 } else { 1 }, &b)
}

// Resource descriptors.
fn word_as(kind: u8, tflags: u8, min: u16, max: u16, tra: u16) -> StdVec<u8> {
    let mut d = vec![0x88, 13, 0, kind, 0x0c, tflags];
    for v in [0, min, max, tra, max - min + 1] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d
}
fn dword_as(kind: u8, tflags: u8, min: u32, max: u32, tra: u32) -> StdVec<u8> {
    let mut d = vec![0x87, 23, 0, kind, 0x0c, tflags];
    for v in [0, min, max, tra, max - min + 1] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d
}
fn qword_as(kind: u8, tflags: u8, min: u64, max: u64, tra: u64) -> StdVec<u8> {
    let mut d = vec![0x8a, 43, 0, kind, 0x0c, tflags];
    for v in [0, min, max, tra, max - min + 1] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d
}
const IO_CF8: [u8; 8] = [0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08];
const END_TAG: [u8; 2] = [0x79, 0x00];

/// `Name(_CRS, Buffer(n){template})` with a PkgLength of the natural size.
fn name_crs_buffer(template: &[u8]) -> StdVec<u8> {
    let mut size = vec![0x0b];
    size.extend_from_slice(&(template.len() as u16).to_le_bytes());
    let inner = size.len() + template.len();
    let mut out = vec![0x08, b'_', b'C', b'R', b'S', 0x11];
    // 1-byte PkgLength up to 63, else 2 bytes.
    if inner < 63 {
        out.push((inner + 1) as u8);
    } else {
        let v = inner + 2;
        assert!(v < 4096);
        out.push(0x40 | (v & 0xf) as u8);
        out.push((v >> 4) as u8);
    }
    out.extend_from_slice(&size);
    out.extend_from_slice(template);
    out
}

fn host_bridge_template() -> StdVec<u8> {
    let mut t = StdVec::new();
    t.extend(word_as(2, 0, 0x00, 0xff, 0)); // WordBusNumber 0..ff
    t.extend(IO_CF8);
    t.extend(word_as(1, 3, 0x0000, 0x0cf7, 0)); // WordIO
    t.extend(word_as(1, 3, 0x0d00, 0xffff, 0));
    t.extend(dword_as(0, 0x03, 0x000a_0000, 0x000b_ffff, 0)); // VGA
    t.extend(dword_as(0, 0x03, 0x8000_0000, 0xafff_ffff, 0)); // 32-bit hole
    t.extend(dword_as(0, 0x03, 0xfeda_0000, 0xfeda_ffff, 0)); // too small
    // 64-bit prefetchable (MEM = 3), with a translation offset.
    t.extend(qword_as(
        0,
        0x07,
        0x1_0000_0000,
        0x8_ffff_ffff,
        0x10_0000_0000,
    ));
    t.extend(END_TAG);
    t
}

fn dsdt_aml() -> StdVec<u8> {
    let mut aml = StdVec::new();
    // Some leading noise and a decoy device `_CRS` (no bus range):
    // Name(_CRS, ResourceTemplate(){Memory32Fixed(RW, 0xfed00000, 0x400)}).
    aml.extend_from_slice(&[0x10, 0x05, b'_', b'S', b'B', b'_']);
    let mut hpet = vec![0x86, 9, 0, 1];
    hpet.extend_from_slice(&0xfed0_0000u32.to_le_bytes());
    hpet.extend_from_slice(&0x400u32.to_le_bytes());
    hpet.extend(END_TAG);
    aml.extend(name_crs_buffer(&hpet));
    // A false match: `_CRS` declared as a method, not a buffer.
    aml.extend_from_slice(&[0x14, 0x08, b'_', b'C', b'R', b'S', 0x00, 0xa4, 0x00]);
    // An expander bridge (bus 0x80..0x8f) before the root bridge.
    let mut pxb = word_as(2, 0, 0x80, 0x8f, 0);
    pxb.extend(dword_as(0, 0x03, 0xc000_0000, 0xc0ff_ffff, 0));
    pxb.extend(END_TAG);
    aml.extend(name_crs_buffer(&pxb));
    aml.extend(name_crs_buffer(&host_bridge_template()));
    aml
}

fn machine(rsdp: StdVec<u8>, with_dmar: bool) -> Mem {
    let mut m = Mem::default();
    m.put(0xf_5000, rsdp);
    let mut entries: StdVec<u64> = vec![0x7fe_1000, 0x7fe_2000];
    if with_dmar {
        entries.push(0x7fe_3000);
    }
    m.put(
        0x7fe_1000,
        fadt(244, 0x7fe_4000, 0, 0x608, Some((1, 0x608)), true),
    );
    m.put(
        0x7fe_2000,
        sdt(b"MCFG", 1, &mcfg_body(&[(0xb000_0000, 0, 0, 0xff)])),
    );
    m.put(
        0x7fe_3000,
        sdt(
            b"DMAR",
            1,
            &dmar_body(
                39,
                &[drhd(1, 0, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)])])],
            ),
        ),
    );
    m.put(0x7fe_4000, sdt(b"DSDT", 1, &dsdt_aml()));
    let rsdt_body: StdVec<u8> = entries
        .iter()
        .flat_map(|&a| (a as u32).to_le_bytes())
        .collect();
    m.put(0x7fe_0000, sdt(b"RSDT", 1, &rsdt_body));
    let xsdt_body: StdVec<u8> = entries.iter().flat_map(|&a| a.to_le_bytes()).collect();
    m.put(0x7fe_5000, sdt(b"XSDT", 1, &xsdt_body));
    m
}
