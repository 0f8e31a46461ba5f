//! `VtdS1::parse`: a guest's nested stage-1 configuration
//! (`struct iommu_hwpt_vtd_s1`), untrusted bytes of any length, against
//! fuzzed caps.
//!
//! Asserts: no panic; the result agrees with a model written here from the
//! uAPI layout (accepted exactly when the model accepts, and refused with the
//! error kind and field the model names: the first bad field in record
//! order); an accepted value respects the caps, its `levels()` follow its
//! `addr_width`, `to_bytes()` gives back the record's first 24 bytes, and
//! parsing those bytes again gives the same value.

#![no_main]

use iommu::Error;
use iommu::drivers::vtd::user::{VtdS1, VtdS1Caps, VtdS1Flags};
use iommu_fuzz::{le_u32, le_u64, s1};
use libfuzzer_sys::fuzz_target;

const SIZE: usize = 24;
/// `IOMMU_VTD_S1_SRE`, `IOMMU_VTD_S1_EAFE`, `IOMMU_VTD_S1_WPE`.
const SRE: u64 = 1 << 0;
const EAFE: u64 = 1 << 1;
const WPE: u64 = 1 << 2;

/// Why the model refuses a record.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Shorter than the record (`OutOfRange`).
    Short,
    /// `InvalidField` naming this field.
    Invalid(&'static str),
    /// `Unsupported` naming this.
    Unsupported(&'static str),
}

/// The accepted (flags, pgtbl_addr, addr_width), or why not.
fn model(rec: &[u8], caps: &VtdS1Caps) -> Result<(u64, u64, u32), Refusal> {
    if rec.len() < SIZE {
        return Err(Refusal::Short);
    }
    if rec[SIZE..].iter().any(|&b| b != 0) {
        return Err(Refusal::Invalid("trailing bytes"));
    }
    let flags = le_u64(rec, 0);
    let pgtbl = le_u64(rec, 8);
    let width = le_u32(rec, 16);
    let reserved = le_u32(rec, 20);
    if flags & !(SRE | EAFE | WPE) != 0 {
        return Err(Refusal::Invalid("flags"));
    }
    if flags & SRE != 0 && !caps.sre {
        return Err(Refusal::Unsupported("flags.SRE"));
    }
    if flags & EAFE != 0 && !caps.eafe {
        return Err(Refusal::Unsupported("flags.EAFE"));
    }
    let below_limit = caps.max_pa_bits >= 64 || pgtbl < (1u64 << caps.max_pa_bits);
    if pgtbl & 0xfff != 0 || !below_limit {
        return Err(Refusal::Invalid("pgtbl_addr"));
    }
    match (width, caps.five_level) {
        (48, _) | (57, true) => {}
        (57, false) => return Err(Refusal::Unsupported("addr_width")),
        _ => return Err(Refusal::Invalid("addr_width")),
    }
    if reserved != 0 {
        return Err(Refusal::Invalid("__reserved"));
    }
    Ok((flags, pgtbl, width))
}

fuzz_target!(|data: &[u8]| {
    let (caps, rec) = s1::decode(data);
    let got = VtdS1::parse(rec, &caps);
    match (got, model(rec, &caps)) {
        (Ok(v), Ok((flags, pgtbl, width))) => {
            // The value is the record's.
            assert_eq!(v.flags().bits(), flags);
            assert_eq!(v.pgtbl_addr(), pgtbl);
            assert_eq!(v.addr_width(), width);
            // It respects the caps, independently of the model.
            assert!(caps.sre || !v.flags().contains(VtdS1Flags::SRE));
            assert!(caps.eafe || !v.flags().contains(VtdS1Flags::EAFE));
            assert_eq!(v.pgtbl_addr() & 0xfff, 0);
            if caps.max_pa_bits < 64 {
                assert_eq!(v.pgtbl_addr() >> caps.max_pa_bits, 0);
            }
            assert!(v.addr_width() == 48 || (v.addr_width() == 57 && caps.five_level));
            assert_eq!(v.levels(), if v.addr_width() == 57 { 5 } else { 4 });
            // It round-trips.
            assert_eq!(v.to_bytes()[..], rec[..SIZE]);
            assert_eq!(VtdS1::parse(&v.to_bytes(), &caps), Ok(v));
        }
        (Err(e), Err(want)) => match (e, want) {
            (
                Error::OutOfRange {
                    what: "user data length",
                    value,
                },
                Refusal::Short,
            ) => assert_eq!(value, rec.len() as u64),
            (Error::InvalidField { field, .. }, Refusal::Invalid(f)) => assert_eq!(field, f),
            (Error::Unsupported { what }, Refusal::Unsupported(w)) => assert_eq!(what, w),
            (e, want) => panic!("refused with {e:?}, model says {want:?}"),
        },
        (got, want) => panic!("parse gave {got:?}, model {want:?} (caps {caps:?})"),
    }
});
