//! User data for SMMUv3 nesting: a guest's virtual STE
//! (`struct iommu_hwpt_arm_smmuv3`) and the commands it issues through its
//! virtual SMMU (`struct iommu_viommu_arm_smmuv3_invalidate`), decoded from
//! untrusted bytes and validated field by field against the layouts of
//! [`super::ste`] and [`super::cmd`].
//!
//! The formats are those of Linux's iommufd uAPI, so a VMM written against
//! iommufd passes its buffers through unchanged. Every word is
//! little-endian; a record may be longer than its format only if every extra
//! byte is zero ([`record`]). Errors name the offending field:
//! [`Error::InvalidField`] for a value malformed whatever the hardware,
//! [`Error::Unsupported`] for a well-formed value this SMMU cannot honour.
//!
//! The driver merges a validated [`SmmuV3Ste`] into the physical STE, whose
//! stage-2 half it owns, and issues each [`SmmuV3Inv`] under the nesting
//! parent's VMID with the guest's virtual StreamIDs replaced by real ones
//! ([`for_each_command`]).

use super::cmd::{self, Command, op};
use super::ste::{self, config};
use crate::core::user::{InvalidateOutcome, UserArray, VirtualIds, le_u64, put, record};
use crate::drivers::bits::{Field, fits, mask, word_mask};
use crate::error::{Error, invalid};

/// `IOMMU_HWPT_DATA_ARM_SMMUV3`: the allocation data type of [`SmmuV3Ste`].
pub const HWPT_DATA_ARM_SMMUV3: u32 = 2;
/// `IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3`: the invalidation data type of
/// [`SmmuV3Inv`].
pub const INVALIDATE_DATA_ARM_SMMUV3: u32 = 1;
/// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3`: what [`crate::core::HwInfo::ty`] says
/// for an SMMUv3 (`regs[0..6]` = IDR0..IDR5, `regs[6]` = IIDR, `regs[7]` =
/// AIDR).
pub const HW_INFO_TYPE_ARM_SMMUV3: u32 = 2;

/// The bit ranges outside the guest's fields, lowest first, with the name an
/// error reports.
const STE_FORBIDDEN: [(usize, &str, u64); 3] = [
    (0, "ste[0][58:52]", mask(58, 52)),
    (1, "ste[1][26:8]", mask(26, 8)),
    (1, "ste[1][63:30]", mask(63, 30)),
];

/// The error for `stray` (nonzero) bits outside the guest's fields of word
/// `w`: named after the lowest range they touch, valued the bits in it.
fn stray_ste_bits(w: usize, stray: u64) -> Error {
    for (word, name, range) in STE_FORBIDDEN {
        if word == w && stray & range != 0 {
            return invalid(name, stray & range);
        }
    }
    invalid(if w == 0 { "ste[0]" } else { "ste[1]" }, stray)
}

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
/// guest's Stream Table Entry, restricted to the fields a guest owns
/// ([`ste::GUEST_FIELDS`]: word 0 V, Config, S1Fmt, S1ContextPtr, S1CDMax;
/// word 1 S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS). The host merges them
/// into the physical STE, whose stage-2 half it owns.
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
        if ste::V.get(&words) == 0 {
            return Ok(SmmuV3Ste { words: [0, 0] });
        }
        for (w, allowed) in [(0, ste::GUEST_WORD0), (1, ste::GUEST_WORD1)] {
            let stray = words[w] & !allowed;
            if stray != 0 {
                return Err(stray_ste_bits(w, stray));
            }
        }
        let cfg = ste::CONFIG.get(&words);
        if !matches!(cfg, config::ABORT | config::BYPASS | config::S1_TRANS) {
            return Err(invalid("ste[0].CFG", cfg));
        }
        let eats = ste::EATS.get(&words);
        if eats > 1 {
            return Err(invalid("ste[1].EATS", eats));
        }
        if cfg == config::S1_TRANS {
            let cd_max = ste::S1_CD_MAX.get(&words);
            if cd_max > u64::from(caps.ssid_bits) {
                return Err(Error::Unsupported {
                    what: "ste[0].S1CDMax",
                });
            }
            if cd_max > 0 {
                match ste::S1FMT.get(&words) {
                    ste::s1fmt::LINEAR => {}
                    ste::s1fmt::TWO_LEVEL_4K | ste::s1fmt::TWO_LEVEL_64K if caps.two_level_cd => {}
                    ste::s1fmt::TWO_LEVEL_4K | ste::s1fmt::TWO_LEVEL_64K => {
                        return Err(Error::Unsupported {
                            what: "ste[0].S1Fmt",
                        });
                    }
                    fmt => return Err(invalid("ste[0].S1Fmt", fmt)),
                }
                let dss = ste::S1DSS.get(&words);
                if dss == 0b11 {
                    return Err(invalid("ste[1].S1DSS", dss));
                }
            }
            let ptr = ste::S1_CONTEXT_PTR.get_in_place(&words);
            if !fits(ptr, caps.oas_bits) {
                return Err(invalid("ste[0].S1ContextPtr", ptr));
            }
        }
        Ok(SmmuV3Ste { words })
    }

    /// Whether the guest marked the entry valid (V).
    pub fn is_valid(&self) -> bool {
        ste::V.get(&self.words) != 0
    }

    /// What the entry asks for; an invalid entry aborts.
    pub fn config(&self) -> SteConfig {
        if !self.is_valid() {
            return SteConfig::Abort;
        }
        match ste::CONFIG.get(&self.words) {
            config::BYPASS => SteConfig::Bypass,
            config::S1_TRANS => SteConfig::S1Translate,
            _ => SteConfig::Abort,
        }
    }

    fn s1(&self) -> bool {
        self.config() == SteConfig::S1Translate
    }

    fn cd_max(&self) -> u64 {
        ste::S1_CD_MAX.get(&self.words)
    }

    /// Intermediate-physical address of the CD table (64-byte aligned), for
    /// a stage-1 translate entry.
    pub fn s1_context_ptr(&self) -> Option<u64> {
        self.s1()
            .then(|| ste::S1_CONTEXT_PTR.get_in_place(&self.words))
    }

    /// S1CDMax: log2 of the number of context descriptors (0: one, no
    /// substreams), for a stage-1 translate entry.
    pub fn s1_cd_max(&self) -> Option<u8> {
        self.s1().then(|| self.cd_max() as u8)
    }

    /// Whether the guest's CD table covers SubstreamIDs (stage-1 translate
    /// with S1CDMax > 0): the guest then owns the device's PASID space, and
    /// PASID-tagged traffic translates through its descriptors.
    pub fn has_substreams(&self) -> bool {
        self.s1() && self.cd_max() > 0
    }

    /// Layout of the CD table, for a stage-1 translate entry. With a single
    /// descriptor (S1CDMax 0) the hardware ignores S1Fmt and this is
    /// [`CdTableFormat::Linear`].
    pub fn s1_fmt(&self) -> Option<CdTableFormat> {
        if !self.s1() {
            return None;
        }
        if self.cd_max() == 0 {
            return Some(CdTableFormat::Linear);
        }
        Some(match ste::S1FMT.get(&self.words) {
            ste::s1fmt::TWO_LEVEL_4K => CdTableFormat::TwoLevel4K,
            ste::s1fmt::TWO_LEVEL_64K => CdTableFormat::TwoLevel64K,
            _ => CdTableFormat::Linear,
        })
    }

    /// Default-substream behaviour, for a stage-1 translate entry with
    /// substreams (S1CDMax > 0); otherwise the field is ignored.
    pub fn s1dss(&self) -> Option<S1Dss> {
        if !self.has_substreams() {
            return None;
        }
        Some(match ste::S1DSS.get(&self.words) {
            ste::s1dss::BYPASS => S1Dss::Bypass,
            ste::s1dss::SSID0 => S1Dss::Ssid0,
            _ => S1Dss::Terminate,
        })
    }

    /// Whether the guest enabled translated ATS (EATS = 0b01). As in Linux
    /// this only counts for a stage-1 translate entry; the host decides the
    /// physical STE's EATS from it and the device's ATS support.
    pub fn eats(&self) -> bool {
        self.s1() && ste::EATS.get(&self.words) == 1
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
        /// The address and range.
        range: TlbiRange,
    },
    /// CMD_TLBI_NH_VAA (0x13): like [`TlbiNhVa`](Self::TlbiNhVa) for all
    /// ASIDs.
    TlbiNhVaa {
        /// The address and range.
        range: TlbiRange,
    },
    /// CMD_ATC_INV (0x40): a device's ATS translation cache.
    AtcInv {
        /// StreamID (the guest's virtual one until resolved).
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
        /// StreamID (the guest's virtual one until resolved).
        sid: u32,
        /// SubstreamID of the descriptor.
        ssid: u32,
        /// Only the descriptor itself, not the L1 table entry leading to it.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL (0x06): every cached descriptor of a stream.
    CfgiCdAll {
        /// StreamID (the guest's virtual one until resolved).
        sid: u32,
    },
}

/// The address and range of a TLBI_NH_VA / TLBI_NH_VAA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbiRange {
    /// Address, bits 63:12.
    pub addr: u64,
    /// Only last-level entries.
    pub leaf: bool,
    /// Range: NUM + 1 blocks of 2^SCALE granules (0 unless `tg` != 0).
    pub num: u8,
    /// Range scale (0 unless `tg` != 0).
    pub scale: u8,
    /// Range granule: 0 none (single address), 1 4 KiB, 2 16 KiB, 3 64 KiB.
    pub tg: u8,
    /// Level of the leaf entries (0 unknown; 0 unless `tg` != 0).
    pub ttl: u8,
}

impl TlbiRange {
    fn decode(c: &Command) -> Result<Self, Error> {
        let r = TlbiRange {
            addr: cmd::ADDR.get_in_place(&c.words()),
            leaf: c.get(cmd::LEAF) != 0,
            num: c.get(cmd::NUM) as u8,
            scale: c.get(cmd::SCALE) as u8,
            tg: c.get(cmd::TG) as u8,
            ttl: c.get(cmd::TTL) as u8,
        };
        if r.tg == 0 {
            for (name, v) in [
                ("cmd[0].NUM", r.num),
                ("cmd[0].SCALE", r.scale),
                ("cmd[1].TTL", r.ttl),
            ] {
                if v != 0 {
                    return Err(invalid(name, v.into()));
                }
            }
        }
        Ok(r)
    }

    fn encode(&self, c: Command) -> Command {
        c.with(cmd::NUM, self.num.into())
            .with(cmd::SCALE, self.scale.into())
            .with(cmd::LEAF, self.leaf.into())
            .with(cmd::TG, self.tg.into())
            .with(cmd::TTL, self.ttl.into())
            .with(cmd::ADDR, self.addr >> cmd::ADDR.lo)
    }
}

/// The fields each accepted opcode has besides its opcode.
fn fields_of(opcode: u64) -> Option<&'static [Field]> {
    const TLBI_RANGE: [Field; 7] = [
        cmd::NUM,
        cmd::SCALE,
        cmd::VMID,
        cmd::LEAF,
        cmd::TTL,
        cmd::TG,
        cmd::ADDR,
    ];
    Some(match opcode {
        op::TLBI_NSNH_ALL => &[],
        op::TLBI_NH_ALL => &[cmd::VMID],
        op::TLBI_NH_ASID => &[cmd::VMID, cmd::ASID],
        op::TLBI_NH_VA => &[
            cmd::NUM,
            cmd::SCALE,
            cmd::VMID,
            cmd::ASID,
            cmd::LEAF,
            cmd::TTL,
            cmd::TG,
            cmd::ADDR,
        ],
        op::TLBI_NH_VAA => &TLBI_RANGE,
        op::ATC_INV => &[
            cmd::GLOBAL,
            cmd::SSV,
            cmd::SSID,
            cmd::SID,
            cmd::ATC_SIZE,
            cmd::ADDR,
        ],
        op::CFGI_CD => &[cmd::SSID, cmd::SID, cmd::LEAF],
        op::CFGI_CD_ALL => &[cmd::SID],
        _ => return None,
    })
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
        let c = Command::from_words(words);
        let opcode = c.opcode();
        let fields = fields_of(opcode).ok_or(invalid("cmd[0].OPCODE", opcode))?;
        if fields.contains(&cmd::VMID) && c.get(cmd::VMID) != 0 {
            return Err(invalid("cmd[0].VMID", c.get(cmd::VMID)));
        }
        let stray0 = words[0] & !(word_mask(fields, 0) | cmd::OPCODE.mask());
        if stray0 != 0 {
            return Err(invalid("cmd[0].RES0", stray0));
        }
        let stray1 = words[1] & !word_mask(fields, 1);
        if stray1 != 0 {
            return Err(invalid("cmd[1].RES0", stray1));
        }

        let sid = c.get(cmd::SID) as u32;
        let ssid = c.get(cmd::SSID) as u32;
        Ok(match opcode {
            op::TLBI_NSNH_ALL | op::TLBI_NH_ALL => SmmuV3Inv::TlbiNhAll,
            op::TLBI_NH_ASID => SmmuV3Inv::TlbiNhAsid {
                asid: c.get(cmd::ASID) as u16,
            },
            op::TLBI_NH_VA => SmmuV3Inv::TlbiNhVa {
                asid: c.get(cmd::ASID) as u16,
                range: TlbiRange::decode(&c)?,
            },
            op::TLBI_NH_VAA => SmmuV3Inv::TlbiNhVaa {
                range: TlbiRange::decode(&c)?,
            },
            op::ATC_INV => {
                let ssv = c.get(cmd::SSV) != 0;
                let global = c.get(cmd::GLOBAL) != 0;
                if !ssv && ssid != 0 {
                    return Err(invalid("cmd[0].SSID", ssid.into()));
                }
                if !ssv && global {
                    return Err(invalid("cmd[0].Global", 1));
                }
                let size = c.get(cmd::ATC_SIZE);
                if size > cmd::ATC_SIZE_ALL {
                    return Err(invalid("cmd[1].Size", size));
                }
                let addr = cmd::ADDR.get_in_place(&words);
                let span_bits = size as u32 + 12;
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
                    size: size as u8,
                    global,
                }
            }
            op::CFGI_CD => SmmuV3Inv::CfgiCd {
                sid,
                ssid,
                leaf: c.get(cmd::LEAF) != 0,
            },
            _ => SmmuV3Inv::CfgiCdAll { sid },
        })
    }

    /// The StreamID the command names, if it names a device.
    pub fn sid_mut(&mut self) -> Option<&mut u32> {
        match self {
            SmmuV3Inv::AtcInv { sid, .. }
            | SmmuV3Inv::CfgiCd { sid, .. }
            | SmmuV3Inv::CfgiCdAll { sid } => Some(sid),
            _ => None,
        }
    }

    /// The command, VMID zero (the host sets its own, and replaces virtual
    /// StreamIDs). Field values wider than their field are truncated.
    pub fn to_command(&self) -> Command {
        match *self {
            SmmuV3Inv::TlbiNhAll => Command::new(op::TLBI_NH_ALL),
            SmmuV3Inv::TlbiNhAsid { asid } => {
                Command::new(op::TLBI_NH_ASID).with(cmd::ASID, asid.into())
            }
            SmmuV3Inv::TlbiNhVa { asid, range } => {
                range.encode(Command::new(op::TLBI_NH_VA).with(cmd::ASID, asid.into()))
            }
            SmmuV3Inv::TlbiNhVaa { range } => range.encode(Command::new(op::TLBI_NH_VAA)),
            SmmuV3Inv::AtcInv {
                sid,
                ssid,
                addr,
                size,
                global,
            } => Command::new(op::ATC_INV)
                .with(cmd::SID, sid.into())
                .with(cmd::SSV, ssid.is_some().into())
                .with(cmd::SSID, ssid.unwrap_or(0).into())
                .with(cmd::GLOBAL, global.into())
                .with(cmd::ATC_SIZE, size.into())
                .with(cmd::ADDR, addr >> cmd::ADDR.lo),
            SmmuV3Inv::CfgiCd { sid, ssid, leaf } => Command::new(op::CFGI_CD)
                .with(cmd::SID, sid.into())
                .with(cmd::SSID, ssid.into())
                .with(cmd::LEAF, leaf.into()),
            SmmuV3Inv::CfgiCdAll { sid } => {
                Command::new(op::CFGI_CD_ALL).with(cmd::SID, sid.into())
            }
        }
    }

    /// The command's words, CPU order (see [`to_command`](Self::to_command)).
    pub fn to_words(&self) -> [u64; 2] {
        self.to_command().words()
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

/// Walk a user array of [`SmmuV3Inv`] commands: each is validated, a
/// StreamID it names is resolved through the guest's virtual IDs (`ids`; an
/// ID the guest does not have is `InvalidField("cmd[0].SID")`, so a guest
/// reaches only its own devices), and the command is handed to `f`, in order,
/// until one fails; the outcome names the first bad index. An array of
/// another data type than [`INVALIDATE_DATA_ARM_SMMUV3`] is refused whole
/// (`InvalidField("data_type")` at index 0).
pub fn for_each_command<F>(
    array: &UserArray<'_>,
    ids: &dyn VirtualIds,
    mut f: F,
) -> InvalidateOutcome
where
    F: FnMut(SmmuV3Inv) -> Result<(), Error>,
{
    array.walk_as(INVALIDATE_DATA_ARM_SMMUV3, SmmuV3Inv::SIZE, |_, entry| {
        let mut inv = SmmuV3Inv::parse(entry)?;
        if let Some(sid) = inv.sid_mut() {
            *sid = ids
                .resolve(*sid)
                .ok_or(invalid("cmd[0].SID", u64::from(*sid)))?;
        }
        f(inv)
    })
}
