//! The Stream Table Entry (SMMUv3 architecture, "Stream Table Entry"): eight
//! 64-bit words per StreamID saying how its traffic is translated.
//!
//! Every field the crate reads or writes is named here once, with its word
//! and bits; the STE writer and the validator of a guest's virtual STE
//! (`super::user`) both use these definitions.

use crate::drivers::bits::{Field, word_mask};

/// Words in an STE.
pub const DWORDS: usize = 8;

/// Valid.
pub const V: Field = Field::bit(0, 0);
/// Config: what happens to the stream's traffic ([`config`]).
pub const CONFIG: Field = Field::new(0, 3, 1);
/// S1Fmt: layout of the context-descriptor table ([`s1fmt`]).
pub const S1FMT: Field = Field::new(0, 5, 4);
/// S1ContextPtr: address of the CD table, bits 51:6 in place.
pub const S1_CONTEXT_PTR: Field = Field::new(0, 51, 6);
/// S1CDMax: log2 of the number of CDs (0: one, no substreams).
pub const S1_CD_MAX: Field = Field::new(0, 63, 59);

/// S1DSS: what untagged traffic gets when substreams are enabled ([`s1dss`]).
pub const S1DSS: Field = Field::new(1, 1, 0);
/// S1CIR: inner cacheability of CD fetches.
pub const S1CIR: Field = Field::new(1, 3, 2);
/// S1COR: outer cacheability of CD fetches.
pub const S1COR: Field = Field::new(1, 5, 4);
/// S1CSH: shareability of CD fetches.
pub const S1CSH: Field = Field::new(1, 7, 6);
/// S1STALLD: stalls disabled for stage-1 faults.
pub const S1STALLD: Field = Field::bit(1, 27);
/// EATS: ATS translated-traffic enable (0: off, 1: full ATS, 2: split stage).
pub const EATS: Field = Field::new(1, 29, 28);
/// STRW: the translation regime of stage 1 (0: NS-EL1, 2: EL2).
pub const STRW: Field = Field::new(1, 31, 30);
/// SHCFG: shareability override (1: use the incoming attribute).
pub const SHCFG: Field = Field::new(1, 45, 44);

/// S2VMID: the stage-2 VMID (used for stage-1-only STEs too on an SMMU
/// with stage 2).
pub const S2VMID: Field = Field::new(2, 15, 0);
/// S2T0SZ: stage-2 input size (64 - IPA bits).
pub const S2T0SZ: Field = Field::new(2, 37, 32);
/// S2SL0: stage-2 starting level.
pub const S2SL0: Field = Field::new(2, 39, 38);
/// S2IR0: stage-2 walk inner cacheability.
pub const S2IR0: Field = Field::new(2, 41, 40);
/// S2OR0: stage-2 walk outer cacheability.
pub const S2OR0: Field = Field::new(2, 43, 42);
/// S2SH0: stage-2 walk shareability.
pub const S2SH0: Field = Field::new(2, 45, 44);
/// S2TG: stage-2 granule (0: 4 KiB).
pub const S2TG: Field = Field::new(2, 47, 46);
/// S2PS: stage-2 output size.
pub const S2PS: Field = Field::new(2, 50, 48);
/// S2AA64: stage-2 tables are AArch64 (must be 1: QEMU aborts on 0).
pub const S2AA64: Field = Field::bit(2, 51);
/// S2PTW: stage-1 walks to device memory fault.
pub const S2PTW: Field = Field::bit(2, 54);
/// S2R: record stage-2 faults.
pub const S2R: Field = Field::bit(2, 58);
/// S2TTB: stage-2 table base, bits 51:4 in place.
pub const S2TTB: Field = Field::new(3, 51, 4);

/// Values of [`CONFIG`].
pub mod config {
    /// Every transaction aborts.
    pub const ABORT: u64 = 0b000;
    /// No translation.
    pub const BYPASS: u64 = 0b100;
    /// Stage 1 only.
    pub const S1_TRANS: u64 = 0b101;
    /// Stage 2 only.
    pub const S2_TRANS: u64 = 0b110;
    /// Stage 1 then stage 2.
    pub const NESTED: u64 = 0b111;
}

/// Values of [`S1FMT`].
pub mod s1fmt {
    /// One linear array of CDs.
    pub const LINEAR: u64 = 0;
    /// Two levels, 4 KiB leaf tables.
    pub const TWO_LEVEL_4K: u64 = 1;
    /// Two levels, 64 KiB leaf tables.
    pub const TWO_LEVEL_64K: u64 = 2;
}

/// Values of [`S1DSS`].
pub mod s1dss {
    /// Untagged traffic is terminated.
    pub const TERMINATE: u64 = 0;
    /// Untagged traffic bypasses stage 1.
    pub const BYPASS: u64 = 1;
    /// Untagged traffic uses the CD of SubstreamID 0.
    pub const SSID0: u64 = 2;
}

/// The fields a guest owns in a nested STE: what its virtual STE may set
/// (Linux's `STRTAB_STE_0_NESTING_ALLOWED` and `STRTAB_STE_1_NESTING_ALLOWED`).
/// The host owns every other bit.
pub const GUEST_FIELDS: [Field; 11] = [
    V,
    CONFIG,
    S1FMT,
    S1_CONTEXT_PTR,
    S1_CD_MAX,
    S1DSS,
    S1CIR,
    S1COR,
    S1CSH,
    S1STALLD,
    EATS,
];

/// The bits of word 0 a guest owns.
pub const GUEST_WORD0: u64 = word_mask(&GUEST_FIELDS, 0);
/// The bits of word 1 a guest owns.
pub const GUEST_WORD1: u64 = word_mask(&GUEST_FIELDS, 1);
