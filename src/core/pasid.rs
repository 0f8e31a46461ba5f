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
//! No allocator is needed: the bitmap (128 KiB) and its summary (2 KiB) live
//! inline, so a `static` (behind the embedder's lock) or a field of the
//! embedder's IOMMU state holds it.

use crate::error::{Error, Object};

/// PASID width of the architecture (PCIe, VT-d, SMMUv3): 20 bits.
pub const PASID_BITS: u32 = 20;
/// One past the largest PASID.
pub const PASID_LIMIT: u32 = 1 << PASID_BITS;

const WORDS: usize = PASID_LIMIT as usize / 64;
const SUMMARY: usize = WORDS / 64;

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

/// Allocator of PASIDs `1..2^20`, lowest free first.
///
/// `words` has one bit per PASID (set = in use); `full` one bit per word
/// (set = all 64 PASIDs of that word in use), so a search skips full words
/// 64 at a time.
pub struct PasidAllocator {
    words: [u64; WORDS],
    full: [u64; SUMMARY],
    used: u32,
}

impl Default for PasidAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl PasidAllocator {
    /// An allocator with only PASID 0 (RID_PASID) taken.
    pub const fn new() -> Self {
        let mut words = [0u64; WORDS];
        words[0] = 1;
        PasidAllocator {
            words,
            full: [0; SUMMARY],
            used: 0,
        }
    }

    /// PASIDs handed out (or reserved) and not yet freed.
    pub fn in_use(&self) -> u32 {
        self.used
    }

    /// The lowest free PASID below `2^width` (`width` = the device's PASID
    /// width, 1..=20), marked in use.
    pub fn alloc(&mut self, width: u32) -> Result<Pasid, Error> {
        if width == 0 || width > PASID_BITS {
            return Err(Error::OutOfRange {
                what: "PASID width (1..=20 bits)",
                value: width as u64,
            });
        }
        let limit = 1u32 << width;
        let exhausted = Error::Exhausted {
            what: Object::Pasid,
        };
        // Words are visited in increasing order, so the first word that is
        // not full holds the lowest free PASID.
        let (si, s) = self
            .full
            .iter()
            .enumerate()
            .find(|(_, s)| **s != u64::MAX)
            .ok_or(exhausted)?;
        let w = si * 64 + (!s).trailing_zeros() as usize;
        let pasid = w as u32 * 64 + (!self.words[w]).trailing_zeros();
        if pasid >= limit {
            return Err(exhausted);
        }
        self.set(pasid);
        Ok(Pasid(pasid))
    }

    /// Take a specific PASID (e.g. one firmware or a guest already uses).
    pub fn reserve(&mut self, pasid: u32) -> Result<Pasid, Error> {
        if pasid == 0 || pasid >= PASID_LIMIT || self.is_used(pasid) {
            return Err(Error::BadPasid { pasid });
        }
        self.set(pasid);
        Ok(Pasid(pasid))
    }

    /// Give a PASID back. Freeing one that is not in use is refused and
    /// changes nothing.
    pub fn free(&mut self, pasid: Pasid) -> Result<(), Error> {
        let p = pasid.0;
        if p == 0 || p >= PASID_LIMIT || !self.is_used(p) {
            return Err(Error::BadPasid { pasid: p });
        }
        let w = p as usize / 64;
        self.words[w] &= !(1u64 << (p % 64));
        self.full[w / 64] &= !(1u64 << (w % 64));
        self.used -= 1;
        Ok(())
    }

    /// Whether `pasid` is in use (PASID 0 always is).
    pub fn is_used(&self, pasid: u32) -> bool {
        pasid < PASID_LIMIT && self.words[pasid as usize / 64] & (1u64 << (pasid % 64)) != 0
    }

    fn set(&mut self, p: u32) {
        let w = p as usize / 64;
        self.words[w] |= 1u64 << (p % 64);
        if self.words[w] == u64::MAX {
            self.full[w / 64] |= 1u64 << (w % 64);
        }
        self.used += 1;
    }
}
