//! Host tests of the device-tree reader: a small DTB writer for hand-made
//! trees, and the QEMU virt dumps.

use std::vec::Vec as StdVec;

use super::*;
use crate::platform::{Ecam, IommuKind, PciWindow, Region, RidMap, WindowKind};

mod malformed;
mod synthetic;
mod virt;

const VIRT: &[u8] = include_bytes!("../../testdata/virt-smmuv3.dtb");
const VIRT_LOW_ECAM_3G: &[u8] = include_bytes!("../../testdata/virt-smmuv3-lowecam-3g.dtb");

fn windows(segment: u16) -> [PciWindow; 3] {
    [
        PciWindow {
            kind: WindowKind::Io,
            prefetchable: false,
            cpu_base: 0x3eff_0000,
            pci_base: 0,
            size: 0x1_0000,
            segment,
        },
        PciWindow {
            kind: WindowKind::Mem32,
            prefetchable: false,
            cpu_base: 0x1000_0000,
            pci_base: 0x1000_0000,
            size: 0x2eff_0000,
            segment,
        },
        PciWindow {
            kind: WindowKind::Mem64,
            prefetchable: false,
            cpu_base: 0x80_0000_0000,
            pci_base: 0x80_0000_0000,
            size: 0x80_0000_0000,
            segment,
        },
    ]
}

/// A tiny DTB writer for hand-made trees.
#[derive(Default)]
struct Writer {
    structs: StdVec<u8>,
    strings: StdVec<u8>,
}

enum V<'a> {
    Cells(&'a [u32]),
    Str(&'a str),
    Raw(&'a [u8]),
}

impl Writer {
    fn word(&mut self, w: u32) {
        self.structs.extend_from_slice(&w.to_be_bytes());
    }
    fn begin(&mut self, name: &str) -> &mut Self {
        self.word(FDT_BEGIN_NODE);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
        self
    }
    fn end(&mut self) -> &mut Self {
        self.word(FDT_END_NODE);
        self
    }
    fn prop(&mut self, name: &str, v: V<'_>) -> &mut Self {
        let mut value = StdVec::new();
        match v {
            V::Cells(c) => c
                .iter()
                .for_each(|w| value.extend_from_slice(&w.to_be_bytes())),
            V::Str(s) => {
                value.extend_from_slice(s.as_bytes());
                value.push(0);
            }
            V::Raw(r) => value.extend_from_slice(r),
        }
        let nameoff = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.word(FDT_PROP);
        self.word(value.len() as u32);
        self.word(nameoff);
        self.structs.extend_from_slice(&value);
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
        self
    }
    fn finish(&mut self) -> StdVec<u8> {
        self.word(FDT_END);
        let rsv = 40;
        let off_struct = rsv + 16;
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let mut out = StdVec::new();
        for w in [
            MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            rsv as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.structs);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A tree with a host bridge and two SMMUs behind a translating bus, a
/// disabled memory node and a second memory node with 1-cell sizes.
fn synthetic(extra_bridge_props: impl Fn(&mut Writer)) -> StdVec<u8> {
    let mut w = Writer::default();
    w.begin("")
        .prop("#address-cells", V::Cells(&[2]))
        .prop("#size-cells", V::Cells(&[2]))
        .begin("chosen")
        .prop("bootargs", V::Str("a=b c"))
        .end()
        .begin("memory@80000000")
        .prop("device_type", V::Str("memory"))
        .prop(
            "reg",
            V::Cells(&[0, 0x8000_0000, 0, 0x4000_0000, 0x8, 0, 0, 0x1000_0000]),
        )
        .end()
        .begin("memory@c0000000")
        .prop("device_type", V::Str("memory"))
        .prop("status", V::Str("disabled"))
        .prop("reg", V::Cells(&[0, 0xc000_0000, 0, 0x1000]))
        .end()
        .begin("bus@1000000")
        .prop("compatible", V::Str("simple-bus"))
        .prop("#address-cells", V::Cells(&[1]))
        .prop("#size-cells", V::Cells(&[1]))
        .prop("ranges", V::Cells(&[0, 0x1, 0x0, 0x1000_0000]))
        .begin("iommu@200000")
        .prop("compatible", V::Raw(b"vendor,thing\0arm,smmu-v3\0"))
        .prop("reg", V::Cells(&[0x20_0000, 0x2_0000]))
        .prop("phandle", V::Cells(&[7]))
        .end()
        .begin("iommu@400000")
        .prop("compatible", V::Str("arm,smmu-v3"))
        .prop("reg", V::Cells(&[0x40_0000, 0x2_0000]))
        .prop("linux,phandle", V::Cells(&[9]))
        .end()
        .end()
        .begin("pcie@40000000");
    // First occurrence of a property wins: the extras override the defaults below.
    extra_bridge_props(&mut w);
    w.prop("compatible", V::Str("pci-host-ecam-generic"))
        .prop("device_type", V::Str("pci"))
        .prop("#address-cells", V::Cells(&[3]))
        .prop("#size-cells", V::Cells(&[1]))
        .prop("reg", V::Cells(&[0, 0x4000_0000, 0, 0x0080_0000]))
        .prop("bus-range", V::Cells(&[0x10, 0x3f]))
        .prop("linux,pci-domain", V::Cells(&[3]))
        .prop(
            "ranges",
            V::Cells(&[
                0x0000_0000,
                0,
                0,
                0,
                0x3000_0000,
                0x1000, // config: skipped
                0x4200_0000,
                0,
                0x2000_0000,
                0,
                0x2000_0000,
                0x1000_0000, // prefetch mem32
                0x4300_0000,
                0x2,
                0,
                0x10,
                0,
                0x4000_0000, // prefetch mem64
            ]),
        );
    w.end().end().finish()
}

/// Overwrites header word `i` (big-endian) of a blob.
fn set_header(blob: &mut [u8], i: usize, v: u32) {
    blob[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
}
