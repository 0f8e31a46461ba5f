//! VT-d second-level paging entries (VT-d spec rev 4.x, 9.8 "Second-Stage
//! Paging Entries"; the same layout serves legacy and scalable mode).

use super::{Format, Prot, Pte};
use crate::error::Error;

bitflags::bitflags! {
    /// Large page sizes a VT-d unit's second-level tables may use
    /// (CAP.SLLPS).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct LargePages: u8 {
        /// 2 MiB.
        const SIZE_2M = 1 << 0;
        /// 1 GiB.
        const SIZE_1G = 1 << 1;
    }
}

/// Read (bit 0).
const R: u64 = 1 << 0;
/// Write (bit 1).
const W: u64 = 1 << 1;
/// Execute (bit 2), only honoured when execute requests are enabled.
const X: u64 = 1 << 2;
/// Page size: this entry is a 2 MiB / 1 GiB leaf (bit 7).
const PS: u64 = 1 << 7;
/// Snoop: accesses snoop the CPU caches regardless of the request (bit 11).
const SNP: u64 = 1 << 11;

/// VT-d second-level table format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdSl {
    levels: u32,
    large: LargePages,
    snoop: bool,
    execute: bool,
    oas: u32,
    /// Input addresses the unit translates (CAP.MGAW), at most the tables'
    /// width.
    input_bits: u32,
}

impl VtdSl {
    /// Tables walking an adjusted guest address width of `aw_bits` (39 → 3
    /// levels, 48 → 4, 57 → 5; pick one CAP.SAGAW offers) with the large pages
    /// CAP.SLLPS offers. Output addresses default to 52 bits; see [`VtdSl::with_oas`].
    pub fn new(aw_bits: u32, large: LargePages) -> Result<Self, Error> {
        let levels = match aw_bits {
            39 => 3,
            48 => 4,
            57 => 5,
            _ => {
                return Err(Error::OutOfRange {
                    what: "VT-d address width (39, 48 or 57)",
                    value: aw_bits as u64,
                });
            }
        };
        Ok(VtdSl {
            levels,
            large,
            snoop: false,
            execute: false,
            oas: 52,
            input_bits: aw_bits,
        })
    }

    /// Set SNP on cacheable (`Prot::CACHE`) leaves; needs ECAP.SC.
    pub fn with_snoop(mut self, on: bool) -> Self {
        self.snoop = on;
        self
    }

    /// Honour `Prot::EXEC` (bit 2); only for units with execute requests enabled.
    pub fn with_execute(mut self, on: bool) -> Self {
        self.execute = on;
        self
    }

    /// Output address width (the DMAR host address width), 32..=52 bits.
    pub fn with_oas(mut self, bits: u32) -> Result<Self, Error> {
        if !(32..=52).contains(&bits) {
            return Err(Error::OutOfRange {
                what: "output address width",
                value: bits as u64,
            });
        }
        self.oas = bits;
        Ok(self)
    }

    /// Translate input addresses below 2^`bits` only (CAP.MGAW, when it is
    /// below the tables' width: the unit faults addresses above it); at
    /// least 32, at most the width the tables walk.
    pub fn with_input_bits(mut self, bits: u32) -> Result<Self, Error> {
        let walked = 12 + 9 * self.levels;
        if !(32..=walked).contains(&bits) {
            return Err(Error::OutOfRange {
                what: "input address width (32 up to the tables' width)",
                value: bits as u64,
            });
        }
        self.input_bits = bits;
        Ok(self)
    }

    /// Context-entry AW field: 1 = 3-level, 2 = 4-level, 3 = 5-level.
    pub fn agaw(&self) -> u8 {
        (self.levels - 2) as u8
    }
}

impl Format for VtdSl {
    #[inline]
    fn levels(&self) -> u32 {
        self.levels
    }
    #[inline]
    fn input_limit(&self) -> u64 {
        1u64 << self.input_bits
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
        match level {
            0 => true,
            1 => self.large.contains(LargePages::SIZE_2M),
            2 => self.large.contains(LargePages::SIZE_1G),
            _ => false,
        }
    }
    #[inline]
    fn leaf_bits(&self, level: u32, prot: Prot) -> u64 {
        let mut b = 0;
        if prot.contains(Prot::READ) {
            b |= R;
        }
        if prot.contains(Prot::WRITE) {
            b |= W;
        }
        if self.execute && prot.contains(Prot::EXEC) {
            b |= X;
        }
        if level > 0 {
            b |= PS;
        }
        if self.snoop && prot.contains(Prot::CACHE) && !prot.contains(Prot::MMIO) {
            b |= SNP;
        }
        b
    }
    #[inline]
    fn table_bits(&self, _level: u32) -> u64 {
        // Permissions combine across levels: tables grant all, leaves restrict.
        // X in an upper entry is needed for execute to reach the leaf (9.8).
        if self.execute { R | W | X } else { R | W }
    }
    #[inline]
    fn count_shift(&self) -> u32 {
        // Bits 61:52 are ignored in non-leaf second-level entries (9.8).
        52
    }
    #[inline]
    fn decode(&self, pte: u64, level: u32) -> Pte {
        if pte & (R | W) == 0 {
            Pte::Invalid
        } else if level > 0 && pte & PS == 0 {
            Pte::Table(pte & self.addr_mask())
        } else {
            Pte::Leaf(pte & self.addr_mask() & !((1u64 << (12 + 9 * level)) - 1))
        }
    }
    #[inline]
    fn is_leaf(&self, pte: u64, level: u32) -> bool {
        pte & (R | W) != 0 && (level == 0 || pte & PS != 0)
    }
    #[inline]
    fn leaf_prot(&self, pte: u64, _level: u32) -> Prot {
        let mut p = Prot::empty();
        p.set(Prot::READ, pte & R != 0);
        p.set(Prot::WRITE, pte & W != 0);
        p.set(Prot::EXEC, pte & X != 0);
        p.set(Prot::CACHE, pte & SNP != 0);
        p
    }
}
