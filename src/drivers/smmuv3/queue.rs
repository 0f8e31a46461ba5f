//! An SMMUv3 circular queue in memory (command, event or PRI queue): 2^n
//! entries, producer and consumer indices with a wrap bit above the index
//! (SMMUv3 architecture, "Circular queues"), and the base register value
//! that describes it.

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};

/// Q_BASE: read/write-allocate hint.
const Q_BASE_RWA: u64 = 1 << 62;
/// Q_BASE: address bits 51:5.
const Q_BASE_ADDR: u64 = 0x000f_ffff_ffff_ffe0;

/// A queue's memory and geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    /// Physical address of entry 0.
    pub base: u64,
    /// log2 of the number of entries.
    pub log2: u32,
    /// Bytes per entry (16 or 32).
    pub entry: u64,
    /// Pages allocated.
    pub pages: usize,
}

impl Queue {
    /// A queue of up to 2^`max_log2` entries of `entry` bytes, at most
    /// what 16 pages (the largest allocation the Hal makes) hold; zeroed.
    pub fn new<H: Hal>(hal: &H, max_log2: u32, entry: u64) -> Result<Self, Error> {
        let per_page = (PAGE_SIZE / entry).trailing_zeros();
        let log2 = max_log2.min(per_page + 4);
        let pages = ((1u64 << log2) * entry).div_ceil(PAGE_SIZE) as usize;
        let pages = pages.next_power_of_two();
        let base = hal.alloc_pages(pages).ok_or(Error::NoMemory)?.get();
        Ok(Queue {
            base,
            log2,
            entry,
            pages,
        })
    }

    /// Give the memory back.
    ///
    /// # Safety
    /// The SMMU no longer reads or writes the queue.
    pub unsafe fn free<H: Hal>(&self, hal: &H) {
        // SAFETY: the caller's promise; allocated in `new`.
        unsafe { hal.free_pages(PhysAddr(self.base), self.pages) }
    }

    /// The Q_BASE register value.
    pub fn base_reg(&self) -> u64 {
        Q_BASE_RWA | (self.base & Q_BASE_ADDR) | u64::from(self.log2)
    }

    /// Entries.
    pub fn len(&self) -> u32 {
        1 << self.log2
    }

    /// Whether the queue has no entry (never: at least one).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Index and wrap bits of a PROD / CONS value (other bits dropped).
    pub fn ptr(&self, reg: u32) -> u32 {
        reg & ((2 << self.log2) - 1)
    }

    /// The entry slot a pointer names.
    pub fn index(&self, ptr: u32) -> u32 {
        ptr & (self.len() - 1)
    }

    /// The pointer after `ptr`.
    pub fn next(&self, ptr: u32) -> u32 {
        self.ptr(ptr + 1)
    }

    /// Whether the queue holds nothing between `cons` and `prod`.
    pub fn empty(&self, prod: u32, cons: u32) -> bool {
        self.ptr(prod) == self.ptr(cons)
    }

    /// Whether every slot between `cons` and `prod` is taken.
    pub fn full(&self, prod: u32, cons: u32) -> bool {
        let (p, c) = (self.ptr(prod), self.ptr(cons));
        self.index(p) == self.index(c) && p != c
    }

    /// Entries between `cons` and `prod`.
    pub fn used(&self, prod: u32, cons: u32) -> u32 {
        let (p, c) = (self.ptr(prod), self.ptr(cons));
        p.wrapping_sub(c) & ((2 << self.log2) - 1)
    }

    /// Physical address of slot `ptr`'s entry.
    pub fn slot(&self, ptr: u32) -> u64 {
        self.base + u64::from(self.index(ptr)) * self.entry
    }

    /// Whether `ptr` lies in `[from, to)`, going forward around the ring.
    pub fn between(&self, ptr: u32, from: u32, to: u32) -> bool {
        let span = self.used(to, from);
        self.used(ptr, from) < span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(log2: u32) -> Queue {
        Queue {
            base: 0x10_0000,
            log2,
            entry: 16,
            pages: 1,
        }
    }

    #[test]
    fn wrap_bits_tell_full_from_empty() {
        let q = q(2);
        assert!(q.empty(0, 0));
        assert!(q.full(0b100, 0));
        assert!(!q.full(0b011, 0));
        assert_eq!(q.used(0b011, 0), 3);
        assert_eq!(q.used(0b001, 0b110), 3);
        assert_eq!(q.next(0b111), 0);
        assert_eq!(q.slot(0b101), 0x10_0000 + 16);
        assert!(q.between(0b101, 0b100, 0b110));
        assert!(!q.between(0b110, 0b100, 0b110));
        assert!(q.between(0b000, 0b111, 0b001));
        // Bits above the wrap bit (error codes, overflow flags) are ignored.
        assert_eq!(q.ptr(0x8000_0005), 5);
        assert_eq!(super::tests::q(7).base_reg(), (1 << 62) | 0x10_0000 | 7);
    }
}
