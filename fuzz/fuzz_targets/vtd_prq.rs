//! `prq::decode`: a page request descriptor (VT-d specification 7.5.1,
//! "Page Request Descriptor"), 256 bits a device's page request (PCIe PRI)
//! puts in the page request queue.
//!
//! Asserts: no panic; `None` unless the type (bits 7:0) is 1; on `Some`,
//! every field equals an extraction written here from the specification's
//! bit positions, the address is page aligned, `prq::encode` gives back the
//! descriptor's defined bits (so nothing it carries is dropped), and decodes
//! to the same fault.

#![no_main]

use iommu::core::{Access, Fault, FaultKind};
use iommu::drivers::vtd::prq;
use iommu_fuzz::prq as input;
use libfuzzer_sys::fuzz_target;

/// Bit `n` of `w`.
fn bit(w: u64, n: u32) -> bool {
    (w >> n) & 1 == 1
}

/// The specification's layout. Word 0: 7:0 type (1: page request), 8 PASID
/// present, 31:16 requester ID, 51:32 PASID, 52 execute, 53 privileged.
/// Word 1: 0 read, 1 write, 2 last page in group, 11:3 PRGI, 63:12 page
/// address. Words 2 and 3: private data, not decoded.
fn expected(instance: u16, w: [u64; 4]) -> Option<Fault> {
    if w[0] & 0xff != 1 {
        return None;
    }
    let mut access = Access::empty();
    for (on, a) in [
        (bit(w[1], 0), Access::READ),
        (bit(w[1], 1), Access::WRITE),
        (bit(w[0], 52), Access::EXEC),
        (bit(w[0], 53), Access::PRIV),
    ] {
        if on {
            access |= a;
        }
    }
    Some(Fault {
        instance,
        device: ((w[0] >> 16) & 0xffff) as u32,
        pasid: bit(w[0], 8).then_some(((w[0] >> 32) & 0xf_ffff) as u32),
        addr: w[1] & !0xfff,
        access,
        group: ((w[1] >> 3) & 0x1ff) as u16,
        last: bit(w[1], 2),
        kind: FaultKind::PageRequest,
        reason: 0,
    })
}

/// The bits of word 0 the decoder keeps: type, PASID present, RID,
/// execute, privileged, and the PASID when PASID present is set (without
/// it the PASID field means nothing). Word 1 is all fields; words 2 and 3
/// none.
fn word0_defined(w0: u64) -> u64 {
    let pasid = if bit(w0, 8) { 0xf_ffff << 32 } else { 0 };
    w0 & (0xff | 1 << 8 | 0xffff << 16 | pasid | 1 << 52 | 1 << 53)
}

fuzz_target!(|data: &[u8]| {
    let (instance, words) = input::decode(data);
    let got = prq::decode(instance, words);
    assert_eq!(got.is_some(), words[0] & 0xff == 1);
    assert_eq!(got, expected(instance, words), "descriptor {words:#018x?}");
    if let Some(f) = got {
        assert_eq!(f.addr & 0xfff, 0);
        let back = prq::encode(&f);
        assert_eq!(back, [word0_defined(words[0]), words[1], 0, 0]);
        assert_eq!(prq::decode(instance, back), Some(f));
    }
});
