//! The byte layouts of the fuzz targets' inputs, shared by the targets (which
//! decode them) and the seed writer (which encodes them), so that the two
//! always agree.
//!
//! Every decoder is total: a short input reads as if padded with zeros, so
//! libFuzzer's mutations never fall off a length check.

pub mod firmware;

use iommu::core::{UserArray, VirtualIds};
use iommu::drivers::smmuv3::user::{INVALIDATE_DATA_ARM_SMMUV3, SmmuV3SteCaps};
use iommu::drivers::vtd::user::{INVALIDATE_DATA_VTD_S1, VtdS1Caps};

/// Byte `i` of `data`, zero past the end.
fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

/// Little-endian u64 at `off`, zero bytes past the end.
pub fn le_u64(data: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    for (i, b) in w.iter_mut().enumerate() {
        *b = byte(data, off + i);
    }
    u64::from_le_bytes(w)
}

/// Little-endian u32 at `off`, zero bytes past the end.
pub fn le_u32(data: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, b) in w.iter_mut().enumerate() {
        *b = byte(data, off + i);
    }
    u32::from_le_bytes(w)
}

/// `vtd_s1`: byte 0 caps bits, byte 1 the address width, the rest the
/// record exactly as user space passed it (any length).
///
/// Byte 0: bit 0 `five_level`, bit 1 `sre`, bit 2 `eafe`, bit 3 "huge":
/// `max_pa_bits` is `u32::MAX - byte 1` instead of byte 1 (both cover the
/// "64 or more means no limit" case).
pub mod s1 {
    use super::*;

    /// Header bytes before the record.
    pub const HEADER: usize = 2;

    /// The caps and the record bytes of an input.
    pub fn decode(data: &[u8]) -> (VtdS1Caps, &[u8]) {
        let bits = byte(data, 0);
        let width = byte(data, 1);
        let caps = VtdS1Caps {
            five_level: bits & 1 != 0,
            sre: bits & 2 != 0,
            eafe: bits & 4 != 0,
            max_pa_bits: if bits & 8 != 0 {
                u32::MAX - u32::from(width)
            } else {
                u32::from(width)
            },
        };
        (caps, data.get(HEADER..).unwrap_or(&[]))
    }

    /// An input for `caps` (`max_pa_bits` below 256) and `record`.
    pub fn encode(caps: &VtdS1Caps, record: &[u8]) -> Vec<u8> {
        let bits = u8::from(caps.five_level) | u8::from(caps.sre) << 1 | u8::from(caps.eafe) << 2;
        let width = u8::try_from(caps.max_pa_bits).expect("seed max_pa_bits below 256");
        let mut out = vec![bits, width];
        out.extend_from_slice(record);
        out
    }
}

/// `vtd_inv_array`: a 5-byte header, then the array's data.
///
/// - byte 0, mode: bit 0 set gives a wrong `data_type`
///   (`INVALIDATE_DATA_VTD_S1 + 1 + (mode >> 1)`);
/// - byte 1, `entry_len` (0xff: `usize::MAX`);
/// - bytes 2..4, `count`, little-endian (0xffff: `usize::MAX`);
/// - byte 4, the index at which the callback fails (0xff: never).
pub mod inv_array {
    use super::*;

    /// Header bytes before the array's data.
    pub const HEADER: usize = 5;
    /// `fail_at` byte meaning "the callback never fails".
    pub const NEVER: u8 = 0xff;

    /// The array, and the index at which the callback fails.
    pub fn decode(data: &[u8]) -> (UserArray<'_>, Option<usize>) {
        let mode = byte(data, 0);
        let data_type = if mode & 1 != 0 {
            INVALIDATE_DATA_VTD_S1.wrapping_add(1 + u32::from(mode >> 1))
        } else {
            INVALIDATE_DATA_VTD_S1
        };
        let entry_len = match byte(data, 1) {
            0xff => usize::MAX,
            n => usize::from(n),
        };
        let count = match u16::from_le_bytes([byte(data, 2), byte(data, 3)]) {
            0xffff => usize::MAX,
            n => usize::from(n),
        };
        let fail_at = match byte(data, 4) {
            NEVER => None,
            n => Some(usize::from(n)),
        };
        let array = UserArray {
            data_type,
            data: data.get(HEADER..).unwrap_or(&[]),
            entry_len,
            count,
        };
        (array, fail_at)
    }

    /// An input: the right data type, `entries` (each padded with zeros to
    /// `entry_len`, below 255) back to back, the callback never failing.
    pub fn encode(entry_len: u8, entries: &[&[u8]]) -> Vec<u8> {
        assert!(entry_len != 0xff);
        let count = u16::try_from(entries.len()).expect("seed count");
        let [c0, c1] = count.to_le_bytes();
        let mut out = vec![0, entry_len, c0, c1, NEVER];
        for e in entries {
            let mut padded = e.to_vec();
            padded.resize(usize::from(entry_len), 0);
            out.extend_from_slice(&padded);
        }
        out
    }
}

/// The record targets' input: the instance (u16), then the record's `N`
/// words, all little-endian (bytes past the end read as zero).
pub mod words {
    use super::*;

    /// The instance and the record.
    pub fn decode<const N: usize>(data: &[u8]) -> (u16, [u64; N]) {
        let instance = u16::from_le_bytes([byte(data, 0), byte(data, 1)]);
        (instance, core::array::from_fn(|i| le_u64(data, 2 + 8 * i)))
    }

    /// An input.
    pub fn encode<const N: usize>(instance: u16, words: [u64; N]) -> Vec<u8> {
        let mut out = instance.to_le_bytes().to_vec();
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// `vtd_fault`: the instance (u16), then the record's low and high words,
/// all little-endian.
pub mod fault {
    pub use super::words::{decode, encode};
}

/// `vtd_prq`: the instance (u16), then the descriptor's four words, all
/// little-endian.
pub mod prq {
    pub use super::words::{decode, encode};
}

/// `smmu_ste`: byte 0 caps bits, byte 1 `ssid_bits`, byte 2 `oas_bits`,
/// the rest the record exactly as user space passed it (any length).
///
/// Byte 0: bit 0 `two_level_cd`; bit 1 "huge SSID": `ssid_bits` is
/// `u32::MAX - byte 1` instead of byte 1; bit 2 "huge OAS": `oas_bits` is
/// `u32::MAX - byte 2` instead of byte 2.
pub mod ste {
    use super::*;

    /// Header bytes before the record.
    pub const HEADER: usize = 3;

    /// The caps and the record bytes of an input.
    pub fn decode(data: &[u8]) -> (SmmuV3SteCaps, &[u8]) {
        let bits = byte(data, 0);
        let wide = |on: bool, b: u8| {
            if on {
                u32::MAX - u32::from(b)
            } else {
                u32::from(b)
            }
        };
        let caps = SmmuV3SteCaps {
            two_level_cd: bits & 1 != 0,
            ssid_bits: wide(bits & 2 != 0, byte(data, 1)),
            oas_bits: wide(bits & 4 != 0, byte(data, 2)),
        };
        (caps, data.get(HEADER..).unwrap_or(&[]))
    }

    /// An input for `caps` (`ssid_bits` and `oas_bits` below 256) and
    /// `record`.
    pub fn encode(caps: &SmmuV3SteCaps, record: &[u8]) -> Vec<u8> {
        let ssid = u8::try_from(caps.ssid_bits).expect("seed ssid_bits below 256");
        let oas = u8::try_from(caps.oas_bits).expect("seed oas_bits below 256");
        let mut out = vec![u8::from(caps.two_level_cd), ssid, oas];
        out.extend_from_slice(record);
        out
    }
}

/// `smmu_cmds`: a 38-byte header, then the array's data.
///
/// - byte 0, mode: bit 0 set gives a wrong `data_type`
///   (`INVALIDATE_DATA_ARM_SMMUV3 ^ (1 + (mode >> 1))`, which reaches 0);
/// - byte 1, `entry_len` (0xff: `usize::MAX`);
/// - bytes 2..4, `count`, little-endian (0xffff: `usize::MAX`);
/// - byte 4, the index at which the callback fails (0xff: never);
/// - byte 5, how many of the following ID pairs the guest has (modulo
///   [`PAIRS`]` + 1`);
/// - bytes 6..38, [`PAIRS`] pairs of little-endian u32: a virtual StreamID
///   and the real one it stands for (the first pair naming a virtual ID
///   wins).
pub mod cmds {
    use super::*;

    /// ID pairs in the header.
    pub const PAIRS: usize = 4;
    /// Header bytes before the array's data.
    pub const HEADER: usize = 6 + 8 * PAIRS;
    /// `fail_at` byte meaning "the callback never fails".
    pub const NEVER: u8 = 0xff;

    /// The guest's virtual StreamIDs: (virtual, real) pairs.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Ids(pub Vec<(u32, u32)>);

    impl VirtualIds for Ids {
        fn resolve(&self, virtual_id: u32) -> Option<u32> {
            self.0
                .iter()
                .find(|&&(v, _)| v == virtual_id)
                .map(|&(_, r)| r)
        }
    }

    /// The array, the index at which the callback fails, and the guest's
    /// IDs.
    pub fn decode(data: &[u8]) -> (UserArray<'_>, Option<usize>, Ids) {
        let mode = byte(data, 0);
        let data_type = if mode & 1 != 0 {
            INVALIDATE_DATA_ARM_SMMUV3 ^ (1 + u32::from(mode >> 1))
        } else {
            INVALIDATE_DATA_ARM_SMMUV3
        };
        let entry_len = match byte(data, 1) {
            0xff => usize::MAX,
            n => usize::from(n),
        };
        let count = match u16::from_le_bytes([byte(data, 2), byte(data, 3)]) {
            0xffff => usize::MAX,
            n => usize::from(n),
        };
        let fail_at = match byte(data, 4) {
            NEVER => None,
            n => Some(usize::from(n)),
        };
        let pairs = usize::from(byte(data, 5)) % (PAIRS + 1);
        let ids = Ids((0..pairs)
            .map(|i| (le_u32(data, 6 + 8 * i), le_u32(data, 10 + 8 * i)))
            .collect());
        let array = UserArray {
            data_type,
            data: data.get(HEADER..).unwrap_or(&[]),
            entry_len,
            count,
        };
        (array, fail_at, ids)
    }

    /// An input: the right data type, the guest's `ids` (at most
    /// [`PAIRS`]), `entries` (each padded with zeros to `entry_len`, below
    /// 255) back to back, the callback never failing.
    pub fn encode(ids: &[(u32, u32)], entry_len: u8, entries: &[&[u8]]) -> Vec<u8> {
        assert!(entry_len != 0xff && ids.len() <= PAIRS);
        let count = u16::try_from(entries.len()).expect("seed count");
        let [c0, c1] = count.to_le_bytes();
        let mut out = vec![0, entry_len, c0, c1, NEVER, ids.len() as u8];
        for i in 0..PAIRS {
            let (v, r) = ids.get(i).copied().unwrap_or((0, 0));
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(&r.to_le_bytes());
        }
        for e in entries {
            let mut padded = e.to_vec();
            padded.resize(usize::from(entry_len), 0);
            out.extend_from_slice(&padded);
        }
        out
    }
}

/// `smmu_evt`: the instance (u16), then the event record's four words, all
/// little-endian.
pub mod evt {
    pub use super::words::{decode, encode};
}

/// `smmu_pri`: the instance (u16), then the PRI record's two words, all
/// little-endian.
pub mod pri {
    pub use super::words::{decode, encode};
}
