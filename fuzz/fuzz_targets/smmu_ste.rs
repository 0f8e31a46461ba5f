//! `SmmuV3Ste::parse` and `SmmuV3Ste::from_words`: a guest's virtual STE
//! (`struct iommu_hwpt_arm_smmuv3`, STE dwords 0 and 1), untrusted bytes of
//! any length, against fuzzed caps.
//!
//! Asserts: no panic; `from_words` on the record's first two words and
//! `parse` on the record agree with a model written here from the doc
//! comment and the Arm SMMUv3 STE layout (accepted exactly when the model
//! accepts, refused with the error kind, field and value the model names);
//! an entry with V = 0 is kept as two zero words; an accepted valid entry
//! keeps exactly its words, only permitted bits among them, respects the
//! caps, and its accessors (`config`, `s1_context_ptr`, `s1_cd_max`,
//! `s1_fmt`, `s1dss`, `eats`, ...) agree with the model; `to_bytes` gives
//! back the record's first 16 bytes (zeros for V = 0) and parses back to
//! the same value.

#![no_main]

use iommu::Error;
use iommu::drivers::smmuv3::user::{CdTableFormat, S1Dss, SmmuV3Ste, SmmuV3SteCaps, SteConfig};
use iommu_fuzz::{le_u64, ste};
use libfuzzer_sys::fuzz_target;

const SIZE: usize = 16;

/// Bits `hi..=lo`, built bit by bit.
fn bits(hi: u32, lo: u32) -> u64 {
    (lo..=hi).fold(0, |acc, b| acc | 1u64 << b)
}

// Dword 0: V 0, Config 3:1, S1Fmt 5:4, S1ContextPtr 51:6, S1CDMax 63:59.
// Dword 1: S1DSS 1:0, S1CIR 3:2, S1COR 5:4, S1CSH 7:6, S1STALLD 27,
// EATS 29:28. Everything else belongs to the host.
fn v(w: [u64; 2]) -> bool {
    w[0] & 1 == 1
}
fn cfg(w: [u64; 2]) -> u64 {
    (w[0] >> 1) & 0b111
}
fn s1fmt(w: [u64; 2]) -> u64 {
    (w[0] >> 4) & 0b11
}
fn context_ptr(w: [u64; 2]) -> u64 {
    w[0] & bits(51, 6)
}
fn cd_max(w: [u64; 2]) -> u64 {
    w[0] >> 59
}
fn s1dss(w: [u64; 2]) -> u64 {
    w[1] & 0b11
}
fn eats(w: [u64; 2]) -> u64 {
    (w[1] >> 28) & 0b11
}

/// The bits a guest may set in each word.
fn allowed() -> [u64; 2] {
    [
        bits(0, 0) | bits(3, 1) | bits(5, 4) | bits(51, 6) | bits(63, 59),
        bits(1, 0) | bits(3, 2) | bits(5, 4) | bits(7, 6) | bits(27, 27) | bits(29, 28),
    ]
}

/// The forbidden ranges, in the order they are reported.
fn forbidden() -> [(usize, &'static str, u64); 3] {
    [
        (0, "ste[0][58:52]", bits(58, 52)),
        (1, "ste[1][26:8]", bits(26, 8)),
        (1, "ste[1][63:30]", bits(63, 30)),
    ]
}

const ABORT: u64 = 0b000;
const BYPASS: u64 = 0b100;
const S1_TRANS: u64 = 0b101;

/// Why the model refuses a record.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Shorter than the record: `OutOfRange("user data length", len)`.
    Short(u64),
    /// `InvalidField` naming this field, with this value.
    Invalid(&'static str, u64),
    /// `Unsupported` naming this.
    Unsupported(&'static str),
}

/// The words the value keeps, or why the words are refused.
fn model_words(w: [u64; 2], caps: &SmmuV3SteCaps) -> Result<[u64; 2], Refusal> {
    if !v(w) {
        return Ok([0, 0]);
    }
    // The doc: "named `ste[w][hi:lo]` after the first such range, value the
    // bits set in it". The ranges are exactly the complement of `allowed`.
    let allowed = allowed();
    for (word, name, range) in forbidden() {
        assert_eq!(range & allowed[word], 0);
        if w[word] & range != 0 {
            return Err(Refusal::Invalid(name, w[word] & range));
        }
    }
    assert_eq!(w[0] & !allowed[0], 0);
    assert_eq!(w[1] & !allowed[1], 0);
    let c = cfg(w);
    if !matches!(c, ABORT | BYPASS | S1_TRANS) {
        return Err(Refusal::Invalid("ste[0].CFG", c));
    }
    if eats(w) > 1 {
        return Err(Refusal::Invalid("ste[1].EATS", eats(w)));
    }
    if c == S1_TRANS {
        if cd_max(w) > u64::from(caps.ssid_bits) {
            return Err(Refusal::Unsupported("ste[0].S1CDMax"));
        }
        if cd_max(w) > 0 {
            match s1fmt(w) {
                0 => {}
                1 | 2 if caps.two_level_cd => {}
                1 | 2 => return Err(Refusal::Unsupported("ste[0].S1Fmt")),
                f => return Err(Refusal::Invalid("ste[0].S1Fmt", f)),
            }
            if s1dss(w) == 0b11 {
                return Err(Refusal::Invalid("ste[1].S1DSS", 0b11));
            }
        }
        let ptr = context_ptr(w);
        if caps.oas_bits < 64 && ptr >> caps.oas_bits != 0 {
            return Err(Refusal::Invalid("ste[0].S1ContextPtr", ptr));
        }
    }
    Ok(w)
}

/// The record rule (at least 16 bytes, the rest zero), then the words.
fn model(rec: &[u8], caps: &SmmuV3SteCaps) -> Result<[u64; 2], Refusal> {
    if rec.len() < SIZE {
        return Err(Refusal::Short(rec.len() as u64));
    }
    if let Some(i) = rec[SIZE..].iter().position(|&b| b != 0) {
        return Err(Refusal::Invalid("trailing bytes", (SIZE + i) as u64));
    }
    model_words([le_u64(rec, 0), le_u64(rec, 8)], caps)
}

fn check_refusal(e: Error, want: &Refusal, what: &str) {
    match (e, want) {
        (
            Error::OutOfRange {
                what: "user data length",
                value,
            },
            Refusal::Short(len),
        ) => assert_eq!(value, *len),
        (Error::InvalidField { field, value }, Refusal::Invalid(f, v)) => {
            assert_eq!((field, value), (*f, *v), "{what}")
        }
        (Error::Unsupported { what: w }, Refusal::Unsupported(m)) => assert_eq!(w, *m, "{what}"),
        (e, want) => panic!("{what} refused with {e:?}, model says {want:?}"),
    }
}

/// Every accessor against the model's reading of the kept words `w`.
fn check_value(s: &SmmuV3Ste, w: [u64; 2], caps: &SmmuV3SteCaps) {
    assert_eq!(s.words(), w);
    let mut bytes = [0u8; SIZE];
    bytes[..8].copy_from_slice(&w[0].to_le_bytes());
    bytes[8..].copy_from_slice(&w[1].to_le_bytes());
    assert_eq!(s.to_bytes(), bytes);
    assert_eq!(SmmuV3Ste::parse(&s.to_bytes(), caps).as_ref(), Ok(s));
    assert_eq!(SmmuV3Ste::from_words(s.words(), caps).as_ref(), Ok(s));

    assert_eq!(s.is_valid(), v(w));
    let config = match (v(w), cfg(w)) {
        (false, _) => SteConfig::Abort,
        (true, BYPASS) => SteConfig::Bypass,
        (true, S1_TRANS) => SteConfig::S1Translate,
        (true, ABORT) => SteConfig::Abort,
        (true, c) => panic!("accepted Config {c:#b}"),
    };
    assert_eq!(s.config(), config);
    let s1 = config == SteConfig::S1Translate;
    let substreams = s1 && cd_max(w) > 0;
    assert_eq!(s.s1_context_ptr(), s1.then_some(context_ptr(w)));
    assert_eq!(s.s1_cd_max(), s1.then_some(cd_max(w) as u8));
    assert_eq!(s.has_substreams(), substreams);
    // With one descriptor (S1CDMax 0) S1Fmt is ignored: linear.
    let fmt = s1.then(|| match (cd_max(w), s1fmt(w)) {
        (0, _) | (_, 0) => CdTableFormat::Linear,
        (_, 1) => CdTableFormat::TwoLevel4K,
        (_, 2) => CdTableFormat::TwoLevel64K,
        (_, f) => panic!("accepted S1Fmt {f} with substreams"),
    });
    assert_eq!(s.s1_fmt(), fmt);
    let dss = substreams.then(|| match s1dss(w) {
        0 => S1Dss::Terminate,
        1 => S1Dss::Bypass,
        2 => S1Dss::Ssid0,
        d => panic!("accepted S1DSS {d} with substreams"),
    });
    assert_eq!(s.s1dss(), dss);
    assert_eq!(s.eats(), s1 && eats(w) == 1);

    // The caps hold, independently of the model's order of checks.
    let allowed = allowed();
    assert_eq!(w[0] & !allowed[0], 0);
    assert_eq!(w[1] & !allowed[1], 0);
    if let Some(ptr) = s.s1_context_ptr() {
        assert_eq!(ptr & 0x3f, 0);
        if caps.oas_bits < 64 {
            assert_eq!(ptr >> caps.oas_bits, 0);
        }
    }
    if let Some(m) = s.s1_cd_max() {
        assert!(u32::from(m) <= caps.ssid_bits);
    }
    if s.has_substreams() && s.s1_fmt() != Some(CdTableFormat::Linear) {
        assert!(caps.two_level_cd);
    }
}

fuzz_target!(|data: &[u8]| {
    let (caps, rec) = ste::decode(data);

    // The words alone, without the record rule.
    let words = [le_u64(rec, 0), le_u64(rec, 8)];
    match (
        SmmuV3Ste::from_words(words, &caps),
        model_words(words, &caps),
    ) {
        (Ok(s), Ok(w)) => check_value(&s, w, &caps),
        (Err(e), Err(want)) => check_refusal(e, &want, "from_words"),
        (got, want) => panic!("from_words gave {got:?}, model {want:?} (caps {caps:?})"),
    }

    // The record.
    match (SmmuV3Ste::parse(rec, &caps), model(rec, &caps)) {
        (Ok(s), Ok(w)) => {
            check_value(&s, w, &caps);
            if v(w) {
                // A valid entry keeps the record's words exactly.
                assert_eq!(s.to_bytes()[..], rec[..SIZE]);
            } else {
                assert_eq!(s.words(), [0, 0]);
            }
        }
        (Err(e), Err(want)) => check_refusal(e, &want, "parse"),
        (got, want) => panic!("parse gave {got:?}, model {want:?} (caps {caps:?})"),
    }
});
