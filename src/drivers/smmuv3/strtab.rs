//! The stream table: one STE per StreamID, linear or two-level (SMMUv3
//! architecture, "Stream table"). Every STE starts valid and aborting; a
//! two-level table's level-2 tables (256 STEs each) are made, aborting,
//! the first time one of their StreamIDs is configured.

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};

use super::ste;

/// STEs of one level-2 table: 2^SPLIT.
pub const SPLIT: u32 = 8;
/// StreamID bits a linear table covers at most (16 pages of STEs).
pub const LINEAR_MAX_BITS: u32 = 10;
/// StreamID bits a two-level table covers at most (16 pages of level-1
/// descriptors).
pub const TWO_LEVEL_MAX_BITS: u32 = 21;

/// STRTAB_BASE: read-allocate hint.
const BASE_RA: u64 = 1 << 62;
/// STRTAB_BASE: address bits 51:6.
const BASE_ADDR: u64 = 0x000f_ffff_ffff_ffc0;

/// How the table is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One array of 2^`bits` STEs.
    Linear,
    /// Level-1 descriptors, each for 2^[`SPLIT`] STEs.
    TwoLevel,
}

/// A stream table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamTable {
    /// Layout.
    pub layout: Layout,
    /// Base of the (level-1) table.
    pub base: u64,
    /// StreamID bits covered.
    pub bits: u32,
    pages: usize,
}

fn pages_for(bytes: u64) -> usize {
    (bytes.div_ceil(PAGE_SIZE) as usize).next_power_of_two()
}

fn fill_abort<H: Hal>(hal: &H, table: u64, count: u64) {
    let a = ste::abort();
    let p = hal.phys_to_virt(PhysAddr(table)) as *mut u64;
    for i in 0..count as usize {
        for (w, v) in a.iter().enumerate() {
            // SAFETY: `table` is a fresh allocation of `count` STEs the
            // SMMU does not use yet.
            unsafe { p.add(i * ste::DWORDS + w).write_volatile(*v) };
        }
    }
    hal.flush_dcache(p as *const u8, count as usize * 64);
}

impl StreamTable {
    /// A table for `sid_bits` of StreamID (IDR1.SIDSIZE): linear when it
    /// fits in 16 pages or `force_linear`, else two-level where the SMMU
    /// offers it (IDR0.ST_LEVEL); StreamIDs beyond what it covers are
    /// refused at configuration.
    pub fn new<H: Hal>(
        hal: &H,
        sid_bits: u32,
        two_level: bool,
        force_linear: bool,
    ) -> Result<Self, Error> {
        let linear = force_linear || sid_bits <= LINEAR_MAX_BITS || !two_level;
        let (layout, bits, bytes) = if linear {
            let bits = sid_bits.min(LINEAR_MAX_BITS);
            (Layout::Linear, bits, (1u64 << bits) * 64)
        } else {
            let bits = sid_bits.min(TWO_LEVEL_MAX_BITS);
            (Layout::TwoLevel, bits, (1u64 << (bits - SPLIT)) * 8)
        };
        let pages = pages_for(bytes);
        let base = hal.alloc_pages(pages).ok_or(Error::NoMemory)?.get();
        if layout == Layout::Linear {
            fill_abort(hal, base, 1 << bits);
        }
        Ok(StreamTable {
            layout,
            base,
            bits,
            pages,
        })
    }

    /// STRTAB_BASE.
    pub fn base_reg(&self) -> u64 {
        BASE_RA | (self.base & BASE_ADDR)
    }

    /// STRTAB_BASE_CFG: FMT, SPLIT and LOG2SIZE.
    pub fn cfg_reg(&self) -> u32 {
        let fmt = match self.layout {
            Layout::Linear => 0,
            Layout::TwoLevel => 1,
        };
        (fmt << 16) | (SPLIT << 6) | self.bits
    }

    /// The physical address of `sid`'s STE, making its level-2 table if
    /// `create` (`None` when there is none and not `create`).
    pub fn slot<H: Hal>(&mut self, hal: &H, sid: u32, create: bool) -> Result<Option<u64>, Error> {
        if u64::from(sid) >> self.bits != 0 {
            return Err(Error::OutOfRange {
                what: "StreamID (beyond the stream table)",
                value: sid.into(),
            });
        }
        if self.layout == Layout::Linear {
            return Ok(Some(self.base + u64::from(sid) * 64));
        }
        let l1 = self.base + u64::from(sid >> SPLIT) * 8;
        let d = hal.phys_to_virt(PhysAddr(l1)) as *mut u64;
        // SAFETY: `l1` is a descriptor in the level-1 table the driver owns.
        let desc = unsafe { d.read_volatile() };
        let l2 = if ste::L1_SPAN.get(&[desc]) != 0 {
            ste::L1_L2PTR.get_in_place(&[desc])
        } else if create {
            let count = 1u64 << SPLIT;
            let l2 = hal
                .alloc_pages(pages_for(count * 64))
                .ok_or(Error::NoMemory)?
                .get();
            fill_abort(hal, l2, count);
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            // The level-2 table is complete before the descriptor says so;
            // nothing was cached for an invalid descriptor.
            // SAFETY: as above.
            unsafe { d.write_volatile(ste::l1(l2, SPLIT)) };
            hal.flush_dcache(d as *const u8, 8);
            l2
        } else {
            return Ok(None);
        };
        Ok(Some(l2 + u64::from(sid & ((1 << SPLIT) - 1)) * 64))
    }

    /// Pages of the table and its level-2 tables, for leak checks.
    pub fn pages<H: Hal>(&self, hal: &H) -> usize {
        if self.layout == Layout::Linear {
            return self.pages;
        }
        let l2_pages = pages_for((1u64 << SPLIT) * 64);
        let d = hal.phys_to_virt(PhysAddr(self.base)) as *const u64;
        let mut n = self.pages;
        for i in 0..(1usize << (self.bits - SPLIT)) {
            // SAFETY: inside the level-1 table.
            if ste::L1_SPAN.get(&[unsafe { d.add(i).read_volatile() }]) != 0 {
                n += l2_pages;
            }
        }
        n
    }
}
