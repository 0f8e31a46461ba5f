//! A device's context-descriptor table: one CD per SubstreamID, linear or
//! two-level with 4 KiB leaf tables of 64 CDs (SMMUv3 architecture, "CD
//! table"). Made the first time a stage-1 domain is attached to the device,
//! freed when its STE no longer reaches it.

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};

use super::cd;
use super::ste::{self, s1fmt};

/// SubstreamID bits a linear CD table covers at most (16 pages).
pub const LINEAR_MAX_BITS: u8 = 10;
/// SubstreamID bits a two-level CD table covers at most (16 pages of
/// level-1 descriptors).
pub const TWO_LEVEL_MAX_BITS: u8 = 19;
/// CDs in a leaf table of a two-level CD table (one page).
const LEAF_BITS: u8 = 6;

/// A CD table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdTab {
    /// Base of the (level-1) table.
    pub base: u64,
    /// SubstreamID bits (0: one CD, no substreams).
    pub bits: u8,
    /// Two-level.
    pub two_level: bool,
    pages: usize,
}

impl CdTab {
    /// A table for `bits` of SubstreamID, two-level beyond what a linear
    /// table of 16 pages holds where the SMMU offers it (IDR0.CD2L).
    pub fn new<H: Hal>(hal: &H, bits: u8, cd2l: bool) -> Result<Self, Error> {
        let two_level = bits > LINEAR_MAX_BITS && cd2l;
        let bits = if two_level {
            bits.min(TWO_LEVEL_MAX_BITS)
        } else {
            bits.min(LINEAR_MAX_BITS)
        };
        let bytes = if two_level {
            (1u64 << (bits - LEAF_BITS)) * 8
        } else {
            (1u64 << bits) * cd::BYTES
        };
        let pages = (bytes.div_ceil(PAGE_SIZE) as usize).next_power_of_two();
        let base = hal.alloc_pages(pages).ok_or(Error::NoMemory)?.get();
        Ok(CdTab {
            base,
            bits,
            two_level,
            pages,
        })
    }

    /// How an STE names this table.
    pub fn ste_view(&self) -> ste::CdTable {
        ste::CdTable {
            ptr: self.base,
            fmt: if self.two_level {
                s1fmt::TWO_LEVEL_4K
            } else {
                s1fmt::LINEAR
            },
            cd_max: self.bits,
        }
    }

    /// The physical address of `ssid`'s CD, making its leaf table if
    /// `create`; with whether a leaf was made (its level-1 descriptor then
    /// needs invalidating too). `None` when there is none.
    pub fn slot<H: Hal>(
        &self,
        hal: &H,
        ssid: u32,
        create: bool,
    ) -> Result<Option<(u64, bool)>, Error> {
        if u64::from(ssid) >> self.bits != 0 {
            return Err(Error::BadPasid { pasid: ssid });
        }
        if !self.two_level {
            return Ok(Some((self.base + u64::from(ssid) * cd::BYTES, false)));
        }
        let l1 = self.base + u64::from(ssid >> LEAF_BITS) * 8;
        let d = hal.phys_to_virt(PhysAddr(l1)) as *mut u64;
        // SAFETY: a descriptor of the level-1 table the driver owns.
        let desc = unsafe { d.read_volatile() };
        let index = u64::from(ssid) & ((1 << LEAF_BITS) - 1);
        if cd::L1_V.get(&[desc]) != 0 {
            return Ok(Some((
                cd::L1_L2PTR.get_in_place(&[desc]) + index * cd::BYTES,
                false,
            )));
        }
        if !create {
            return Ok(None);
        }
        let leaf = hal.alloc_pages(1).ok_or(Error::NoMemory)?.get();
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: as above; the leaf is zeroed (every CD invalid).
        unsafe { d.write_volatile(cd::l1(leaf)) };
        hal.flush_dcache(d as *const u8, 8);
        Ok(Some((leaf + index * cd::BYTES, true)))
    }

    /// Give the table and its leaves back.
    ///
    /// # Safety
    ///
    /// No STE reaches the table any more, and the SMMU holds nothing of it
    /// (its STE and CDs invalidated and synced).
    pub unsafe fn free<H: Hal>(self, hal: &H) {
        if self.two_level {
            let d = hal.phys_to_virt(PhysAddr(self.base)) as *const u64;
            for i in 0..(1usize << (self.bits - LEAF_BITS)) {
                // SAFETY: inside the level-1 table, still allocated.
                let desc = unsafe { d.add(i).read_volatile() };
                if cd::L1_V.get(&[desc]) != 0 {
                    let leaf = cd::L1_L2PTR.get_in_place(&[desc]);
                    // SAFETY: a leaf `slot` allocated; unused, as the caller
                    // promises.
                    unsafe { hal.free_pages(PhysAddr(leaf), 1) };
                }
            }
        }
        // SAFETY: allocated in `new` with this count; unused (caller).
        unsafe { hal.free_pages(PhysAddr(self.base), self.pages) };
    }

    /// Pages of the table and its leaves, for leak checks.
    pub fn pages<H: Hal>(&self, hal: &H) -> usize {
        if !self.two_level {
            return self.pages;
        }
        let d = hal.phys_to_virt(PhysAddr(self.base)) as *const u64;
        let mut n = self.pages;
        for i in 0..(1usize << (self.bits - LEAF_BITS)) {
            // SAFETY: inside the level-1 table.
            if cd::L1_V.get(&[unsafe { d.add(i).read_volatile() }]) != 0 {
                n += 1;
            }
        }
        n
    }
}
