//! `SmmuV3Inv::parse` / `from_words` and `for_each_command`: the commands a
//! guest issues through its virtual SMMU (`struct
//! iommu_viommu_arm_smmuv3_invalidate` entries), with a fuzzed data type,
//! entry length, count, the guest's virtual StreamIDs and a callback that
//! may fail.
//!
//! Asserts: no panic; `SmmuV3Inv::parse` on the raw bytes and `from_words`
//! on their first two words agree with a model written here from the doc
//! comment and the Arm SMMUv3 command layouts (accepted exactly when the
//! model accepts, refused naming the model's field and value); the walk
//! hands `f` exactly the model's entries before the first bad one (or the
//! one `f` refused), in order, each with its StreamID replaced by the real
//! one (a virtual ID the guest does not have stops the walk with
//! `cmd[0].SID`); `handled` is that prefix and equals the reported error
//! index; the error is the one the model expects there; each handed
//! command's `to_words` / `to_bytes` is the entry's words with the real
//! StreamID (TLBI_NSNH_ALL issued as TLBI_NH_ALL) and parses back to the
//! same command; a wrong data type is refused at index 0 with nothing
//! handled.

#![no_main]

use iommu::Error;
use iommu::core::{InvalidateOutcome, VirtualIds};
use iommu::drivers::smmuv3::user::{
    INVALIDATE_DATA_ARM_SMMUV3, SmmuV3Inv, TlbiRange, for_each_command,
};
use iommu_fuzz::cmds::{self, Ids};
use iommu_fuzz::le_u64;
use libfuzzer_sys::fuzz_target;

const SIZE: usize = 16;

/// Bits `hi..=lo`, built bit by bit.
fn bits(hi: u32, lo: u32) -> u64 {
    (lo..=hi).fold(0, |acc, b| acc | 1u64 << b)
}

/// Field `hi..=lo` of `w`, shifted down.
fn field(w: u64, hi: u32, lo: u32) -> u64 {
    (w & bits(hi, lo)) >> lo
}

// Opcodes a guest may issue.
const CFGI_CD: u8 = 0x05;
const CFGI_CD_ALL: u8 = 0x06;
const TLBI_NH_ALL: u8 = 0x10;
const TLBI_NH_ASID: u8 = 0x11;
const TLBI_NH_VA: u8 = 0x12;
const TLBI_NH_VAA: u8 = 0x13;
const TLBI_NSNH_ALL: u8 = 0x30;
const ATC_INV: u8 = 0x40;

// Command fields (dword 0 then dword 1), in place.
fn vmid() -> u64 {
    bits(47, 32)
}
fn asid() -> u64 {
    bits(63, 48)
}
fn num() -> u64 {
    bits(16, 12)
}
fn scale() -> u64 {
    bits(24, 20)
}
fn global() -> u64 {
    bits(9, 9)
}
fn ssv() -> u64 {
    bits(11, 11)
}
fn ssid() -> u64 {
    bits(31, 12)
}
fn sid() -> u64 {
    bits(63, 32)
}
fn leaf() -> u64 {
    bits(0, 0)
}
fn ttl() -> u64 {
    bits(9, 8)
}
fn tg() -> u64 {
    bits(11, 10)
}
fn size() -> u64 {
    bits(5, 0)
}
fn addr() -> u64 {
    bits(63, 12)
}

/// Whether the command has a VMID field (the TLBIs but NSNH_ALL), the
/// fields of dword 0 (besides the opcode, 7:0) and those of dword 1, for
/// each accepted opcode; `None` for any other opcode. (VMID 47:32 lies
/// inside StreamID 63:32, so which one a command has is told by its
/// opcode, not by its bits.)
fn layout(op: u8) -> Option<(bool, [u64; 2])> {
    let range1 = leaf() | ttl() | tg() | addr();
    Some(match op {
        TLBI_NSNH_ALL => (false, [0, 0]),
        TLBI_NH_ALL => (true, [vmid(), 0]),
        TLBI_NH_ASID => (true, [vmid() | asid(), 0]),
        TLBI_NH_VA => (true, [num() | scale() | vmid() | asid(), range1]),
        TLBI_NH_VAA => (true, [num() | scale() | vmid(), range1]),
        ATC_INV => (false, [global() | ssv() | ssid() | sid(), size() | addr()]),
        CFGI_CD => (false, [ssid() | sid(), leaf()]),
        CFGI_CD_ALL => (false, [sid(), 0]),
        _ => return None,
    })
}

/// Why the model stops at an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// `OutOfRange` naming this, with this value.
    OutOfRange(&'static str, u64),
    /// `InvalidField` naming this field, with this value.
    Invalid(&'static str, u64),
    /// The callback's own error.
    Callback,
}

/// The callback's error, told apart from anything the crate returns.
const SENTINEL: Error = Error::Busy {
    what: "fuzz callback",
};

/// A command the model accepts: the value (StreamID still the guest's), the
/// virtual StreamID it names if any, and the words it must be issued as.
#[derive(Clone, Copy, Debug)]
struct Accepted {
    inv: SmmuV3Inv,
    sid: Option<u32>,
    words: [u64; 2],
}

/// One command's words.
fn model_words(w: [u64; 2]) -> Result<Accepted, Stop> {
    let op = (w[0] & 0xff) as u8;
    let Some((has_vmid, fields)) = layout(op) else {
        return Err(Stop::Invalid("cmd[0].OPCODE", op.into()));
    };
    if has_vmid && w[0] & vmid() != 0 {
        return Err(Stop::Invalid("cmd[0].VMID", field(w[0], 47, 32)));
    }
    let stray0 = w[0] & !(fields[0] | 0xff);
    if stray0 != 0 {
        return Err(Stop::Invalid("cmd[0].RES0", stray0));
    }
    let stray1 = w[1] & !fields[1];
    if stray1 != 0 {
        return Err(Stop::Invalid("cmd[1].RES0", stray1));
    }

    let range = || {
        let r = TlbiRange {
            addr: w[1] & addr(),
            leaf: w[1] & leaf() != 0,
            num: field(w[0], 16, 12) as u8,
            scale: field(w[0], 24, 20) as u8,
            tg: field(w[1], 11, 10) as u8,
            ttl: field(w[1], 9, 8) as u8,
        };
        if r.tg == 0 {
            for (name, v) in [
                ("cmd[0].NUM", r.num),
                ("cmd[0].SCALE", r.scale),
                ("cmd[1].TTL", r.ttl),
            ] {
                if v != 0 {
                    return Err(Stop::Invalid(name, v.into()));
                }
            }
        }
        Ok(r)
    };
    let the_sid = field(w[0], 63, 32) as u32;
    let the_ssid = field(w[0], 31, 12) as u32;
    let the_asid = field(w[0], 63, 48) as u16;
    let inv = match op {
        TLBI_NSNH_ALL | TLBI_NH_ALL => SmmuV3Inv::TlbiNhAll,
        TLBI_NH_ASID => SmmuV3Inv::TlbiNhAsid { asid: the_asid },
        TLBI_NH_VA => SmmuV3Inv::TlbiNhVa {
            asid: the_asid,
            range: range()?,
        },
        TLBI_NH_VAA => SmmuV3Inv::TlbiNhVaa { range: range()? },
        ATC_INV => {
            let has_ssv = w[0] & ssv() != 0;
            let is_global = w[0] & global() != 0;
            if !has_ssv && the_ssid != 0 {
                return Err(Stop::Invalid("cmd[0].SSID", the_ssid.into()));
            }
            if !has_ssv && is_global {
                return Err(Stop::Invalid("cmd[0].Global", 1));
            }
            let sz = field(w[1], 5, 0);
            if sz > 52 {
                return Err(Stop::Invalid("cmd[1].Size", sz));
            }
            // 2^Size pages of 4 KiB: the address is aligned to that span
            // (Size 52, everything, spans all 64 bits).
            let a = w[1] & addr();
            let span = u128::from(1u64 << sz) * 4096;
            if u128::from(a) % span != 0 {
                return Err(Stop::Invalid("cmd[1].Address", a));
            }
            SmmuV3Inv::AtcInv {
                sid: the_sid,
                ssid: has_ssv.then_some(the_ssid),
                addr: a,
                size: sz as u8,
                global: is_global,
            }
        }
        CFGI_CD => SmmuV3Inv::CfgiCd {
            sid: the_sid,
            ssid: the_ssid,
            leaf: w[1] & leaf() != 0,
        },
        CFGI_CD_ALL => SmmuV3Inv::CfgiCdAll { sid: the_sid },
        _ => unreachable!(),
    };
    // Issued as the guest wrote it, but for NSNH_ALL, which is issued as
    // NH_ALL (the guest's VMID is the host's to choose).
    let mut words = w;
    if op == TLBI_NSNH_ALL {
        words[0] = u64::from(TLBI_NH_ALL);
    }
    Ok(Accepted {
        inv,
        sid: matches!(op, ATC_INV | CFGI_CD | CFGI_CD_ALL).then_some(the_sid),
        words,
    })
}

/// The record rule (at least 16 bytes, the rest zero), then the words.
fn model_entry(e: &[u8]) -> Result<Accepted, Stop> {
    if e.len() < SIZE {
        return Err(Stop::OutOfRange("user data length", e.len() as u64));
    }
    if let Some(i) = e[SIZE..].iter().position(|&b| b != 0) {
        return Err(Stop::Invalid("trailing bytes", (SIZE + i) as u64));
    }
    model_words([le_u64(e, 0), le_u64(e, 8)])
}

/// `a` with its StreamID the real one: the value and the words.
fn resolved(a: &Accepted, real: u32) -> (SmmuV3Inv, [u64; 2]) {
    let mut inv = a.inv;
    match &mut inv {
        SmmuV3Inv::AtcInv { sid, .. }
        | SmmuV3Inv::CfgiCd { sid, .. }
        | SmmuV3Inv::CfgiCdAll { sid } => *sid = real,
        _ => panic!("no StreamID in {inv:?}"),
    }
    let mut words = a.words;
    words[0] = (words[0] & !sid()) | u64::from(real) << 32;
    (inv, words)
}

/// Which stop an error is, `None` for anything the crate must never return.
fn classify(e: Error) -> Option<Stop> {
    match e {
        Error::OutOfRange { what, value } => Some(Stop::OutOfRange(what, value)),
        Error::InvalidField { field, value } => Some(Stop::Invalid(field, value)),
        e if e == SENTINEL => Some(Stop::Callback),
        _ => None,
    }
}

/// Entries the walk hands over (value and words), and where and why it stops.
type Walk = (Vec<(SmmuV3Inv, [u64; 2])>, Option<(usize, Stop)>);

fn model_walk(
    data_type: u32,
    data: &[u8],
    entry_len: usize,
    count: usize,
    fail_at: Option<usize>,
    ids: &Ids,
) -> Walk {
    let mut handed = Vec::new();
    if data_type != INVALIDATE_DATA_ARM_SMMUV3 {
        return (
            handed,
            Some((0, Stop::Invalid("data_type", data_type.into()))),
        );
    }
    if count == 0 {
        return (handed, None);
    }
    if entry_len < SIZE {
        return (
            handed,
            Some((0, Stop::OutOfRange("entry_len", entry_len as u64))),
        );
    }
    // Bounded by the data: every entry is at least 16 bytes.
    for i in 0..count {
        let rest = i
            .checked_mul(entry_len)
            .and_then(|start| data.get(start..))
            .unwrap_or(&[]);
        let Some(entry) = rest.get(..entry_len) else {
            let stop = Stop::OutOfRange("user data length", rest.len() as u64);
            return (handed, Some((i, stop)));
        };
        let a = match model_entry(entry) {
            Ok(a) => a,
            Err(stop) => return (handed, Some((i, stop))),
        };
        // The guest's own map, looked up here by hand.
        let issued = match a.sid {
            None => (a.inv, a.words),
            Some(v) => match ids.0.iter().find(|p| p.0 == v) {
                Some(&(_, real)) => resolved(&a, real),
                None => {
                    let stop = Stop::Invalid("cmd[0].SID", v.into());
                    return (handed, Some((i, stop)));
                }
            },
        };
        if fail_at == Some(i) {
            return (handed, Some((i, Stop::Callback)));
        }
        handed.push(issued);
    }
    (handed, None)
}

fn to_bytes(w: [u64; 2]) -> [u8; SIZE] {
    let mut b = [0u8; SIZE];
    b[..8].copy_from_slice(&w[0].to_le_bytes());
    b[8..].copy_from_slice(&w[1].to_le_bytes());
    b
}

/// An accepted command is issued as `words`, and parses back to itself.
fn check_issued(v: &SmmuV3Inv, words: [u64; 2]) {
    assert_eq!(v.to_words(), words, "{v:?}");
    assert_eq!(v.to_command().words(), words);
    assert_eq!(v.to_bytes(), to_bytes(words));
    assert_eq!(SmmuV3Inv::from_words(words), Ok(*v));
    assert_eq!(SmmuV3Inv::parse(&v.to_bytes()), Ok(*v));
    // The VMID is never the guest's: zero in every TLBI issued.
    if matches!(words[0] & 0xff, 0x10..=0x13) {
        assert_eq!(words[0] & vmid(), 0);
    }
}

fuzz_target!(|data: &[u8]| {
    let (array, fail_at, ids) = cmds::decode(data);

    // One command: the whole data as a record of any length, and its first
    // two words without the record rule.
    let raw = [le_u64(array.data, 0), le_u64(array.data, 8)];
    match (SmmuV3Inv::from_words(raw), model_words(raw)) {
        (Ok(mut v), Ok(a)) => {
            assert_eq!(v, a.inv);
            check_issued(&v, a.words);
            // `sid_mut` reaches exactly the StreamID the command names.
            assert_eq!(v.sid_mut().map(|s| *s), a.sid);
        }
        (Err(e), Err(stop)) => assert_eq!(classify(e), Some(stop), "{e:?}"),
        (got, want) => panic!("from_words gave {got:?}, model {want:?}"),
    }
    match (SmmuV3Inv::parse(array.data), model_entry(array.data)) {
        (Ok(v), Ok(a)) => {
            assert_eq!(v, a.inv);
            check_issued(&v, a.words);
        }
        (Err(e), Err(stop)) => assert_eq!(classify(e), Some(stop), "{e:?}"),
        (got, want) => panic!("parse gave {got:?}, model {want:?}"),
    }

    // The array.
    let mut handed = Vec::new();
    let out: InvalidateOutcome = for_each_command(&array, &ids as &dyn VirtualIds, |v| {
        if fail_at == Some(handed.len()) {
            return Err(SENTINEL);
        }
        handed.push(v);
        Ok(())
    });
    let (want, want_stop) = model_walk(
        array.data_type,
        array.data,
        array.entry_len,
        array.count,
        fail_at,
        &ids,
    );

    // `handled` is the prefix handed to `f`, and the error is at `handled`.
    assert_eq!(out.handled, handed.len());
    match out.error {
        Some((i, e)) => {
            assert_eq!(i, out.handled);
            let stop = classify(e).unwrap_or_else(|| panic!("walk returned {e:?}"));
            assert_eq!(Some((i, stop)), want_stop);
        }
        None => {
            assert_eq!(want_stop, None);
            assert_eq!(out.handled, array.count);
        }
    }
    if array.data_type != INVALIDATE_DATA_ARM_SMMUV3 {
        assert_eq!(out.handled, 0);
        assert_eq!(
            out.error,
            Some((
                0,
                Error::InvalidField {
                    field: "data_type",
                    value: array.data_type.into(),
                }
            ))
        );
    }

    // Exactly the model's entries, in order, each naming the real device.
    assert_eq!(handed.len(), want.len());
    for (v, (w, words)) in handed.iter().zip(&want) {
        assert_eq!(v, w);
        check_issued(v, *words);
        let mut c = *v;
        if let Some(real) = c.sid_mut().map(|s| *s) {
            assert!(ids.0.iter().any(|p| p.1 == real), "{v:?} not a real ID");
        }
    }
});
