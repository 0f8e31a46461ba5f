//! Nested translation: the user data that hands a guest its own stage 1, and
//! the guest's cache invalidations, decoded from untrusted bytes and
//! validated.
//!
//! The formats are those of Linux's iommufd uAPI (`include/uapi/linux/iommufd.h`),
//! so a VMM written against iommufd can pass its buffers through unchanged:
//!
//! | Format | Size | Parsed by |
//! |---|---|---|
//! | `struct iommu_hwpt_vtd_s1` | 24 | [`VtdS1::parse`] |
//! | `struct iommu_hwpt_arm_smmuv3` (virtual STE) | 16 | [`SmmuV3Ste::parse`] |
//! | `struct iommu_hwpt_vtd_s1_invalidate` | 24 | [`VtdS1Inv::parse`] |
//! | `struct iommu_viommu_arm_smmuv3_invalidate` (one command) | 16 | [`SmmuV3Inv::parse`] |
//!
//! Every multi-byte field is little-endian. A record may be longer than its
//! format (a newer user space's larger structure) only if every extra byte is
//! zero, the rule of Linux's `copy_struct_from_user`; a shorter one is
//! refused.
//!
//! Errors name the offending field as the uAPI or the architecture spells it:
//! [`Error::InvalidField`] for a value that is malformed whatever the
//! hardware, [`Error::Unsupported`] for a well-formed value this IOMMU cannot
//! honour (the capabilities passed in), [`Error::OutOfRange`] for lengths.
//! Fields are checked in the order they appear in the record and the first
//! failure is reported.
//!
//! Nothing here touches the hardware: the driver builds its PASID-table entry
//! or physical STE from the validated value, and turns each [`UserInv`] into
//! invalidation descriptors or commands after substituting what the host owns
//! (domain id, VMID, physical StreamID).

use crate::error::Error;

// ---------------------------------------------------------------------------
// Byte-level helpers.

/// Bits `hi..=lo` set (`hi >= lo`, both below 64).
const fn mask(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// Field `hi..=lo` of `word`, shifted down.
const fn field(word: u64, hi: u32, lo: u32) -> u64 {
    (word & mask(hi, lo)) >> lo
}

/// True when `value` fits in `bits` bits (any value fits in 64 or more).
const fn fits(value: u64, bits: u32) -> bool {
    bits >= 64 || value >> bits == 0
}

/// The first `N` bytes of a user record, after checking that the record is
/// at least `N` bytes long and that anything after them is zero.
fn record<const N: usize>(bytes: &[u8]) -> Result<&[u8; N], Error> {
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

/// Little-endian u64 at `off` (missing bytes read as zero; offsets are constants).
fn le_u64(rec: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    for (i, b) in w.iter_mut().enumerate() {
        *b = rec.get(off + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(w)
}

/// Little-endian u32 at `off`.
fn le_u32(rec: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, b) in w.iter_mut().enumerate() {
        *b = rec.get(off + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

fn put(out: &mut [u8], off: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(o) = out.get_mut(off + i) {
            *o = *b;
        }
    }
}

const fn invalid(field: &'static str, value: u64) -> Error {
    Error::InvalidField { field, value }
}

// ---------------------------------------------------------------------------
// Intel VT-d stage 1.

bitflags::bitflags! {
    /// `enum iommu_hwpt_vtd_s1_flags`: attributes of a guest's first-stage
    /// page table, copied into its scalable-mode PASID-table entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VtdS1Flags: u64 {
        /// Supervisor requests are allowed (`IOMMU_VTD_S1_SRE`); needs
        /// ECAP.SRS.
        const SRE = 1 << 0;
        /// Extended accessed flag (`IOMMU_VTD_S1_EAFE`); needs ECAP.EAFS.
        const EAFE = 1 << 1;
        /// Write protection applies to supervisor requests
        /// (`IOMMU_VTD_S1_WPE`). It has an effect only together with
        /// [`SRE`](Self::SRE); alone it is accepted and does nothing, as in
        /// Linux.
        const WPE = 1 << 2;
    }
}

/// What a VT-d unit (and the nesting parent) can offer a guest stage 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdS1Caps {
    /// Five-level first-stage paging (CAP.FL5LP): `addr_width` 57.
    pub five_level: bool,
    /// Width of the address space the guest's page-table pointer lives in:
    /// the input (guest-physical) address width of the nesting parent.
    /// 64 or more means no limit.
    pub max_pa_bits: u32,
    /// Supervisor requests (ECAP.SRS): [`VtdS1Flags::SRE`].
    pub sre: bool,
    /// Extended accessed flag (ECAP.EAFS): [`VtdS1Flags::EAFE`].
    pub eafe: bool,
}

/// A validated `struct iommu_hwpt_vtd_s1`: a guest's first-stage page table
/// for nesting on a VT-d unit.
///
/// Layout: `u64 flags`, `u64 pgtbl_addr`, `u32 addr_width`, `u32 __reserved`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdS1 {
    flags: VtdS1Flags,
    pgtbl_addr: u64,
    addr_width: u32,
}

impl VtdS1 {
    /// Size of the record in bytes.
    pub const SIZE: usize = 24;

    /// Decode and validate a record.
    ///
    /// Refused: unknown `flags` bits; a flag `caps` lacks ([`Error::Unsupported`]
    /// naming `flags.SRE` or `flags.EAFE`); a `pgtbl_addr` that is not 4 KiB
    /// aligned or not below 2^`max_pa_bits`; an `addr_width` other than 48 or
    /// 57, or 57 without five-level paging (Unsupported `addr_width`); a
    /// nonzero `__reserved`.
    pub fn parse(bytes: &[u8], caps: &VtdS1Caps) -> Result<Self, Error> {
        let rec = record::<{ Self::SIZE }>(bytes)?;
        let raw_flags = le_u64(rec, 0);
        let pgtbl_addr = le_u64(rec, 8);
        let addr_width = le_u32(rec, 16);
        let reserved = le_u32(rec, 20);

        let Some(flags) = VtdS1Flags::from_bits(raw_flags) else {
            return Err(invalid("flags", raw_flags & !VtdS1Flags::all().bits()));
        };
        if flags.contains(VtdS1Flags::SRE) && !caps.sre {
            return Err(Error::Unsupported { what: "flags.SRE" });
        }
        if flags.contains(VtdS1Flags::EAFE) && !caps.eafe {
            return Err(Error::Unsupported { what: "flags.EAFE" });
        }
        if pgtbl_addr & 0xfff != 0 || !fits(pgtbl_addr, caps.max_pa_bits) {
            return Err(invalid("pgtbl_addr", pgtbl_addr));
        }
        match addr_width {
            48 => {}
            57 if caps.five_level => {}
            57 => return Err(Error::Unsupported { what: "addr_width" }),
            _ => return Err(invalid("addr_width", u64::from(addr_width))),
        }
        if reserved != 0 {
            return Err(invalid("__reserved", u64::from(reserved)));
        }
        Ok(VtdS1 {
            flags,
            pgtbl_addr,
            addr_width,
        })
    }

    /// The page-table attributes.
    pub fn flags(&self) -> VtdS1Flags {
        self.flags
    }

    /// Guest-physical address of the first-stage root table (4 KiB aligned).
    pub fn pgtbl_addr(&self) -> u64 {
        self.pgtbl_addr
    }

    /// Input address width: 48 (four levels) or 57 (five levels).
    pub fn addr_width(&self) -> u32 {
        self.addr_width
    }

    /// Number of paging levels: 4 or 5.
    pub fn levels(&self) -> u8 {
        if self.addr_width == 57 { 5 } else { 4 }
    }

    /// The record's bytes (`__reserved` zero).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        put(&mut out, 0, &self.flags.bits().to_le_bytes());
        put(&mut out, 8, &self.pgtbl_addr.to_le_bytes());
        put(&mut out, 16, &self.addr_width.to_le_bytes());
        out
    }
}

// ---------------------------------------------------------------------------
// Arm SMMUv3 virtual STE.

// STE word 0.
const STE0_V: u64 = 1;
const STE0_CFG: (u32, u32) = (3, 1);
const STE0_S1FMT: (u32, u32) = (5, 4);
const STE0_S1CTXPTR: (u32, u32) = (51, 6);
const STE0_S1CDMAX: (u32, u32) = (63, 59);
// STE word 1.
const STE1_S1DSS: (u32, u32) = (1, 0);
const STE1_S1CIR: (u32, u32) = (3, 2);
const STE1_S1COR: (u32, u32) = (5, 4);
const STE1_S1CSH: (u32, u32) = (7, 6);
const STE1_S1STALLD: u64 = 1 << 27;
const STE1_EATS: (u32, u32) = (29, 28);

const fn m(f: (u32, u32)) -> u64 {
    mask(f.0, f.1)
}

/// Bits of STE word 0 a guest may set (Linux's `STRTAB_STE_0_NESTING_ALLOWED`).
const STE0_ALLOWED: u64 = STE0_V | m(STE0_CFG) | m(STE0_S1FMT) | m(STE0_S1CTXPTR) | m(STE0_S1CDMAX);
/// Bits of STE word 1 a guest may set (Linux's `STRTAB_STE_1_NESTING_ALLOWED`).
const STE1_ALLOWED: u64 =
    m(STE1_S1DSS) | m(STE1_S1CIR) | m(STE1_S1COR) | m(STE1_S1CSH) | STE1_S1STALLD | m(STE1_EATS);

/// The bit ranges outside the permitted fields, lowest first, with the name
/// an error reports.
const STE_FORBIDDEN: [(usize, &str, u64); 3] = [
    (0, "ste[0][58:52]", mask(58, 52)),
    (1, "ste[1][26:8]", mask(26, 8)),
    (1, "ste[1][63:30]", mask(63, 30)),
];

/// The error for `stray` (nonzero) bits outside the permitted fields of word
/// `w`: named after the lowest range they touch, valued the bits in it.
fn stray_ste_bits(w: usize, stray: u64) -> Error {
    for (word, name, range) in STE_FORBIDDEN {
        if word == w && stray & range != 0 {
            return invalid(name, stray & range);
        }
    }
    invalid(if w == 0 { "ste[0]" } else { "ste[1]" }, stray)
}

const CFG_ABORT: u64 = 0b000;
const CFG_BYPASS: u64 = 0b100;
const CFG_S1_TRANS: u64 = 0b101;

/// What a virtual STE asks the device's traffic to get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SteConfig {
    /// Every transaction is aborted (STE.Config 0b000, or V = 0).
    Abort,
    /// No guest stage 1: the device translates through the nesting parent
    /// alone (STE.Config 0b100).
    Bypass,
    /// The guest's context-descriptor table, walked through the nesting
    /// parent (STE.Config 0b101).
    S1Translate,
}

/// Layout of a guest's context-descriptor table (STE.S1Fmt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdTableFormat {
    /// One linear array of descriptors (also how a single descriptor reads).
    Linear,
    /// Two levels, 4 KiB leaf tables of 64 descriptors.
    TwoLevel4K,
    /// Two levels, 64 KiB leaf tables of 1024 descriptors.
    TwoLevel64K,
}

/// What happens to transactions without a SubstreamID when substreams are
/// enabled (STE.S1DSS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum S1Dss {
    /// They are terminated.
    Terminate,
    /// They bypass stage 1.
    Bypass,
    /// They use the descriptor of SubstreamID 0.
    Ssid0,
}

/// What an SMMUv3 (and the nesting parent) can offer a guest's virtual STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuV3SteCaps {
    /// SubstreamID bits (IDR1.SSIDSIZE): the largest S1CDMax allowed.
    pub ssid_bits: u32,
    /// Width of the address space the CD table pointer lives in: the input
    /// (intermediate-physical) size of the nesting parent, at most the SMMU's
    /// OAS. 64 or more means no limit.
    pub oas_bits: u32,
    /// Two-level CD tables (IDR0.CD2L).
    pub two_level_cd: bool,
}

/// A validated `struct iommu_hwpt_arm_smmuv3`: the first two words of a
/// guest's Stream Table Entry, restricted to the fields a guest owns.
///
/// Permitted fields (all others must be zero): word 0 V, Config, S1Fmt,
/// S1ContextPtr, S1CDMax; word 1 S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
/// The host merges them into the physical STE, whose stage-2 half it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuV3Ste {
    words: [u64; 2],
}

impl SmmuV3Ste {
    /// Size of the record in bytes.
    pub const SIZE: usize = 16;

    /// Decode and validate a record.
    ///
    /// With V = 0 the entry is not valid: it is accepted whatever its other
    /// bits and kept as two zero words (config [`SteConfig::Abort`]), as Linux
    /// does, so that the guest sees its own invalid entry fault.
    ///
    /// With V = 1, refused: a bit outside the permitted fields (named
    /// `ste[w][hi:lo]` after the first such range, value the bits set in it);
    /// a Config other than abort, bypass or stage-1 translate (`ste[0].CFG`:
    /// stage-2 configs belong to the host); an EATS other than 0 or 1
    /// (`ste[1].EATS`). For stage-1 translate also: S1CDMax above
    /// `caps.ssid_bits` (Unsupported); when S1CDMax > 0, the reserved S1Fmt
    /// 0b11 or a two-level format without `caps.two_level_cd` (Unsupported),
    /// and the reserved S1DSS 0b11; an S1ContextPtr at or above
    /// 2^`caps.oas_bits`. The stage-1 fields of abort and bypass entries are
    /// ignored by the hardware and only checked against the permitted mask.
    pub fn parse(bytes: &[u8], caps: &SmmuV3SteCaps) -> Result<Self, Error> {
        let rec = record::<{ Self::SIZE }>(bytes)?;
        Self::from_words([le_u64(rec, 0), le_u64(rec, 8)], caps)
    }

    /// Validate two STE words already in CPU order (see [`parse`](Self::parse)).
    pub fn from_words(words: [u64; 2], caps: &SmmuV3SteCaps) -> Result<Self, Error> {
        let [w0, w1] = words;
        if w0 & STE0_V == 0 {
            return Ok(SmmuV3Ste { words: [0, 0] });
        }
        for (w, allowed) in [(0, STE0_ALLOWED), (1, STE1_ALLOWED)] {
            let stray = words.get(w).copied().unwrap_or(0) & !allowed;
            if stray != 0 {
                return Err(stray_ste_bits(w, stray));
            }
        }
        let cfg = field(w0, STE0_CFG.0, STE0_CFG.1);
        if !matches!(cfg, CFG_ABORT | CFG_BYPASS | CFG_S1_TRANS) {
            return Err(invalid("ste[0].CFG", cfg));
        }
        let eats = field(w1, STE1_EATS.0, STE1_EATS.1);
        if eats > 1 {
            return Err(invalid("ste[1].EATS", eats));
        }
        if cfg == CFG_S1_TRANS {
            let cd_max = field(w0, STE0_S1CDMAX.0, STE0_S1CDMAX.1);
            if cd_max > u64::from(caps.ssid_bits) {
                return Err(Error::Unsupported {
                    what: "ste[0].S1CDMax",
                });
            }
            if cd_max > 0 {
                match field(w0, STE0_S1FMT.0, STE0_S1FMT.1) {
                    0 => {}
                    1 | 2 if caps.two_level_cd => {}
                    1 | 2 => {
                        return Err(Error::Unsupported {
                            what: "ste[0].S1Fmt",
                        });
                    }
                    fmt => return Err(invalid("ste[0].S1Fmt", fmt)),
                }
                let dss = field(w1, STE1_S1DSS.0, STE1_S1DSS.1);
                if dss == 0b11 {
                    return Err(invalid("ste[1].S1DSS", dss));
                }
            }
            let ptr = w0 & m(STE0_S1CTXPTR);
            if !fits(ptr, caps.oas_bits) {
                return Err(invalid("ste[0].S1ContextPtr", ptr));
            }
        }
        Ok(SmmuV3Ste { words })
    }

    /// Whether the guest marked the entry valid (V).
    pub fn is_valid(&self) -> bool {
        self.words[0] & STE0_V != 0
    }

    /// What the entry asks for; an invalid entry aborts.
    pub fn config(&self) -> SteConfig {
        if !self.is_valid() {
            return SteConfig::Abort;
        }
        match field(self.words[0], STE0_CFG.0, STE0_CFG.1) {
            CFG_BYPASS => SteConfig::Bypass,
            CFG_S1_TRANS => SteConfig::S1Translate,
            _ => SteConfig::Abort,
        }
    }

    fn s1(&self) -> bool {
        self.config() == SteConfig::S1Translate
    }

    /// Intermediate-physical address of the CD table (64-byte aligned), for
    /// a stage-1 translate entry.
    pub fn s1_context_ptr(&self) -> Option<u64> {
        self.s1().then(|| self.words[0] & m(STE0_S1CTXPTR))
    }

    /// S1CDMax: log2 of the number of context descriptors (0: one, no
    /// substreams), for a stage-1 translate entry.
    pub fn s1_cd_max(&self) -> Option<u8> {
        self.s1()
            .then(|| field(self.words[0], STE0_S1CDMAX.0, STE0_S1CDMAX.1) as u8)
    }

    /// Layout of the CD table, for a stage-1 translate entry. With a single
    /// descriptor (S1CDMax 0) the hardware ignores S1Fmt and this is
    /// [`CdTableFormat::Linear`].
    pub fn s1_fmt(&self) -> Option<CdTableFormat> {
        if !self.s1() {
            return None;
        }
        if field(self.words[0], STE0_S1CDMAX.0, STE0_S1CDMAX.1) == 0 {
            return Some(CdTableFormat::Linear);
        }
        Some(match field(self.words[0], STE0_S1FMT.0, STE0_S1FMT.1) {
            1 => CdTableFormat::TwoLevel4K,
            2 => CdTableFormat::TwoLevel64K,
            _ => CdTableFormat::Linear,
        })
    }

    /// Default-substream behaviour, for a stage-1 translate entry with
    /// substreams (S1CDMax > 0); otherwise the field is ignored.
    pub fn s1dss(&self) -> Option<S1Dss> {
        if !self.s1() || field(self.words[0], STE0_S1CDMAX.0, STE0_S1CDMAX.1) == 0 {
            return None;
        }
        Some(match field(self.words[1], STE1_S1DSS.0, STE1_S1DSS.1) {
            1 => S1Dss::Bypass,
            2 => S1Dss::Ssid0,
            _ => S1Dss::Terminate,
        })
    }

    /// Whether the guest enabled translated ATS (EATS = 0b01). As in Linux
    /// this only counts for a stage-1 translate entry; the host decides the
    /// physical STE's EATS from it and the device's ATS support.
    pub fn eats(&self) -> bool {
        self.s1() && field(self.words[1], STE1_EATS.0, STE1_EATS.1) == 1
    }

    /// The two words, CPU order. Only permitted bits can be set: exactly the
    /// input for a valid entry, zeros for an invalid one.
    pub fn words(&self) -> [u64; 2] {
        self.words
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        put(&mut out, 0, &self.words[0].to_le_bytes());
        put(&mut out, 8, &self.words[1].to_le_bytes());
        out
    }
}

// ---------------------------------------------------------------------------
// Data types and the combined entry point.

/// Which nested format user data is in (`enum iommu_hwpt_data_type` for
/// allocation, `enum iommu_hwpt_invalidate_data_type` for invalidation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NestedDataType {
    /// Intel VT-d stage 1 (`IOMMU_HWPT_DATA_VTD_S1` = 1,
    /// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1` = 0).
    VtdS1,
    /// Arm SMMUv3 virtual STE (`IOMMU_HWPT_DATA_ARM_SMMUV3` = 2,
    /// `IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3` = 1).
    SmmuV3,
}

impl NestedDataType {
    /// From an allocation `data_type`; anything else (including
    /// `IOMMU_HWPT_DATA_NONE`) is `InvalidField("data_type")`.
    pub fn from_raw(raw: u32) -> Result<Self, Error> {
        match raw {
            1 => Ok(NestedDataType::VtdS1),
            2 => Ok(NestedDataType::SmmuV3),
            _ => Err(invalid("data_type", u64::from(raw))),
        }
    }

    /// The allocation `data_type` number.
    pub fn raw(self) -> u32 {
        match self {
            NestedDataType::VtdS1 => 1,
            NestedDataType::SmmuV3 => 2,
        }
    }

    /// From an invalidation `data_type` (numbered differently from allocation).
    pub fn from_raw_invalidate(raw: u32) -> Result<Self, Error> {
        match raw {
            0 => Ok(NestedDataType::VtdS1),
            1 => Ok(NestedDataType::SmmuV3),
            _ => Err(invalid("data_type", u64::from(raw))),
        }
    }

    /// The invalidation `data_type` number.
    pub fn raw_invalidate(self) -> u32 {
        match self {
            NestedDataType::VtdS1 => 0,
            NestedDataType::SmmuV3 => 1,
        }
    }

    /// Size of the configuration record.
    pub fn config_size(self) -> usize {
        match self {
            NestedDataType::VtdS1 => VtdS1::SIZE,
            NestedDataType::SmmuV3 => SmmuV3Ste::SIZE,
        }
    }

    /// Size of one invalidation entry (the smallest `entry_len`).
    pub fn invalidation_size(self) -> usize {
        match self {
            NestedDataType::VtdS1 => VtdS1Inv::SIZE,
            NestedDataType::SmmuV3 => SmmuV3Inv::SIZE,
        }
    }
}

/// A validated nested configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedConfig {
    /// A VT-d guest first-stage table.
    VtdS1(VtdS1),
    /// An SMMUv3 virtual STE.
    SmmuV3Ste(SmmuV3Ste),
}

impl NestedConfig {
    /// The format it came in.
    pub fn data_type(&self) -> NestedDataType {
        match self {
            NestedConfig::VtdS1(_) => NestedDataType::VtdS1,
            NestedConfig::SmmuV3Ste(_) => NestedDataType::SmmuV3,
        }
    }
}

/// The capabilities to validate a nested configuration against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedCaps {
    /// Of a VT-d unit.
    VtdS1(VtdS1Caps),
    /// Of an SMMUv3.
    SmmuV3(SmmuV3SteCaps),
}

/// Parse user data of type `ty` against `caps`. A `ty` that does not match
/// the kind of `caps` (VT-d data for an SMMU) is [`Error::Incompatible`].
pub fn parse_nested(
    ty: NestedDataType,
    bytes: &[u8],
    caps: &NestedCaps,
) -> Result<NestedConfig, Error> {
    match (ty, caps) {
        (NestedDataType::VtdS1, NestedCaps::VtdS1(c)) => {
            VtdS1::parse(bytes, c).map(NestedConfig::VtdS1)
        }
        (NestedDataType::SmmuV3, NestedCaps::SmmuV3(c)) => {
            SmmuV3Ste::parse(bytes, c).map(NestedConfig::SmmuV3Ste)
        }
        _ => Err(Error::Incompatible {
            what: "nested data type and IOMMU",
        }),
    }
}

// ---------------------------------------------------------------------------
// VT-d user invalidation.

/// `IOMMU_VTD_INV_FLAGS_LEAF`.
const VTD_INV_LEAF: u32 = 1;

/// A validated `struct iommu_hwpt_vtd_s1_invalidate`: what to flush after
/// the guest changed its first-stage table.
///
/// Layout: `u64 addr`, `u64 npages`, `u32 flags`, `u32 __reserved`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VtdS1Inv {
    /// Everything cached for the table (`addr` 0, `npages` `u64::MAX`). A
    /// leaf hint on it is accepted and has no effect.
    All,
    /// `npages` 4 KiB pages from `addr`.
    Range {
        /// First address, 4 KiB aligned.
        addr: u64,
        /// Number of pages, at least one; the range ends at or below 2^64.
        npages: u64,
        /// Only leaf entries changed (`IOMMU_VTD_INV_FLAGS_LEAF`): the
        /// paging-structure caches may be kept.
        leaf: bool,
    },
}

impl VtdS1Inv {
    /// Size of the record in bytes.
    pub const SIZE: usize = 24;

    /// Decode and validate one entry.
    ///
    /// Refused: `flags` other than `IOMMU_VTD_INV_FLAGS_LEAF`; a nonzero
    /// `__reserved`; an `addr` not 4 KiB aligned, or nonzero with `npages`
    /// `u64::MAX`; `npages` 0, or a range running past 2^64 (`npages`).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let rec = record::<{ Self::SIZE }>(bytes)?;
        let addr = le_u64(rec, 0);
        let npages = le_u64(rec, 8);
        let flags = le_u32(rec, 16);
        let reserved = le_u32(rec, 20);
        if flags & !VTD_INV_LEAF != 0 {
            return Err(invalid("flags", u64::from(flags & !VTD_INV_LEAF)));
        }
        if reserved != 0 {
            return Err(invalid("__reserved", u64::from(reserved)));
        }
        if addr & 0xfff != 0 {
            return Err(invalid("addr", addr));
        }
        if npages == u64::MAX {
            if addr != 0 {
                return Err(invalid("addr", addr));
            }
            return Ok(VtdS1Inv::All);
        }
        // The range [addr, addr + npages * 4 KiB) must end at or below 2^64.
        let end = u128::from(addr) + (u128::from(npages) << 12);
        if npages == 0 || end > 1u128 << 64 {
            return Err(invalid("npages", npages));
        }
        Ok(VtdS1Inv::Range {
            addr,
            npages,
            leaf: flags & VTD_INV_LEAF != 0,
        })
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let (addr, npages, flags) = match *self {
            VtdS1Inv::All => (0, u64::MAX, 0),
            VtdS1Inv::Range { addr, npages, leaf } => {
                (addr, npages, if leaf { VTD_INV_LEAF } else { 0 })
            }
        };
        let mut out = [0u8; Self::SIZE];
        put(&mut out, 0, &addr.to_le_bytes());
        put(&mut out, 8, &npages.to_le_bytes());
        put(&mut out, 16, &flags.to_le_bytes());
        out
    }
}

// ---------------------------------------------------------------------------
// SMMUv3 user invalidation (one command-queue entry).

const OP_CFGI_CD: u64 = 0x05;
const OP_CFGI_CD_ALL: u64 = 0x06;
const OP_TLBI_NH_ALL: u64 = 0x10;
const OP_TLBI_NH_ASID: u64 = 0x11;
const OP_TLBI_NH_VA: u64 = 0x12;
const OP_TLBI_NH_VAA: u64 = 0x13;
const OP_TLBI_NSNH_ALL: u64 = 0x30;
const OP_ATC_INV: u64 = 0x40;

// Command word 0.
const CMD0_OP: (u32, u32) = (7, 0);
const CMD0_GLOBAL: (u32, u32) = (9, 9);
const CMD0_SSV: (u32, u32) = (11, 11);
const CMD0_SSID: (u32, u32) = (31, 12);
const CMD0_SID: (u32, u32) = (63, 32);
const CMD0_NUM: (u32, u32) = (16, 12);
const CMD0_SCALE: (u32, u32) = (24, 20);
const CMD0_VMID: (u32, u32) = (47, 32);
const CMD0_ASID: (u32, u32) = (63, 48);
// Command word 1.
const CMD1_LEAF: (u32, u32) = (0, 0);
const CMD1_TTL: (u32, u32) = (9, 8);
const CMD1_TG: (u32, u32) = (11, 10);
const CMD1_ADDR: (u32, u32) = (63, 12);
const CMD1_SIZE: (u32, u32) = (5, 0);

/// ATC_INV Size meaning "every address" (2^52 pages of 4 KiB).
const ATC_SIZE_ALL: u8 = 52;

const fn get(w: u64, f: (u32, u32)) -> u64 {
    field(w, f.0, f.1)
}

const fn set(f: (u32, u32), v: u64) -> u64 {
    (v << f.1) & m(f)
}

/// A validated `struct iommu_viommu_arm_smmuv3_invalidate`: one SMMUv3
/// command a guest may issue through its virtual SMMU.
///
/// Only stage-1 TLB, ATC and CD-cache invalidations are accepted, with every
/// reserved bit zero and the VMID field zero (the host supplies its own).
/// StreamIDs are the guest's virtual ones; the host maps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmmuV3Inv {
    /// CMD_TLBI_NH_ALL (0x10), or CMD_TLBI_NSNH_ALL (0x30), which a guest
    /// uses for the same purpose: all stage-1 entries of the guest's VMID.
    TlbiNhAll,
    /// CMD_TLBI_NH_ASID (0x11): every entry of one ASID.
    TlbiNhAsid {
        /// The ASID.
        asid: u16,
    },
    /// CMD_TLBI_NH_VA (0x12): entries of one ASID for an address or range.
    TlbiNhVa {
        /// The ASID.
        asid: u16,
        /// Address, bits 63:12.
        addr: u64,
        /// Only last-level entries.
        leaf: bool,
        /// Range: NUM + 1 blocks of 2^SCALE granules (0 unless `tg` != 0).
        num: u8,
        /// Range scale (0 unless `tg` != 0).
        scale: u8,
        /// Range granule: 0 none (single address), 1 4 KiB, 2 16 KiB, 3 64 KiB.
        tg: u8,
        /// Level of the leaf entries (0 unknown; 0 unless `tg` != 0).
        ttl: u8,
    },
    /// CMD_TLBI_NH_VAA (0x13): like [`TlbiNhVa`](Self::TlbiNhVa) for all
    /// ASIDs.
    TlbiNhVaa {
        /// Address, bits 63:12.
        addr: u64,
        /// Only last-level entries.
        leaf: bool,
        /// Range: NUM + 1 blocks of 2^SCALE granules (0 unless `tg` != 0).
        num: u8,
        /// Range scale (0 unless `tg` != 0).
        scale: u8,
        /// Range granule: 0 none (single address), 1 4 KiB, 2 16 KiB, 3 64 KiB.
        tg: u8,
        /// Level of the leaf entries (0 unknown; 0 unless `tg` != 0).
        ttl: u8,
    },
    /// CMD_ATC_INV (0x40): a device's ATS translation cache.
    AtcInv {
        /// Virtual StreamID.
        sid: u32,
        /// SubstreamID (PASID), when SSV was set.
        ssid: Option<u32>,
        /// Address, aligned to the range size.
        addr: u64,
        /// Range: 2^size pages of 4 KiB; 52 means everything.
        size: u8,
        /// Also global entries of every PASID (needs `ssid`).
        global: bool,
    },
    /// CMD_CFGI_CD (0x05): one cached context descriptor.
    CfgiCd {
        /// Virtual StreamID.
        sid: u32,
        /// SubstreamID of the descriptor.
        ssid: u32,
        /// Only the descriptor itself, not the L1 table entry leading to it.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL (0x06): every cached descriptor of a stream.
    CfgiCdAll {
        /// Virtual StreamID.
        sid: u32,
    },
}

impl SmmuV3Inv {
    /// Size of the record in bytes.
    pub const SIZE: usize = 16;

    /// Decode and validate one command.
    ///
    /// Refused (`InvalidField`): any other opcode (`cmd[0].OPCODE`); a
    /// nonzero VMID (`cmd[0].VMID`); a set bit outside the command's fields
    /// (`cmd[0].RES0` / `cmd[1].RES0`, value the stray bits); for TLBI
    /// without a range granule (TG 0), nonzero `cmd[0].NUM`, `cmd[0].SCALE`
    /// or `cmd[1].TTL`; for ATC_INV, a `cmd[1].Size` above 52, an address not
    /// aligned to the range (`cmd[1].Address`), and without SSV a nonzero
    /// `cmd[0].SSID` or a set `cmd[0].Global`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let rec = record::<{ Self::SIZE }>(bytes)?;
        Self::from_words([le_u64(rec, 0), le_u64(rec, 8)])
    }

    /// Validate a command already in CPU order (see [`parse`](Self::parse)).
    pub fn from_words(words: [u64; 2]) -> Result<Self, Error> {
        let [w0, w1] = words;
        let op = get(w0, CMD0_OP);
        let tlbi_range = m(CMD1_LEAF) | m(CMD1_TTL) | m(CMD1_TG) | m(CMD1_ADDR);
        // The fields each command has, per word.
        let (f0, f1) = match op {
            OP_TLBI_NSNH_ALL => (0, 0),
            OP_TLBI_NH_ALL => (m(CMD0_VMID), 0),
            OP_TLBI_NH_ASID => (m(CMD0_VMID) | m(CMD0_ASID), 0),
            OP_TLBI_NH_VA => (
                m(CMD0_NUM) | m(CMD0_SCALE) | m(CMD0_VMID) | m(CMD0_ASID),
                tlbi_range,
            ),
            OP_TLBI_NH_VAA => (m(CMD0_NUM) | m(CMD0_SCALE) | m(CMD0_VMID), tlbi_range),
            OP_ATC_INV => (
                m(CMD0_GLOBAL) | m(CMD0_SSV) | m(CMD0_SSID) | m(CMD0_SID),
                m(CMD1_SIZE) | m(CMD1_ADDR),
            ),
            OP_CFGI_CD => (m(CMD0_SSID) | m(CMD0_SID), m(CMD1_LEAF)),
            OP_CFGI_CD_ALL => (m(CMD0_SID), 0),
            _ => return Err(invalid("cmd[0].OPCODE", op)),
        };
        let has_vmid = matches!(
            op,
            OP_TLBI_NH_ALL | OP_TLBI_NH_ASID | OP_TLBI_NH_VA | OP_TLBI_NH_VAA
        );
        if has_vmid && get(w0, CMD0_VMID) != 0 {
            return Err(invalid("cmd[0].VMID", get(w0, CMD0_VMID)));
        }
        let stray0 = w0 & !(f0 | m(CMD0_OP));
        if stray0 != 0 {
            return Err(invalid("cmd[0].RES0", stray0));
        }
        let stray1 = w1 & !f1;
        if stray1 != 0 {
            return Err(invalid("cmd[1].RES0", stray1));
        }

        let sid = get(w0, CMD0_SID) as u32;
        let ssid = get(w0, CMD0_SSID) as u32;
        Ok(match op {
            OP_TLBI_NSNH_ALL | OP_TLBI_NH_ALL => SmmuV3Inv::TlbiNhAll,
            OP_TLBI_NH_ASID => SmmuV3Inv::TlbiNhAsid {
                asid: get(w0, CMD0_ASID) as u16,
            },
            OP_TLBI_NH_VA | OP_TLBI_NH_VAA => {
                let num = get(w0, CMD0_NUM) as u8;
                let scale = get(w0, CMD0_SCALE) as u8;
                let tg = get(w1, CMD1_TG) as u8;
                let ttl = get(w1, CMD1_TTL) as u8;
                if tg == 0 {
                    if num != 0 {
                        return Err(invalid("cmd[0].NUM", num.into()));
                    }
                    if scale != 0 {
                        return Err(invalid("cmd[0].SCALE", scale.into()));
                    }
                    if ttl != 0 {
                        return Err(invalid("cmd[1].TTL", ttl.into()));
                    }
                }
                let addr = w1 & m(CMD1_ADDR);
                let leaf = get(w1, CMD1_LEAF) != 0;
                if op == OP_TLBI_NH_VA {
                    SmmuV3Inv::TlbiNhVa {
                        asid: get(w0, CMD0_ASID) as u16,
                        addr,
                        leaf,
                        num,
                        scale,
                        tg,
                        ttl,
                    }
                } else {
                    SmmuV3Inv::TlbiNhVaa {
                        addr,
                        leaf,
                        num,
                        scale,
                        tg,
                        ttl,
                    }
                }
            }
            OP_ATC_INV => {
                let ssv = get(w0, CMD0_SSV) != 0;
                let global = get(w0, CMD0_GLOBAL) != 0;
                if !ssv && ssid != 0 {
                    return Err(invalid("cmd[0].SSID", ssid.into()));
                }
                if !ssv && global {
                    return Err(invalid("cmd[0].Global", 1));
                }
                let size = get(w1, CMD1_SIZE) as u8;
                if size > ATC_SIZE_ALL {
                    return Err(invalid("cmd[1].Size", size.into()));
                }
                let addr = w1 & m(CMD1_ADDR);
                let span_bits = u32::from(size) + 12;
                let span_mask = if span_bits >= 64 {
                    u64::MAX
                } else {
                    (1u64 << span_bits) - 1
                };
                if addr & span_mask != 0 {
                    return Err(invalid("cmd[1].Address", addr));
                }
                SmmuV3Inv::AtcInv {
                    sid,
                    ssid: ssv.then_some(ssid),
                    addr,
                    size,
                    global,
                }
            }
            OP_CFGI_CD => SmmuV3Inv::CfgiCd {
                sid,
                ssid,
                leaf: get(w1, CMD1_LEAF) != 0,
            },
            _ => SmmuV3Inv::CfgiCdAll { sid },
        })
    }

    /// The command's words, CPU order, VMID zero (the host ORs in its own,
    /// and replaces virtual StreamIDs). Field values wider than their field
    /// are truncated.
    pub fn to_words(&self) -> [u64; 2] {
        let tlbi = |op: u64, asid: u64, addr: u64, leaf: bool, n: u8, s: u8, tg: u8, ttl: u8| {
            [
                op | set(CMD0_ASID, asid) | set(CMD0_NUM, n.into()) | set(CMD0_SCALE, s.into()),
                (addr & m(CMD1_ADDR))
                    | set(CMD1_LEAF, leaf.into())
                    | set(CMD1_TG, tg.into())
                    | set(CMD1_TTL, ttl.into()),
            ]
        };
        match *self {
            SmmuV3Inv::TlbiNhAll => [OP_TLBI_NH_ALL, 0],
            SmmuV3Inv::TlbiNhAsid { asid } => [OP_TLBI_NH_ASID | set(CMD0_ASID, asid.into()), 0],
            SmmuV3Inv::TlbiNhVa {
                asid,
                addr,
                leaf,
                num,
                scale,
                tg,
                ttl,
            } => tlbi(OP_TLBI_NH_VA, asid.into(), addr, leaf, num, scale, tg, ttl),
            SmmuV3Inv::TlbiNhVaa {
                addr,
                leaf,
                num,
                scale,
                tg,
                ttl,
            } => tlbi(OP_TLBI_NH_VAA, 0, addr, leaf, num, scale, tg, ttl),
            SmmuV3Inv::AtcInv {
                sid,
                ssid,
                addr,
                size,
                global,
            } => [
                OP_ATC_INV
                    | set(CMD0_SID, sid.into())
                    | set(CMD0_SSV, ssid.is_some().into())
                    | set(CMD0_SSID, ssid.unwrap_or(0).into())
                    | set(CMD0_GLOBAL, global.into()),
                (addr & m(CMD1_ADDR)) | set(CMD1_SIZE, size.into()),
            ],
            SmmuV3Inv::CfgiCd { sid, ssid, leaf } => [
                OP_CFGI_CD | set(CMD0_SID, sid.into()) | set(CMD0_SSID, ssid.into()),
                set(CMD1_LEAF, leaf.into()),
            ],
            SmmuV3Inv::CfgiCdAll { sid } => [OP_CFGI_CD_ALL | set(CMD0_SID, sid.into()), 0],
        }
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let [w0, w1] = self.to_words();
        let mut out = [0u8; Self::SIZE];
        put(&mut out, 0, &w0.to_le_bytes());
        put(&mut out, 8, &w1.to_le_bytes());
        out
    }
}

// ---------------------------------------------------------------------------
// User invalidation arrays.

/// One validated user invalidation entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserInv {
    /// A VT-d stage-1 invalidation.
    Vtd(VtdS1Inv),
    /// An SMMUv3 command.
    SmmuV3(SmmuV3Inv),
}

impl UserInv {
    /// Parse one entry of type `ty` (see [`VtdS1Inv::parse`],
    /// [`SmmuV3Inv::parse`]).
    pub fn parse(ty: NestedDataType, bytes: &[u8]) -> Result<Self, Error> {
        match ty {
            NestedDataType::VtdS1 => VtdS1Inv::parse(bytes).map(UserInv::Vtd),
            NestedDataType::SmmuV3 => SmmuV3Inv::parse(bytes).map(UserInv::SmmuV3),
        }
    }
}

/// How far a user invalidation array got (iommufd reports `handled` back as
/// `entry_num`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidateOutcome {
    /// Entries parsed and handled successfully: always a prefix of the array.
    pub handled: usize,
    /// The entry that stopped the walk, and why; `None` when all were handled.
    pub error: Option<(usize, Error)>,
}

/// Walk a user invalidation array of `count` entries of `entry_len` bytes
/// each, parsing every entry as `ty` and handing it to `f` with its index, in
/// order, until one fails.
///
/// `entry_len` may exceed the format's size (the surplus of every entry must
/// be zero) but not fall short of it (`OutOfRange("entry_len")` at index 0).
/// If `bytes` ends before entry `i` is complete, entry `i` fails with
/// `OutOfRange("user data length")`. A malformed entry is never handed to
/// `f`; an error from `f` stops the walk the same way. With `count` 0 nothing
/// is looked at, as iommufd does.
pub fn for_each_user_invalidation<F>(
    ty: NestedDataType,
    bytes: &[u8],
    entry_len: usize,
    count: usize,
    mut f: F,
) -> InvalidateOutcome
where
    F: FnMut(usize, UserInv) -> Result<(), Error>,
{
    let stop = |i: usize, e: Error| InvalidateOutcome {
        handled: i,
        error: Some((i, e)),
    };
    if count == 0 {
        return InvalidateOutcome {
            handled: 0,
            error: None,
        };
    }
    if entry_len < ty.invalidation_size() {
        return stop(
            0,
            Error::OutOfRange {
                what: "entry_len",
                value: entry_len as u64,
            },
        );
    }
    for i in 0..count {
        let start = i.saturating_mul(entry_len);
        let rest = bytes.get(start..).unwrap_or(&[]);
        let Some(entry) = rest.get(..entry_len) else {
            return stop(
                i,
                Error::OutOfRange {
                    what: "user data length",
                    value: rest.len() as u64,
                },
            );
        };
        let result = UserInv::parse(ty, entry).and_then(|inv| f(i, inv));
        if let Err(e) = result {
            return stop(i, e);
        }
    }
    InvalidateOutcome {
        handled: count,
        error: None,
    }
}
