//! The Context Descriptor (SMMUv3 architecture, "Context Descriptor"): eight
//! 64-bit words per SubstreamID holding a stage-1 translation — its table
//! (TTB0), translation controls (TCR fields), memory attributes (MAIR) and
//! ASID — and the level-1 descriptors of a two-level CD table.
//!
//! Every field the driver writes is named here once; the entry writer
//! ([`super::writer`]) uses [`used`] to know which words the SMMU reads.

use crate::drivers::bits::Field;

/// Words in a CD.
pub const DWORDS: usize = 8;
/// Bytes in a CD.
pub const BYTES: u64 = 64;

/// TCR.T0SZ: 64 minus the input address bits of TTB0.
pub const T0SZ: Field = Field::new(0, 5, 0);
/// TCR.TG0: TTB0 granule (0: 4 KiB).
pub const TG0: Field = Field::new(0, 7, 6);
/// TCR.IRGN0: inner cacheability of table walks.
pub const IR0: Field = Field::new(0, 9, 8);
/// TCR.ORGN0: outer cacheability of table walks.
pub const OR0: Field = Field::new(0, 11, 10);
/// TCR.SH0: shareability of table walks.
pub const SH0: Field = Field::new(0, 13, 12);
/// TCR.EPD0: no walks through TTB0.
pub const EPD0: Field = Field::bit(0, 14);
/// Big-endian tables.
pub const ENDI: Field = Field::bit(0, 15);
/// TCR.EPD1: no walks through TTB1.
pub const EPD1: Field = Field::bit(0, 30);
/// Valid.
pub const V: Field = Field::bit(0, 31);
/// TCR.IPS: intermediate physical (output) size.
pub const IPS: Field = Field::new(0, 34, 32);
/// Access-flag faults disabled.
pub const AFFD: Field = Field::bit(0, 35);
/// TCR.TBI0: top byte ignored.
pub const TBI0: Field = Field::bit(0, 38);
/// AArch64 table format.
pub const AA64: Field = Field::bit(0, 41);
/// Hardware dirty-state update.
pub const HD: Field = Field::bit(0, 42);
/// Hardware access-flag update.
pub const HA: Field = Field::bit(0, 43);
/// Stall faults (instead of terminating).
pub const S: Field = Field::bit(0, 44);
/// Record faults in the event queue.
pub const R: Field = Field::bit(0, 45);
/// Abort (rather than RAZ/WI) terminated transactions.
pub const A: Field = Field::bit(0, 46);
/// ASID set: shared with the CPU (0) or not.
pub const ASET: Field = Field::bit(0, 47);
/// ASID.
pub const ASID: Field = Field::new(0, 63, 48);
/// Translation table base 0, bits 51:4 in place.
pub const TTB0: Field = Field::new(1, 51, 4);
/// MAIR (word 3).
pub const MAIR: Field = Field::new(3, 63, 0);

/// Level-1 CD descriptor (two-level CD tables): valid.
pub const L1_V: Field = Field::bit(0, 0);
/// Level-1 CD descriptor: leaf table, bits 51:12 in place.
pub const L1_L2PTR: Field = Field::new(0, 51, 12);

/// Cacheability of table walks: write-back, read/write-allocate.
pub const CACHE_WB: u64 = 1;
/// Shareability: inner shareable.
pub const SH_INNER: u64 = 3;

/// TCR.IPS / STE.S2PS encoding of an address size in bits.
pub const fn ps(bits: u32) -> u64 {
    match bits {
        0..=32 => 0,
        33..=36 => 1,
        37..=40 => 2,
        41..=42 => 3,
        43..=44 => 4,
        45..=48 => 5,
        _ => 6,
    }
}

/// What a CD translates through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1 {
    /// Physical (or, nested, intermediate-physical) address of the table.
    pub ttb0: u64,
    /// TCR.T0SZ.
    pub t0sz: u8,
    /// Output address size in bits.
    pub oas_bits: u32,
    /// MAIR.
    pub mair: u64,
    /// ASID.
    pub asid: u16,
    /// Stall faults instead of terminating them (SMMU stall model).
    pub stall: bool,
}

/// A valid CD for `s`: AArch64 4 KiB tables, walks write-back inner
/// shareable, TTB1 disabled, faults recorded and aborted (or stalled).
pub fn build(s: &Stage1) -> [u64; DWORDS] {
    let mut e = [0; DWORDS];
    T0SZ.set(&mut e, s.t0sz.into());
    TG0.set(&mut e, 0);
    IR0.set(&mut e, CACHE_WB);
    OR0.set(&mut e, CACHE_WB);
    SH0.set(&mut e, SH_INNER);
    EPD1.set(&mut e, 1);
    IPS.set(&mut e, ps(s.oas_bits));
    AA64.set(&mut e, 1);
    R.set(&mut e, 1);
    A.set(&mut e, 1);
    S.set(&mut e, s.stall.into());
    ASET.set(&mut e, 1);
    ASID.set(&mut e, s.asid.into());
    TTB0.set_in_place(&mut e, s.ttb0);
    MAIR.set(&mut e, s.mair);
    V.set(&mut e, 1);
    e
}

/// The bits of a CD the SMMU uses: only V when it is invalid; words 0, 1
/// and 3 otherwise (TTB1 and the words after MAIR are not used here).
pub fn used(e: &[u64; DWORDS]) -> [u64; DWORDS] {
    let mut u = [0; DWORDS];
    if V.get(e) == 0 {
        V.set(&mut u, 1);
        return u;
    }
    u[0] = u64::MAX;
    u[1] = TTB0.mask();
    u[3] = u64::MAX;
    u
}

/// A level-1 CD descriptor pointing at the leaf table `l2`.
pub fn l1(l2: u64) -> u64 {
    let mut e = [0u64; 1];
    L1_L2PTR.set_in_place(&mut e, l2);
    L1_V.set(&mut e, 1);
    e[0]
}
