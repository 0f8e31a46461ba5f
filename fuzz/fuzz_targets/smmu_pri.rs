//! `priq::decode`: an SMMUv3 PRI queue record (Arm SMMUv3 architecture,
//! "PRI queue entries"), 128 bits the SMMU writes for a device's PCIe page
//! request, whose content the device chooses.
//!
//! Asserts: no panic; every record decodes (a request with every field
//! zero is still a request to answer), each field equal to an extraction
//! written here from the architecture's bit positions, not from the
//! crate's field table; the address is page aligned; `priq::encode` gives
//! back the record's decoded bits (so nothing decoded is dropped) and
//! decodes to the same fault.

#![no_main]

use iommu::core::{Access, Fault, FaultKind};
use iommu::drivers::smmuv3::priq;
use iommu_fuzz::pri as input;
use libfuzzer_sys::fuzz_target;

/// Bit `n` of `w`.
fn bit(w: u64, n: u32) -> bool {
    (w >> n) & 1 == 1
}

/// The page request the record describes. Dword 0: 31:0 StreamID, 51:32
/// SubstreamID, 58 Priv, 59 Exec, 60 Read, 61 Write, 62 Last, 63 SSV.
/// Dword 1: 8:0 PRG index, 63:12 page address.
fn expected(instance: u16, w: [u64; 2]) -> Fault {
    let mut access = Access::empty();
    for (on, a) in [
        (bit(w[0], 60), Access::READ),
        (bit(w[0], 61), Access::WRITE),
        (bit(w[0], 59), Access::EXEC),
        (bit(w[0], 58), Access::PRIV),
    ] {
        if on {
            access |= a;
        }
    }
    Fault {
        instance,
        device: (w[0] & 0xffff_ffff) as u32,
        pasid: bit(w[0], 63).then_some(((w[0] >> 32) & 0xf_ffff) as u32),
        addr: w[1] & !0xfff,
        access,
        group: (w[1] & 0x1ff) as u16,
        last: bit(w[0], 62),
        kind: FaultKind::PageRequest,
        reason: 0,
    }
}

/// The bits of the record the decoder keeps: the SubstreamID only with SSV
/// (without it the field means nothing).
fn defined(w: [u64; 2]) -> [u64; 2] {
    let ssid = if bit(w[0], 63) { 0xf_ffff << 32 } else { 0 };
    [
        w[0] & (0xffff_ffff | ssid | 0x3f << 58),
        w[1] & (0x1ff | !0xfff),
    ]
}

fuzz_target!(|data: &[u8]| {
    let (instance, words) = input::decode(data);
    let got = priq::decode(instance, words);
    assert_eq!(got, expected(instance, words), "record {words:#018x?}");
    let f = got;
    assert_eq!(f.addr & 0xfff, 0);
    let back = priq::encode(&f);
    assert_eq!(back, defined(words), "record {words:#018x?}");
    assert_eq!(priq::decode(instance, back), f, "record {words:#018x?}");
});
