//! One global PASID allocator.
//!
//! Every PASID (SVA bond, attach at a PASID of any domain type, nested
//! guest PASIDs) comes from a single allocator over `1..2^20`: PASID 0 is the
//! requester ID's own address space (RID_PASID) and is never handed out.
//! A device with a narrower PASID width (PCIe PASID capability, SMMU
//! IDR1.SSIDSIZE, VT-d ECAP.PSS) asks for a PASID below its limit; the
//! allocator returns the lowest free one, so narrow devices are not starved
//! by wide ones.
//!
//! No allocator is needed: the bitmap lives inline, sized by the embedder
//! ([`Capacities::PasidWords`](super::Capacities::PasidWords), 64 PASIDs a
//! word): a system without PASID devices gives it no words and pays nothing;
//! the whole 20-bit space takes 16,384 words (128 KiB). It starts all zero
//! (PASID 0 is taken implicitly), so it lands in `.bss`.

use crate::error::{Error, Object};

use super::config::ArrayStore;

/// PASID width of the architecture (PCIe, VT-d, SMMUv3): 20 bits.
pub const PASID_BITS: u32 = 20;
/// One past the largest PASID.
pub const PASID_LIMIT: u32 = 1 << PASID_BITS;

/// Words of a bitmap covering the whole 20-bit space.
pub const FULL_WORDS: usize = PASID_LIMIT as usize / 64;

/// A process address space ID other than 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pasid(u32);

impl Pasid {
    /// A PASID value in `1..2^20` (`BadPasid` otherwise). Whether it is
    /// allocated is the allocator's business.
    pub const fn new(value: u32) -> Result<Pasid, Error> {
        if value == 0 || value >= PASID_LIMIT {
            return Err(Error::BadPasid { pasid: value });
        }
        Ok(Pasid(value))
    }

    /// Its value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// Allocator of PASIDs `1..64 * words`, lowest free first.
///
/// One bit per PASID (set = in use); PASID 0 is always taken, without a bit.
/// A search visits the words in order, skipping full ones 64 PASIDs at a
/// time.
pub struct PasidAllocator<W: ArrayStore<u64> = [u64; FULL_WORDS]> {
    words: W,
    used: u32,
}

impl<W: ArrayStore<u64>> Default for PasidAllocator<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: ArrayStore<u64>> PasidAllocator<W> {
    /// An allocator with only PASID 0 (RID_PASID) taken.
    pub const fn new() -> Self {
        PasidAllocator {
            words: W::EMPTY,
            used: 0,
        }
    }

    /// Write an allocator with only PASID 0 taken at `at`, a word at a time.
    ///
    /// # Safety
    /// `at` is valid for writes and aligned; what it held is overwritten
    /// without being dropped.
    pub unsafe fn init_at(at: *mut Self) {
        // SAFETY: fields of the place the caller vouches for.
        unsafe {
            W::init_at(core::ptr::addr_of_mut!((*at).words));
            core::ptr::addr_of_mut!((*at).used).write(0);
        }
    }

    /// One past the largest PASID it can hand out (at most 2^20).
    pub fn limit(&self) -> u32 {
        (self.words.as_ref().len() as u64 * 64).min(PASID_LIMIT as u64) as u32
    }

    /// PASIDs handed out (or reserved) and not yet freed.
    pub fn in_use(&self) -> u32 {
        self.used
    }

    /// The word `w`, with PASID 0's bit set.
    fn word(&self, w: usize) -> u64 {
        self.words.as_ref()[w] | u64::from(w == 0)
    }

    /// The lowest free PASID below `2^width` (`width` = the device's PASID
    /// width, 1..=20) and below the allocator's limit, marked in use.
    pub fn alloc(&mut self, width: u32) -> Result<Pasid, Error> {
        if width == 0 || width > PASID_BITS {
            return Err(Error::OutOfRange {
                what: "PASID width (1..=20 bits)",
                value: width as u64,
            });
        }
        let limit = (1u32 << width).min(self.limit());
        let exhausted = Error::Exhausted {
            what: Object::Pasid,
        };
        let words = limit.div_ceil(64) as usize;
        // Words are visited in increasing order, so the first word that is
        // not full holds the lowest free PASID.
        let w = (0..words)
            .find(|&w| self.word(w) != u64::MAX)
            .ok_or(exhausted)?;
        let pasid = w as u32 * 64 + (!self.word(w)).trailing_zeros();
        if pasid >= limit {
            return Err(exhausted);
        }
        self.set(pasid);
        Ok(Pasid(pasid))
    }

    /// Take a specific PASID (e.g. one firmware or a guest already uses).
    pub fn reserve(&mut self, pasid: u32) -> Result<Pasid, Error> {
        if pasid == 0 || pasid >= self.limit() || self.is_used(pasid) {
            return Err(Error::BadPasid { pasid });
        }
        self.set(pasid);
        Ok(Pasid(pasid))
    }

    /// Give a PASID back. Freeing one that is not in use is refused and
    /// changes nothing.
    pub fn free(&mut self, pasid: Pasid) -> Result<(), Error> {
        let p = pasid.0;
        if p == 0 || !self.is_used(p) {
            return Err(Error::BadPasid { pasid: p });
        }
        self.words.as_mut()[p as usize / 64] &= !(1u64 << (p % 64));
        self.used -= 1;
        Ok(())
    }

    /// Whether `pasid` is in use (PASID 0 always is).
    pub fn is_used(&self, pasid: u32) -> bool {
        pasid == 0
            || (pasid < self.limit()
                && self.words.as_ref()[pasid as usize / 64] & (1u64 << (pasid % 64)) != 0)
    }

    fn set(&mut self, p: u32) {
        self.words.as_mut()[p as usize / 64] |= 1u64 << (p % 64);
        self.used += 1;
    }
}
