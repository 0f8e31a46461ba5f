//! `VtdS1Inv::parse` and `for_each_invalidation`: a guest's cache
//! invalidation array (`struct iommu_hwpt_vtd_s1_invalidate` entries), with
//! a fuzzed data type, entry length, count and a callback that may fail.
//!
//! Asserts: no panic; `VtdS1Inv::parse` on the raw bytes agrees with a model
//! written here from the uAPI layout; the walk hands `f` exactly the entries
//! before the first bad one (or the one `f` refused), in order, each the
//! model's value, re-encoding to the entry's first 24 bytes (a leaf hint on
//! an "everything" entry is dropped: accepted with no effect, as documented);
//! `handled` is that prefix and equals the reported error index; the error
//! is the one the model expects there; a range entry ends at or below 2^64;
//! a wrong data type is refused at index 0 with nothing handled.

#![no_main]

use iommu::Error;
use iommu::core::InvalidateOutcome;
use iommu::drivers::vtd::user::{INVALIDATE_DATA_VTD_S1, VtdS1Inv, for_each_invalidation};
use iommu_fuzz::{inv_array, le_u32, le_u64};
use libfuzzer_sys::fuzz_target;

const SIZE: usize = 24;
/// `IOMMU_VTD_INV_FLAGS_LEAF`.
const LEAF: u32 = 1;
const PAGE: u128 = 4096;

/// Why the model stops at an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// `OutOfRange` naming this.
    OutOfRange(&'static str),
    /// `InvalidField` naming this field.
    Invalid(&'static str),
    /// The callback's own error.
    Callback,
}

/// The callback's error, told apart from anything the crate returns.
const SENTINEL: Error = Error::Busy {
    what: "fuzz callback",
};

/// One entry: the accepted value, or why not.
fn model_entry(e: &[u8]) -> Result<VtdS1Inv, Stop> {
    if e.len() < SIZE {
        return Err(Stop::OutOfRange("user data length"));
    }
    if e[SIZE..].iter().any(|&b| b != 0) {
        return Err(Stop::Invalid("trailing bytes"));
    }
    let addr = le_u64(e, 0);
    let npages = le_u64(e, 8);
    let flags = le_u32(e, 16);
    let reserved = le_u32(e, 20);
    if flags & !LEAF != 0 {
        return Err(Stop::Invalid("flags"));
    }
    if reserved != 0 {
        return Err(Stop::Invalid("__reserved"));
    }
    if addr & 0xfff != 0 {
        return Err(Stop::Invalid("addr"));
    }
    if npages == u64::MAX {
        return if addr == 0 {
            Ok(VtdS1Inv::All)
        } else {
            Err(Stop::Invalid("addr"))
        };
    }
    if npages == 0 || u128::from(addr) + u128::from(npages) * PAGE > 1u128 << 64 {
        return Err(Stop::Invalid("npages"));
    }
    Ok(VtdS1Inv::Range {
        addr,
        npages,
        leaf: flags & LEAF != 0,
    })
}

/// Which kind of stop an error is, `None` for anything the walk must never
/// return.
fn classify(e: Error) -> Option<Stop> {
    match e {
        Error::OutOfRange { what, .. } => Some(Stop::OutOfRange(what)),
        Error::InvalidField { field, .. } => Some(Stop::Invalid(field)),
        e if e == SENTINEL => Some(Stop::Callback),
        _ => None,
    }
}

/// Entries handed to the callback (value and bytes), and where the walk
/// stopped and why.
type Walk<'a> = (Vec<(VtdS1Inv, &'a [u8])>, Option<(usize, Stop)>);

/// The entries the walk must hand over, and where and why it must stop.
fn model_walk(
    data_type: u32,
    data: &[u8],
    entry_len: usize,
    count: usize,
    fail_at: Option<usize>,
) -> Walk<'_> {
    let mut handed = Vec::new();
    if data_type != INVALIDATE_DATA_VTD_S1 {
        return (handed, Some((0, Stop::Invalid("data_type"))));
    }
    if count == 0 {
        return (handed, None);
    }
    if entry_len < SIZE {
        return (handed, Some((0, Stop::OutOfRange("entry_len"))));
    }
    // Bounded by the data: every entry is at least 24 bytes.
    for i in 0..count {
        let entry = i
            .checked_mul(entry_len)
            .and_then(|start| data.get(start..)?.get(..entry_len));
        let Some(entry) = entry else {
            return (handed, Some((i, Stop::OutOfRange("user data length"))));
        };
        match model_entry(entry) {
            Err(stop) => return (handed, Some((i, stop))),
            Ok(_) if fail_at == Some(i) => return (handed, Some((i, Stop::Callback))),
            Ok(v) => handed.push((v, entry)),
        }
    }
    (handed, None)
}

/// The bytes an accepted entry re-encodes to: its first 24, less a leaf
/// hint on "everything" (accepted and without effect).
fn canonical(v: &VtdS1Inv, entry: &[u8]) -> [u8; SIZE] {
    let mut b: [u8; SIZE] = entry[..SIZE].try_into().unwrap();
    if *v == VtdS1Inv::All {
        b[16..20].copy_from_slice(&0u32.to_le_bytes());
    }
    b
}

fn check_range_end(v: &VtdS1Inv) {
    if let VtdS1Inv::Range { addr, npages, .. } = *v {
        assert_eq!(addr & 0xfff, 0);
        assert_ne!(npages, 0);
        assert!(u128::from(addr) + u128::from(npages) * PAGE <= 1u128 << 64);
    }
}

fuzz_target!(|data: &[u8]| {
    let (array, fail_at) = inv_array::decode(data);

    // One entry: the whole data as a record of any length.
    let one = VtdS1Inv::parse(array.data);
    match (one, model_entry(array.data)) {
        (Ok(v), Ok(w)) => {
            assert_eq!(v, w);
            check_range_end(&v);
            assert_eq!(v.to_bytes(), canonical(&v, array.data));
            assert_eq!(VtdS1Inv::parse(&v.to_bytes()), Ok(v));
        }
        (Err(e), Err(stop)) => assert_eq!(classify(e), Some(stop), "{e:?}"),
        (got, want) => panic!("parse gave {got:?}, model {want:?}"),
    }

    // The array.
    let mut handed = Vec::new();
    let out: InvalidateOutcome = for_each_invalidation(&array, |v| {
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
    );

    // `handled` is the prefix handed to `f`, and the error is at `handled`.
    assert_eq!(out.handled, handed.len());
    match out.error {
        Some((i, e)) => {
            assert_eq!(i, out.handled);
            let stop = classify(e).unwrap_or_else(|| panic!("walk returned {e:?}"));
            assert_eq!(Some((i, stop)), want_stop);
            if let Error::InvalidField {
                field: "data_type",
                value,
            } = e
            {
                assert_eq!(value, u64::from(array.data_type));
            }
        }
        None => {
            assert_eq!(want_stop, None);
            assert_eq!(out.handled, array.count);
        }
    }
    if array.data_type != INVALIDATE_DATA_VTD_S1 {
        assert_eq!(out.handled, 0);
        assert!(matches!(
            out.error,
            Some((
                0,
                Error::InvalidField {
                    field: "data_type",
                    ..
                }
            ))
        ));
    }

    // Exactly the model's entries, in order, each re-encoding to its bytes.
    assert_eq!(handed.len(), want.len());
    for (v, (w, entry)) in handed.iter().zip(&want) {
        assert_eq!(v, w);
        check_range_end(v);
        assert_eq!(v.to_bytes(), canonical(v, entry));
    }
});
