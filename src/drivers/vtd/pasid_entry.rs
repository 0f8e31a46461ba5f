//! PASID directory and PASID-table entries (VT-d specification 9.5
//! "Scalable-Mode PASID Directory Entry", 9.6 "Scalable-Mode PASID Table
//! Entry"): in scalable mode, what a (device, PASID) translates through.
//!
//! A device's PASID directory (64-bit entries, indexed by PASID bits 19:6)
//! points at PASID tables of 64 entries of 512 bits (indexed by bits 5:0).
//! Requests without a PASID use the entry of RID_PASID (0).

use crate::drivers::bits::Field;

/// 64-bit words of a PASID-table entry.
pub const WORDS: usize = 8;
/// Entries in one PASID table (a 4 KiB page).
pub const PER_TABLE: usize = 64;
/// Entries in a one-page PASID directory.
pub const DIR_ENTRIES: usize = 512;
/// The context entry's PDTS for a one-page directory (2^(2 + 7) = 512).
pub const DIR_PDTS: u64 = 2;

/// Directory entry: present.
pub const DIR_P: Field = Field::bit(0, 0);
/// Directory entry: fault processing disable.
pub const DIR_FPD: Field = Field::bit(0, 1);
/// Directory entry: PASID-table pointer, bits 63:12 in place.
pub const DIR_PTPTR: Field = Field::new(0, 63, 12);

/// Present.
pub const P: Field = Field::bit(0, 0);
/// Fault processing disable.
pub const FPD: Field = Field::bit(0, 1);
/// Adjusted guest address width of the second-level table (as the
/// context entry's, [`super::context::aw`]).
pub const AW: Field = Field::new(0, 4, 2);
/// PASID-granular translation type ([`pgtt`]).
pub const PGTT: Field = Field::new(0, 8, 6);
/// Second-level accessed/dirty enable.
pub const SLADE: Field = Field::bit(0, 9);
/// Second-level page-table pointer, bits 63:12 in place.
pub const SLPTPTR: Field = Field::new(0, 63, 12);
/// Domain ID.
pub const DID: Field = Field::new(1, 15, 0);
/// Page-walk snoop.
pub const PWSNP: Field = Field::bit(1, 23);
/// Page snoop.
pub const PGSNP: Field = Field::bit(1, 24);
/// First level: supervisor requests enable.
pub const SRE: Field = Field::bit(2, 0);
/// First level: paging mode (0: 4-level, 1: 5-level).
pub const FLPM: Field = Field::new(2, 3, 2);
/// First level: write protect enable.
pub const WPE: Field = Field::bit(2, 4);
/// First level: extended accessed flag enable.
pub const EAFE: Field = Field::bit(2, 7);
/// First-level page-table pointer, bits 63:12 in place.
pub const FSPTPTR: Field = Field::new(2, 63, 12);

/// Values of [`PGTT`].
pub mod pgtt {
    /// First-level translation only.
    pub const FIRST_LEVEL: u64 = 1;
    /// Second-level translation only.
    pub const SECOND_LEVEL: u64 = 2;
    /// First level nested on second level.
    pub const NESTED: u64 = 3;
    /// Pass-through.
    pub const PASS_THROUGH: u64 = 4;
}

/// A PASID directory entry pointing at the PASID table at `table`.
pub fn dir(table: u64) -> u64 {
    let mut e = [0u64; 1];
    DIR_PTPTR.set_in_place(&mut e, table);
    DIR_P.set(&mut e, 1);
    e[0]
}

/// What a PASID-table entry translates through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// Second-level table at `root`, `aw` levels.
    SecondLevel {
        /// Table root.
        root: u64,
        /// AW value ([`super::context::aw`]).
        aw: u64,
    },
    /// First-level (x86-64) table at `root`.
    FirstLevel {
        /// Table root.
        root: u64,
        /// Five-level paging.
        five_level: bool,
        /// Supervisor requests allowed.
        sre: bool,
        /// Write protection for supervisor requests.
        wpe: bool,
        /// Extended accessed flag.
        eafe: bool,
    },
    /// A first-level table (guest physical) nested on a second-level one.
    Nested {
        /// The guest's first-level root.
        first: u64,
        /// Five-level first level.
        five_level: bool,
        /// Supervisor requests allowed.
        sre: bool,
        /// Write protection for supervisor requests.
        wpe: bool,
        /// Extended accessed flag.
        eafe: bool,
        /// The host's second-level root.
        second: u64,
        /// AW of the second level.
        aw: u64,
    },
    /// No translation.
    PassThrough,
}

/// A present PASID-table entry: `t` under domain `did`, page-walks
/// snooped.
pub fn entry(t: Translation, did: u16) -> [u64; WORDS] {
    let mut e = [0; WORDS];
    let first = |e: &mut [u64; WORDS], root, five: bool, sre: bool, wpe: bool, eafe: bool| {
        FSPTPTR.set_in_place(e, root);
        FLPM.set(e, five.into());
        SRE.set(e, sre.into());
        WPE.set(e, wpe.into());
        EAFE.set(e, eafe.into());
    };
    let (ty, aw) = match t {
        Translation::SecondLevel { root, aw } => {
            SLPTPTR.set_in_place(&mut e, root);
            (pgtt::SECOND_LEVEL, aw)
        }
        Translation::FirstLevel {
            root,
            five_level,
            sre,
            wpe,
            eafe,
        } => {
            first(&mut e, root, five_level, sre, wpe, eafe);
            // AW is the first level's width too (4 or 5 levels): units
            // bound the input address by it (QEMU checks canonicality
            // against it).
            let width = if five_level { 57 } else { 48 };
            (pgtt::FIRST_LEVEL, super::context::aw::of(width))
        }
        Translation::Nested {
            first: f,
            five_level,
            sre,
            wpe,
            eafe,
            second,
            aw,
        } => {
            first(&mut e, f, five_level, sre, wpe, eafe);
            SLPTPTR.set_in_place(&mut e, second);
            (pgtt::NESTED, aw)
        }
        Translation::PassThrough => (pgtt::PASS_THROUGH, 0),
    };
    PGTT.set(&mut e, ty);
    AW.set(&mut e, aw);
    DID.set(&mut e, did.into());
    PWSNP.set(&mut e, 1);
    P.set(&mut e, 1);
    e
}

/// Decode what a present entry translates through (`None` when not
/// present or of an unknown type), for tests and diagnostics.
pub fn decode(e: &[u64; WORDS]) -> Option<(Translation, u16)> {
    if P.get(e) == 0 {
        return None;
    }
    let did = DID.get(e) as u16;
    let five = FLPM.get(e) == 1;
    let (sre, wpe, eafe) = (SRE.get(e) != 0, WPE.get(e) != 0, EAFE.get(e) != 0);
    let t = match PGTT.get(e) {
        pgtt::SECOND_LEVEL => Translation::SecondLevel {
            root: SLPTPTR.get_in_place(e),
            aw: AW.get(e),
        },
        pgtt::FIRST_LEVEL => Translation::FirstLevel {
            root: FSPTPTR.get_in_place(e),
            five_level: five,
            sre,
            wpe,
            eafe,
        },
        pgtt::NESTED => Translation::Nested {
            first: FSPTPTR.get_in_place(e),
            five_level: five,
            sre,
            wpe,
            eafe,
            second: SLPTPTR.get_in_place(e),
            aw: AW.get(e),
        },
        pgtt::PASS_THROUGH => Translation::PassThrough,
        _ => return None,
    };
    Some((t, did))
}
