//! `evtq::decode`: an SMMUv3 event queue record (Arm SMMUv3 architecture,
//! "Event queue records"), 256 bits the SMMU writes for a device's faulting
//! transaction, whose content the device chooses by what it accesses.
//!
//! Asserts: no panic; `None` exactly when all four words are zero;
//! otherwise every field equals an extraction written here from the
//! architecture's bit positions, not from the crate's field table: a
//! stalled fault (Stall set) is `Stall` with the stall tag as its group,
//! anything else `Unrecoverable` with group 0; `evtq::encode` gives back
//! the record's decoded bits (so nothing decoded is dropped) and decodes
//! to the same fault, unless those bits are all zero (the record is
//! nonzero only in bits the decoder ignores): the fault then has every
//! field zero and can only encode to the all-zero record, which decodes to
//! `None` by definition.

#![no_main]

use iommu::core::{Access, Fault, FaultKind};
use iommu::drivers::smmuv3::evtq;
use iommu_fuzz::evt as input;
use libfuzzer_sys::fuzz_target;

/// Bit `n` of `w`.
fn bit(w: u64, n: u32) -> bool {
    (w >> n) & 1 == 1
}

/// The fault the record describes. Dword 0: 7:0 event ID, 11 SSV, 31:12
/// SubstreamID, 63:32 StreamID. Dword 1: 15:0 STAG, 31 Stall, 33 PnU
/// (privileged), 34 InD (instruction), 35 RnW (1 read, 0 write). Dword 2:
/// the input address. Dword 3 (IPA) and the other bits of dword 1 (S2,
/// CLASS, ...) are not decoded.
fn expected(instance: u16, w: [u64; 4]) -> Option<Fault> {
    if w == [0; 4] {
        return None;
    }
    let mut access = if bit(w[1], 35) {
        Access::READ
    } else {
        Access::WRITE
    };
    if bit(w[1], 34) {
        access |= Access::EXEC;
    }
    if bit(w[1], 33) {
        access |= Access::PRIV;
    }
    let stalled = bit(w[1], 31);
    Some(Fault {
        instance,
        device: (w[0] >> 32) as u32,
        pasid: bit(w[0], 11).then_some(((w[0] >> 12) & 0xf_ffff) as u32),
        addr: w[2],
        access,
        group: if stalled { (w[1] & 0xffff) as u16 } else { 0 },
        last: true,
        kind: if stalled {
            FaultKind::Stall
        } else {
            FaultKind::Unrecoverable
        },
        reason: (w[0] & 0xff) as u16,
    })
}

/// The bits of the record the decoder keeps: the SubstreamID only with
/// SSV, the stall tag only with Stall (without them the fields mean
/// nothing).
fn defined(w: [u64; 4]) -> [u64; 4] {
    let ssid = if bit(w[0], 11) { 0xf_ffff << 12 } else { 0 };
    let stag = if bit(w[1], 31) { 0xffff } else { 0 };
    [
        w[0] & (0xff | 1 << 11 | ssid | 0xffff_ffff << 32),
        w[1] & (stag | 1 << 31 | 1 << 33 | 1 << 34 | 1 << 35),
        w[2],
        0,
    ]
}

fuzz_target!(|data: &[u8]| {
    let (instance, words) = input::decode(data);
    let got = evtq::decode(instance, words);
    assert_eq!(got.is_none(), words == [0; 4]);
    assert_eq!(got, expected(instance, words), "record {words:#018x?}");
    if let Some(f) = got {
        // Exactly one of read and write: RnW says which.
        assert_ne!(
            f.access.contains(Access::READ),
            f.access.contains(Access::WRITE)
        );
        assert_eq!(f.kind == FaultKind::Stall, bit(words[1], 31));
        assert!(f.last);
        let back = evtq::encode(&f);
        assert_eq!(back, defined(words), "record {words:#018x?}");
        if back == [0; 4] {
            // Nonzero only in bits the decoder ignores (reserved bits, the
            // IPA, S2, CLASS, an SSID without SSV, a STAG without Stall):
            // every decoded field is zero, and the one record that encodes
            // is the all-zero one, which decodes to `None` ("nothing
            // written"), so this fault cannot round-trip.
            let zero = Fault {
                instance,
                access: Access::WRITE,
                ..Fault::EMPTY
            };
            assert_eq!(f, zero);
        } else {
            assert_eq!(
                evtq::decode(instance, back),
                Some(f),
                "record {words:#018x?}"
            );
        }
    }
});
