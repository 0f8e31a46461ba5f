//! Context entries (VT-d specification 9.3 "Context Entry", 9.4
//! "Scalable-Mode Context-Entry"): what a device (bus, devfn) translates
//! through.
//!
//! Legacy entries are 128 bits, 256 to a 4 KiB table (one table per bus).
//! Scalable-mode entries are 256 bits, 128 to a table: a bus has a lower
//! table (devfn 0..128) and an upper one (devfn 128..256), and each entry
//! points at the device's PASID directory.

use crate::drivers::bits::Field;

/// 64-bit words of a legacy entry.
pub const LEGACY_WORDS: usize = 2;
/// 64-bit words of a scalable-mode entry.
pub const SCALABLE_WORDS: usize = 4;
/// Scalable-mode entries in one context table (half a bus).
pub const SCALABLE_PER_TABLE: usize = 128;

/// Present.
pub const P: Field = Field::bit(0, 0);
/// Fault processing disable.
pub const FPD: Field = Field::bit(0, 1);
/// Legacy: translation type ([`tt`]).
pub const TT: Field = Field::new(0, 3, 2);
/// Legacy: second-level page-table pointer, bits 63:12 in place.
pub const SLPTPTR: Field = Field::new(0, 63, 12);
/// Legacy: adjusted guest address width ([`aw`]).
pub const AW: Field = Field::new(1, 2, 0);
/// Legacy: domain ID.
pub const DID: Field = Field::new(1, 23, 8);

/// Scalable: device-TLB enable.
pub const DTE: Field = Field::bit(0, 2);
/// Scalable: PASID enable (requests with a PASID are translated).
pub const PASIDE: Field = Field::bit(0, 3);
/// Scalable: page request enable.
pub const PRE: Field = Field::bit(0, 4);
/// Scalable: PASID directory size: 2^(PDTS + 7) entries.
pub const PDTS: Field = Field::new(0, 11, 9);
/// Scalable: PASID directory pointer, bits 63:12 in place.
pub const PASIDDIRPTR: Field = Field::new(0, 63, 12);
/// Scalable: the PASID requests without one are translated with.
pub const RID_PASID: Field = Field::new(1, 19, 0);

/// Values of [`TT`].
pub mod tt {
    /// Untranslated requests through second-level tables; translation
    /// requests (ATS) blocked.
    pub const SL: u64 = 0b00;
    /// As [`SL`], and ATS translation requests allowed.
    pub const SL_ATS: u64 = 0b01;
    /// Untranslated requests pass through.
    pub const PASS_THROUGH: u64 = 0b10;
}

/// Values of [`AW`] (and of a PASID entry's AW): table levels.
pub mod aw {
    /// 39-bit, 3-level.
    pub const AW39: u64 = 1;
    /// 48-bit, 4-level.
    pub const AW48: u64 = 2;
    /// 57-bit, 5-level.
    pub const AW57: u64 = 3;

    /// The AW value of a `width`-bit table (39, 48 or 57).
    pub const fn of(width: u32) -> u64 {
        match width {
            39 => AW39,
            48 => AW48,
            _ => AW57,
        }
    }
}

/// A legacy context entry: `tt`, the table at `root` (ignored for
/// pass-through), `aw`, `did`; present.
pub fn legacy(tt: u64, root: u64, aw: u64, did: u16) -> [u64; LEGACY_WORDS] {
    let mut e = [0; LEGACY_WORDS];
    TT.set(&mut e, tt);
    if tt != tt::PASS_THROUGH {
        SLPTPTR.set_in_place(&mut e, root);
    }
    AW.set(&mut e, aw);
    DID.set(&mut e, did.into());
    P.set(&mut e, 1);
    e
}

/// A scalable-mode context entry pointing at a PASID directory of
/// `2^(pdts + 7)` entries at `dir`, requests without a PASID using PASID 0;
/// present.
pub fn scalable(dir: u64, pdts: u64, pasids: bool, ats: bool) -> [u64; SCALABLE_WORDS] {
    let mut e = [0; SCALABLE_WORDS];
    PASIDDIRPTR.set_in_place(&mut e, dir);
    PDTS.set(&mut e, pdts);
    PASIDE.set(&mut e, pasids.into());
    DTE.set(&mut e, ats.into());
    RID_PASID.set(&mut e, 0);
    P.set(&mut e, 1);
    e
}
