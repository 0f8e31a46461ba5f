//! Untrusted user data as the core hands it to a driver: bytes with the
//! type tag that says which driver format they are in, and the rules every
//! format shares.
//!
//! The core never reads a format. Nested-domain configurations
//! ([`UserData`]) and user invalidation arrays ([`UserArray`]) go to the
//! driver of the domain's IOMMU, which validates every field against its
//! capabilities and programs the hardware from the validated value, as
//! Linux's iommufd hands them to a driver's nested-alloc and
//! cache_invalidate_user operations. What is generic stays here: the record
//! rule of `copy_struct_from_user`, the walk over an array up to its first
//! bad entry, and the virtual-device-ID table a driver resolves guest IDs
//! through.

use crate::error::Error;

/// A user record in a driver format: `data_type` is the format's number
/// (iommufd's `enum iommu_hwpt_data_type`; each driver names its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserData<'a> {
    /// Which format the bytes are in.
    pub data_type: u32,
    /// The record, little-endian.
    pub bytes: &'a [u8],
}

/// An array of user invalidation entries: `count` entries of `entry_len`
/// bytes in `data`, in format `data_type` (iommufd's
/// `enum iommu_hwpt_invalidate_data_type`; each driver names its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserArray<'a> {
    /// Which format the entries are in.
    pub data_type: u32,
    /// The entries, back to back.
    pub data: &'a [u8],
    /// Bytes per entry: at least the format's size; any surplus must be zero.
    pub entry_len: usize,
    /// Number of entries.
    pub count: usize,
}

/// How far a user invalidation array got (iommufd reports `handled` back as
/// `entry_num`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidateOutcome {
    /// Entries validated and handled: always a prefix of the array.
    pub handled: usize,
    /// The entry that stopped the walk, and why; `None` when all were handled.
    pub error: Option<(usize, Error)>,
}

impl<'a> UserArray<'a> {
    /// Hand each entry (`entry_len` bytes) to `f` with its index, in order,
    /// until one fails; `format_size` is the smallest entry the format has.
    ///
    /// An `entry_len` below `format_size` fails at index 0
    /// (`OutOfRange("entry_len")`); if `data` ends before entry `i` is
    /// complete, entry `i` fails with `OutOfRange("user data length")`. An
    /// error from `f` stops the walk the same way. With `count` 0 nothing is
    /// looked at, as iommufd does.
    pub fn walk<F>(&self, format_size: usize, mut f: F) -> InvalidateOutcome
    where
        F: FnMut(usize, &'a [u8]) -> Result<(), Error>,
    {
        let stop = |i: usize, e: Error| InvalidateOutcome {
            handled: i,
            error: Some((i, e)),
        };
        if self.count == 0 {
            return InvalidateOutcome {
                handled: 0,
                error: None,
            };
        }
        if self.entry_len < format_size {
            return stop(
                0,
                Error::OutOfRange {
                    what: "entry_len",
                    value: self.entry_len as u64,
                },
            );
        }
        for i in 0..self.count {
            let start = i.saturating_mul(self.entry_len);
            let rest = self.data.get(start..).unwrap_or(&[]);
            let Some(entry) = rest.get(..self.entry_len) else {
                return stop(
                    i,
                    Error::OutOfRange {
                        what: "user data length",
                        value: rest.len() as u64,
                    },
                );
            };
            if let Err(e) = f(i, entry) {
                return stop(i, e);
            }
        }
        InvalidateOutcome {
            handled: self.count,
            error: None,
        }
    }
}

impl<'a> UserArray<'a> {
    /// [`walk`](Self::walk) an array the caller's format is `data_type`;
    /// an array of another data type is refused whole
    /// (`InvalidField("data_type")` at index 0).
    pub fn walk_as<F>(&self, data_type: u32, format_size: usize, f: F) -> InvalidateOutcome
    where
        F: FnMut(usize, &'a [u8]) -> Result<(), Error>,
    {
        if self.data_type != data_type {
            return InvalidateOutcome {
                handled: 0,
                error: Some((
                    0,
                    Error::InvalidField {
                        field: "data_type",
                        value: self.data_type.into(),
                    },
                )),
            };
        }
        self.walk(format_size, f)
    }
}

/// The guest's IDs for devices, as the core keeps them for one nest parent
/// (one guest) and lends them to the driver for a user invalidation: a user
/// command naming a device names it by the ID the guest knows, and reaches
/// only devices of that guest.
pub trait VirtualIds {
    /// The real ID (StreamID / source-id) of the device the guest calls
    /// `virtual_id`, if the guest has such a device on this instance.
    fn resolve(&self, virtual_id: u32) -> Option<u32>;
}

/// The first `N` bytes of a user record, after checking that the record is at
/// least `N` bytes long and that anything after them is zero (the rule of
/// Linux's `copy_struct_from_user`: a newer user space's larger structure is
/// accepted only if it asks for nothing this one does not know).
pub fn record<const N: usize>(bytes: &[u8]) -> Result<&[u8; N], Error> {
    let Some((head, tail)) = bytes.split_first_chunk::<N>() else {
        return Err(Error::OutOfRange {
            what: "user data length",
            value: bytes.len() as u64,
        });
    };
    if let Some(i) = tail.iter().position(|&b| b != 0) {
        return Err(Error::InvalidField {
            field: "trailing bytes",
            value: (N + i) as u64,
        });
    }
    Ok(head)
}

/// Little-endian u64 at `off` of a record (bytes past the end read as zero).
pub fn le_u64(rec: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    for (i, b) in w.iter_mut().enumerate() {
        *b = rec.get(off + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(w)
}

/// Little-endian u32 at `off` of a record (bytes past the end read as zero).
pub fn le_u32(rec: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, b) in w.iter_mut().enumerate() {
        *b = rec.get(off + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

/// Write `bytes` at `off` of `out` (what falls past the end is dropped).
pub fn put(out: &mut [u8], off: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(o) = out.get_mut(off + i) {
            *o = *b;
        }
    }
}
