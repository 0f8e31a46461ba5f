//! x86-64 paging entries (Intel SDM vol. 3A, 4.5 "4-Level Paging and 5-Level
//! Paging", tables 4-15 to 4-20). The same format is VT-d's first-level
//! (stage-1) table (VT-d spec 9.7), so SVA can share a CPU page table.

use super::{Format, Prot, Pte};
use crate::error::Error;

/// Present.
const P: u64 = 1 << 0;
/// Writable.
const RW: u64 = 1 << 1;
/// User (supervisor-only when clear).
const US: u64 = 1 << 2;
/// Page-level write-through.
const PWT: u64 = 1 << 3;
/// Page-level cache disable.
const PCD: u64 = 1 << 4;
/// Accessed.
const A: u64 = 1 << 5;
/// Dirty (leaves only).
const D: u64 = 1 << 6;
/// Page size: a 2 MiB / 1 GiB leaf in a PDE / PDPTE (bit 7; PAT in a 4 KiB PTE).
const PS: u64 = 1 << 7;
/// Global.
const G: u64 = 1 << 8;
/// Execute-disable.
const XD: u64 = 1 << 63;

/// x86-64 4- or 5-level paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86_64 {
    levels: u32,
    gb_pages: bool,
    oas: u32,
}

impl X86_64 {
    /// 4-level (48-bit) or 5-level (57-bit) paging; 2 MiB pages, no 1 GiB
    /// pages (see [`X86_64::with_1g_pages`]), 52-bit physical addresses.
    pub fn new(five_level: bool) -> Self {
        X86_64 {
            levels: if five_level { 5 } else { 4 },
            gb_pages: false,
            oas: 52,
        }
    }

    /// Allow 1 GiB pages (CPUID pdpe1gb; VT-d CAP.FL1GP for first-level use).
    pub fn with_1g_pages(mut self, on: bool) -> Self {
        self.gb_pages = on;
        self
    }

    /// Physical address width (MAXPHYADDR), 32..=52 bits.
    pub fn with_oas(mut self, bits: u32) -> Result<Self, Error> {
        if !(32..=52).contains(&bits) {
            return Err(Error::OutOfRange {
                what: "physical address width",
                value: bits as u64,
            });
        }
        self.oas = bits;
        Ok(self)
    }
}

impl Format for X86_64 {
    #[inline]
    fn levels(&self) -> u32 {
        self.levels
    }
    #[inline]
    fn root_bits(&self) -> u32 {
        9
    }
    #[inline]
    fn input_limit(&self) -> u64 {
        // Canonical lower half only: the bits above 47 (56 with 5 levels)
        // must copy bit 47 (56), and the upper half is the supervisor side.
        1u64 << (self.ias() - 1)
    }
    #[inline]
    fn oas(&self) -> u32 {
        self.oas
    }
    #[inline]
    fn leaf_at(&self, level: u32) -> bool {
        level == 0 || level == 1 || (level == 2 && self.gb_pages)
    }
    #[inline]
    fn leaf_bits(&self, level: u32, prot: Prot) -> u64 {
        // Accessed and dirty are preset so the walker never has to set them.
        let mut b = P | A;
        if prot.contains(Prot::WRITE) {
            b |= RW | D;
        }
        if !prot.contains(Prot::PRIV) {
            b |= US;
        }
        if prot.contains(Prot::MMIO) {
            b |= PCD | PWT;
        } else if !prot.contains(Prot::CACHE) {
            b |= PCD;
        }
        if prot.contains(Prot::GLOBAL) {
            b |= G;
        }
        if !prot.contains(Prot::EXEC) {
            b |= XD;
        }
        if level > 0 {
            b |= PS;
        }
        b
    }
    #[inline]
    fn table_bits(&self, _level: u32) -> u64 {
        // Permissions combine across levels: tables grant all, leaves restrict.
        // (VT-d first-level walks also require U/S set at every level for user requests.)
        P | RW | US | A
    }
    #[inline]
    fn count_shift(&self) -> u32 {
        // Bits 61:52 are ignored in non-leaf entries (SDM tables 4-15..4-18).
        52
    }
    #[inline]
    fn decode(&self, pte: u64, level: u32) -> Pte {
        if pte & P == 0 {
            Pte::Invalid
        } else if level > 0 && pte & PS == 0 {
            Pte::Table(pte & self.addr_mask())
        } else {
            Pte::Leaf(pte & self.addr_mask() & !((1u64 << (12 + 9 * level)) - 1))
        }
    }
    #[inline]
    fn is_leaf(&self, pte: u64, level: u32) -> bool {
        pte & P != 0 && (level == 0 || pte & PS != 0)
    }
    #[inline]
    fn leaf_prot(&self, pte: u64, _level: u32) -> Prot {
        let mut p = Prot::READ;
        p.set(Prot::WRITE, pte & RW != 0);
        p.set(Prot::PRIV, pte & US == 0);
        p.set(Prot::EXEC, pte & XD == 0);
        p.set(Prot::GLOBAL, pte & G != 0);
        p.set(Prot::MMIO, pte & (PCD | PWT) == PCD | PWT);
        p.set(Prot::CACHE, pte & (PCD | PWT) == 0);
        p
    }
}
