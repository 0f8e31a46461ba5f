//! Arm VMSAv8-64 translation table descriptors, 4 KiB granule (Arm ARM
//! DDI 0487, D8.3 "Translation table descriptor formats", D8.4 memory
//! attributes; SMMUv3 uses the same formats for its stage-1 and stage-2 walks).

use super::{Format, Prot, Pte};
use crate::error::Error;

/// Valid (bit 0).
const VALID: u64 = 1 << 0;
/// Table descriptor at levels 0-2, page descriptor at level 3 (bit 1); clear = block.
const TABLE_OR_PAGE: u64 = 1 << 1;
/// Stage 1: AP[1], unprivileged (EL0) access allowed (bit 6).
const AP_EL0: u64 = 1 << 6;
/// Stage 1: AP[2], read-only (bit 7).
const AP_RO: u64 = 1 << 7;
/// Stage 2: S2AP[0], read allowed (bit 6).
const S2AP_R: u64 = 1 << 6;
/// Stage 2: S2AP[1], write allowed (bit 7).
const S2AP_W: u64 = 1 << 7;
/// Shareability: inner shareable (bits 9:8 = 0b11).
const SH_INNER: u64 = 0b11 << 8;
/// Access flag (bit 10): preset so no access-flag fault is taken.
const AF: u64 = 1 << 10;
/// Stage 1: not global (bit 11).
const NG: u64 = 1 << 11;
/// Stage 1: privileged execute-never (bit 53).
const PXN: u64 = 1 << 53;
/// Stage 1: unprivileged execute-never (bit 54); stage 2: XN[1].
const XN: u64 = 1 << 54;
/// Stage 2 MemAttr[3:0] (bits 5:2): normal, inner and outer write-back.
const S2_NORMAL_WB: u64 = 0b1111 << 2;
/// Stage 2 MemAttr: normal, inner and outer non-cacheable.
const S2_NORMAL_NC: u64 = 0b0101 << 2;
/// Stage 2 MemAttr: Device-nGnRE.
const S2_DEVICE: u64 = 0b0001 << 2;
/// Stage 2 MemAttr field.
const S2_MEMATTR: u64 = 0b1111 << 2;
/// Bits 11:2 of a table descriptor are ignored by the walker (D8.3.1); the
/// engine keeps its entry count there. (FEAT_HAFT would give bit 10 a meaning
/// in table descriptors; the engine does not enable it.)
const TABLE_IGNORED_SHIFT: u32 = 2;
/// Stage 1 AttrIndx field (bits 4:2).
const ATTR_INDX: u64 = 0b111 << 2;

#[inline]
fn arm_decode(pte: u64, level: u32, mask: u64) -> Pte {
    if pte & VALID == 0 {
        return Pte::Invalid;
    }
    let table_or_page = pte & TABLE_OR_PAGE != 0;
    match (level, table_or_page) {
        (0, true) => Pte::Leaf(pte & mask),
        // A block descriptor at level 3 is reserved: treat as not present.
        (0, false) => Pte::Invalid,
        (_, true) => Pte::Table(pte & mask),
        (l, false) => Pte::Leaf(pte & mask & !((1u64 << (12 + 9 * l)) - 1)),
    }
}

/// Page (level 3: bits 1:0 = 0b11) or block (levels 1-2: 0b01).
#[inline]
fn arm_is_leaf(pte: u64, level: u32) -> bool {
    pte & (VALID | TABLE_OR_PAGE)
        == if level == 0 {
            VALID | TABLE_OR_PAGE
        } else {
            VALID
        }
}

/// Which MAIR slots (AttrIndx values) hold the three memory types stage-1
/// leaves use. The embedder programs MAIR (SMMU CD.MAIR) with [`ArmS1::mair`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MairIndices {
    /// Normal, inner/outer write-back read/write-allocate (MAIR value 0xff).
    pub normal: u8,
    /// Normal, non-cacheable (0x44).
    pub normal_nc: u8,
    /// Device-nGnRE (0x04).
    pub device: u8,
}

impl Default for MairIndices {
    /// The layout Linux's io-pgtable uses: 0 non-cacheable, 1 write-back, 2 device.
    fn default() -> Self {
        MairIndices {
            normal: 1,
            normal_nc: 0,
            device: 2,
        }
    }
}

/// Arm stage 1, 4 KiB granule, 48-bit input (4 levels, start level 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArmS1 {
    mair: MairIndices,
    oas: u32,
}

impl ArmS1 {
    /// Stage 1 with the given MAIR slot assignment and output address size
    /// (32..=48 bits: SMMU IDR5.OAS / ID_AA64MMFR0.PARange).
    pub fn new(mair: MairIndices, oas_bits: u32) -> Result<Self, Error> {
        if !(32..=48).contains(&oas_bits) {
            return Err(Error::OutOfRange {
                what: "stage-1 output address size",
                value: oas_bits as u64,
            });
        }
        if [mair.normal, mair.normal_nc, mair.device]
            .iter()
            .any(|&i| i > 7)
        {
            return Err(Error::OutOfRange {
                what: "MAIR index",
                value: mair.normal.max(mair.normal_nc).max(mair.device) as u64,
            });
        }
        Ok(ArmS1 {
            mair,
            oas: oas_bits,
        })
    }

    /// MAIR value matching the slot assignment.
    pub fn mair(&self) -> u64 {
        (0xffu64 << (8 * self.mair.normal))
            | (0x44u64 << (8 * self.mair.normal_nc))
            | (0x04u64 << (8 * self.mair.device))
    }

    /// TCR.T0SZ for the 48-bit input range.
    pub fn t0sz(&self) -> u8 {
        16
    }
}

impl Format for ArmS1 {
    #[inline]
    fn levels(&self) -> u32 {
        4
    }
    #[inline]
    fn root_bits(&self) -> u32 {
        9
    }
    #[inline]
    fn oas(&self) -> u32 {
        self.oas
    }
    #[inline]
    fn leaf_at(&self, level: u32) -> bool {
        // 4 KiB pages at level 3, 2 MiB blocks at level 2, 1 GiB at level 1.
        level <= 2
    }
    #[inline]
    fn leaf_bits(&self, level: u32, prot: Prot) -> u64 {
        let mut b = VALID | AF;
        if level == 0 {
            b |= TABLE_OR_PAGE;
        }
        let index = if prot.contains(Prot::MMIO) {
            self.mair.device
        } else if prot.contains(Prot::CACHE) {
            self.mair.normal
        } else {
            self.mair.normal_nc
        };
        b |= (index as u64) << 2;
        if !prot.contains(Prot::MMIO) {
            b |= SH_INNER;
        }
        if !prot.contains(Prot::PRIV) {
            b |= AP_EL0;
        }
        if !prot.contains(Prot::WRITE) {
            b |= AP_RO;
        }
        if !prot.contains(Prot::GLOBAL) {
            b |= NG;
        }
        if !prot.contains(Prot::EXEC) || prot.contains(Prot::MMIO) {
            b |= PXN | XN;
        }
        b
    }
    #[inline]
    fn table_bits(&self, _level: u32) -> u64 {
        // No hierarchical restrictions (APTable, XNTable, PXNTable all 0).
        VALID | TABLE_OR_PAGE
    }
    #[inline]
    fn count_shift(&self) -> u32 {
        TABLE_IGNORED_SHIFT
    }
    #[inline]
    fn decode(&self, pte: u64, level: u32) -> Pte {
        arm_decode(pte, level, self.addr_mask())
    }
    #[inline]
    fn is_leaf(&self, pte: u64, level: u32) -> bool {
        arm_is_leaf(pte, level)
    }
    #[inline]
    fn leaf_prot(&self, pte: u64, _level: u32) -> Prot {
        let mut p = Prot::READ;
        p.set(Prot::WRITE, pte & AP_RO == 0);
        p.set(Prot::PRIV, pte & AP_EL0 == 0);
        p.set(Prot::EXEC, pte & XN == 0 || pte & PXN == 0);
        p.set(Prot::GLOBAL, pte & NG == 0);
        let index = ((pte & ATTR_INDX) >> 2) as u8;
        p.set(Prot::MMIO, index == self.mair.device);
        p.set(Prot::CACHE, index == self.mair.normal);
        p
    }
}

/// Arm stage 2, 4 KiB granule, with the start level and concatenated root
/// tables derived from the IPA size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArmS2 {
    ias: u32,
    oas: u32,
    levels: u32,
    root_bits: u32,
}

impl ArmS2 {
    /// Stage 2 for `ias_bits` of IPA (25..=48) and `oas_bits` of output
    /// (32..=48). When the top level would resolve 4 bits or fewer, the walk
    /// starts one level lower with up to 16 concatenated root tables (Arm ARM
    /// D8.2.x, "concatenated translation tables"), never below level 2.
    pub fn new(ias_bits: u32, oas_bits: u32) -> Result<Self, Error> {
        if !(25..=48).contains(&ias_bits) {
            return Err(Error::OutOfRange {
                what: "stage-2 input address size",
                value: ias_bits as u64,
            });
        }
        if !(32..=48).contains(&oas_bits) {
            return Err(Error::OutOfRange {
                what: "stage-2 output address size",
                value: oas_bits as u64,
            });
        }
        let bits = ias_bits - 12;
        let mut levels = bits.div_ceil(9);
        let mut root_bits = bits - 9 * (levels - 1);
        if levels > 2 && root_bits <= 4 {
            levels -= 1;
            root_bits += 9;
        }
        Ok(ArmS2 {
            ias: ias_bits,
            oas: oas_bits,
            levels,
            root_bits,
        })
    }

    /// STE.S2T0SZ / VTCR.T0SZ: 64 - IPA bits.
    pub fn t0sz(&self) -> u8 {
        (64 - self.ias) as u8
    }

    /// Arm level the walk starts at (0, 1 or 2).
    pub fn start_level(&self) -> u32 {
        4 - self.levels
    }

    /// STE.S2SL0 / VTCR.SL0 for the 4 KiB granule: 0 = level 2, 1 = level 1, 2 = level 0.
    pub fn sl0(&self) -> u8 {
        (2 - self.start_level()) as u8
    }

    /// Number of concatenated root tables (1..=16).
    pub fn concatenated(&self) -> usize {
        self.root_pages()
    }
}

impl Format for ArmS2 {
    #[inline]
    fn levels(&self) -> u32 {
        self.levels
    }
    #[inline]
    fn root_bits(&self) -> u32 {
        self.root_bits
    }
    #[inline]
    fn oas(&self) -> u32 {
        self.oas
    }
    #[inline]
    fn leaf_at(&self, level: u32) -> bool {
        level <= 2 && level < self.levels
    }
    #[inline]
    fn leaf_bits(&self, level: u32, prot: Prot) -> u64 {
        let mut b = VALID | AF;
        if level == 0 {
            b |= TABLE_OR_PAGE;
        }
        if prot.contains(Prot::MMIO) {
            b |= S2_DEVICE;
        } else {
            b |= SH_INNER;
            b |= if prot.contains(Prot::CACHE) {
                S2_NORMAL_WB
            } else {
                S2_NORMAL_NC
            };
        }
        if prot.contains(Prot::READ) {
            b |= S2AP_R;
        }
        if prot.contains(Prot::WRITE) {
            b |= S2AP_W;
        }
        if !prot.contains(Prot::EXEC) || prot.contains(Prot::MMIO) {
            b |= XN;
        }
        b
    }
    #[inline]
    fn table_bits(&self, _level: u32) -> u64 {
        VALID | TABLE_OR_PAGE
    }
    #[inline]
    fn count_shift(&self) -> u32 {
        TABLE_IGNORED_SHIFT
    }
    #[inline]
    fn decode(&self, pte: u64, level: u32) -> Pte {
        arm_decode(pte, level, self.addr_mask())
    }
    #[inline]
    fn is_leaf(&self, pte: u64, level: u32) -> bool {
        arm_is_leaf(pte, level)
    }
    #[inline]
    fn leaf_prot(&self, pte: u64, _level: u32) -> Prot {
        let mut p = Prot::empty();
        p.set(Prot::READ, pte & S2AP_R != 0);
        p.set(Prot::WRITE, pte & S2AP_W != 0);
        p.set(Prot::EXEC, pte & XN == 0);
        p.set(Prot::MMIO, pte & S2_MEMATTR == S2_DEVICE);
        p.set(Prot::CACHE, pte & S2_MEMATTR == S2_NORMAL_WB);
        p
    }
}
