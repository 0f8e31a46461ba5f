//! `fault::decode`: a primary fault record (VT-d specification 11.4.14,
//! "Fault Recording Registers"), 128 bits whose content a device chooses by
//! what it accesses.
//!
//! Asserts: no panic; `None` exactly when F (bit 127, high-word bit 63) is
//! clear; otherwise every field equals an extraction written here from the
//! specification's bit positions, not from the crate's field table.

#![no_main]

use iommu::core::{Access, Fault, FaultKind};
use iommu::drivers::vtd::fault;
use iommu_fuzz::fault as input;
use libfuzzer_sys::fuzz_target;

/// Bit `n` of `w`.
fn bit(w: u64, n: u32) -> bool {
    (w >> n) & 1 == 1
}

/// The fault the record describes, from the specification's layout:
/// low word bits 63:12 fault info (the page, in place); high word bits 15:0
/// SID, 29 PRIV, 30 EXE, 31 PP, 39:32 FR, 59:40 PV, 62 T (1 read, 0 write),
/// 63 F.
fn expected(instance: u16, [lo, hi]: [u64; 2]) -> Option<Fault> {
    if !bit(hi, 63) {
        return None;
    }
    let mut access = if bit(hi, 62) {
        Access::READ
    } else {
        Access::WRITE
    };
    if bit(hi, 30) {
        access |= Access::EXEC;
    }
    if bit(hi, 29) {
        access |= Access::PRIV;
    }
    Some(Fault {
        instance,
        device: (hi & 0xffff) as u32,
        pasid: bit(hi, 31).then_some(((hi >> 40) & 0xf_ffff) as u32),
        addr: lo & !0xfff,
        access,
        group: 0,
        last: true,
        kind: FaultKind::Unrecoverable,
        reason: ((hi >> 32) & 0xff) as u16,
    })
}

fuzz_target!(|data: &[u8]| {
    let (instance, words) = input::decode(data);
    let got = fault::decode(instance, words);
    assert_eq!(got.is_none(), !bit(words[1], 63));
    assert_eq!(got, expected(instance, words), "record {words:#018x?}");
    if let Some(f) = got {
        // Exactly one of read and write: T says which.
        assert_ne!(
            f.access.contains(Access::READ),
            f.access.contains(Access::WRITE)
        );
        assert_eq!(f.addr & 0xfff, 0);
    }
});
