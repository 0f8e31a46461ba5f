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
/// S2ENDI: big-endian stage-2 tables.
pub const S2ENDI: Field = Field::bit(2, 52);
/// S2AFFD: stage-2 access-flag faults disabled.
pub const S2AFFD: Field = Field::bit(2, 53);
/// S2PTW: stage-1 walks to device memory fault.
pub const S2PTW: Field = Field::bit(2, 54);
/// S2S: stall stage-2 faults.
pub const S2S: Field = Field::bit(2, 57);
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

/// SHCFG value: use the incoming shareability.
pub const SHCFG_INCOMING: u64 = 1;

/// Stage-2 fields of an STE (VTCR, VMID, table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2 {
    /// VMID.
    pub vmid: u16,
    /// Table base.
    pub ttb: u64,
    /// S2T0SZ.
    pub t0sz: u8,
    /// S2SL0.
    pub sl0: u8,
    /// S2PS (the output size, encoded as [`super::cd::ps`]).
    pub ps: u64,
}

/// A CD table as an STE names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdTable {
    /// Address of the (level-1) table.
    pub ptr: u64,
    /// [`s1fmt`] value.
    pub fmt: u64,
    /// S1CDMax: log2 of the SubstreamIDs (0: one CD, no substreams).
    pub cd_max: u8,
}

fn valid(config: u64) -> [u64; DWORDS] {
    let mut e = [0; DWORDS];
    V.set(&mut e, 1);
    CONFIG.set(&mut e, config);
    e
}

/// Every transaction of the stream aborts (valid, so that nothing is
/// recorded as a bad STE).
pub fn abort() -> [u64; DWORDS] {
    valid(config::ABORT)
}

/// No translation; shareability as the transaction says.
pub fn bypass() -> [u64; DWORDS] {
    let mut e = valid(config::BYPASS);
    SHCFG.set(&mut e, SHCFG_INCOMING);
    e
}

fn set_s1(e: &mut [u64; DWORDS], cd: CdTable) {
    S1FMT.set(e, cd.fmt);
    S1_CONTEXT_PTR.set_in_place(e, cd.ptr);
    S1_CD_MAX.set(e, cd.cd_max.into());
    if cd.cd_max > 0 {
        S1DSS.set(e, s1dss::SSID0);
    }
    S1CIR.set(e, super::cd::CACHE_WB);
    S1COR.set(e, super::cd::CACHE_WB);
    S1CSH.set(e, super::cd::SH_INNER);
}

fn set_s2(e: &mut [u64; DWORDS], s: Stage2) {
    S2VMID.set(e, s.vmid.into());
    S2T0SZ.set(e, s.t0sz.into());
    S2SL0.set(e, s.sl0.into());
    S2IR0.set(e, super::cd::CACHE_WB);
    S2OR0.set(e, super::cd::CACHE_WB);
    S2SH0.set(e, super::cd::SH_INNER);
    S2TG.set(e, 0);
    S2PS.set(e, s.ps);
    S2AA64.set(e, 1);
    S2PTW.set(e, 1);
    S2R.set(e, 1);
    S2TTB.set_in_place(e, s.ttb);
}

/// Stage 1 through `cd`, tagged with `vmid` (on an SMMU with stage 2 the
/// stage-1 TLB entries carry the STE's VMID); `ats`: full ATS.
pub fn stage1(cd: CdTable, vmid: u16, ats: bool) -> [u64; DWORDS] {
    let mut e = valid(config::S1_TRANS);
    set_s1(&mut e, cd);
    EATS.set(&mut e, ats.into());
    S2VMID.set(&mut e, vmid.into());
    e
}

/// Stage 2 only.
pub fn stage2(s: Stage2, ats: bool) -> [u64; DWORDS] {
    let mut e = valid(config::S2_TRANS);
    set_s2(&mut e, s);
    EATS.set(&mut e, ats.into());
    SHCFG.set(&mut e, SHCFG_INCOMING);
    e
}

/// A guest's validated virtual STE words over the host's stage 2: the
/// guest's stage 1 (CD table walked through stage 2) becomes nested, its
/// bypass stage 2 only, its abort (or invalid entry) abort.
pub fn nested(guest: [u64; 2], s: Stage2) -> [u64; DWORDS] {
    let g = [guest[0], guest[1], 0, 0, 0, 0, 0, 0];
    if V.get(&g) == 0 {
        return abort();
    }
    match CONFIG.get(&g) {
        config::S1_TRANS => {
            let mut e = valid(config::NESTED);
            e[0] |= g[0] & GUEST_WORD0 & !(V.mask() | CONFIG.mask());
            e[1] |= g[1] & GUEST_WORD1;
            set_s2(&mut e, s);
            SHCFG.set(&mut e, SHCFG_INCOMING);
            e
        }
        config::BYPASS => {
            let mut e = stage2(s, EATS.get(&g) != 0);
            EATS.set(&mut e, EATS.get(&g));
            e
        }
        _ => abort(),
    }
}

/// The bits of an STE the SMMU uses, by its configuration (what the entry
/// writer may change without the SMMU seeing a mix of old and new).
pub fn used(e: &[u64; DWORDS]) -> [u64; DWORDS] {
    let mut u = [0; DWORDS];
    V.set(&mut u, 1);
    if V.get(e) == 0 {
        return u;
    }
    u[0] |= CONFIG.mask();
    let cfg = CONFIG.get(e);
    if cfg & 0b001 != 0 {
        u[0] |= S1FMT.mask() | S1_CONTEXT_PTR.mask() | S1_CD_MAX.mask();
        u[1] |= S1DSS.mask()
            | S1CIR.mask()
            | S1COR.mask()
            | S1CSH.mask()
            | S1STALLD.mask()
            | STRW.mask()
            | EATS.mask();
        u[2] |= S2VMID.mask();
        if S1DSS.get(e) == s1dss::BYPASS {
            u[1] |= SHCFG.mask();
        }
    }
    if cfg & 0b010 != 0 {
        u[1] |= EATS.mask() | SHCFG.mask();
        u[2] |= S2VMID.mask()
            | S2T0SZ.mask()
            | S2SL0.mask()
            | S2IR0.mask()
            | S2OR0.mask()
            | S2SH0.mask()
            | S2TG.mask()
            | S2PS.mask()
            | S2AA64.mask()
            | S2ENDI.mask()
            | S2PTW.mask()
            | S2S.mask()
            | S2R.mask();
        u[3] |= S2TTB.mask();
    }
    if cfg == config::BYPASS {
        u[1] |= SHCFG.mask();
    }
    u
}

/// Level-1 stream table descriptor: SPAN (log2 of the STEs of its level-2
/// table, plus one).
pub const L1_SPAN: Field = Field::new(0, 4, 0);
/// Level-1 stream table descriptor: level-2 table, bits 51:6 in place.
pub const L1_L2PTR: Field = Field::new(0, 51, 6);

/// A level-1 descriptor for a level-2 table of 2^`split` STEs at `l2`.
pub fn l1(l2: u64, split: u32) -> u64 {
    let mut e = [0u64; 1];
    L1_SPAN.set(&mut e, u64::from(split) + 1);
    L1_L2PTR.set_in_place(&mut e, l2);
    e[0]
}
