//! The translation structures a unit walks for a device: the root table,
//! context tables, and (scalable mode) each device's PASID directory and
//! PASID tables, and how entries in them change.
//!
//! Entries are written with their present bit last; a present entry is
//! replaced by going through not-present with the caches that held it
//! flushed in between (context cache, then PASID cache, then IOTLB, then
//! device TLB, one wait). Under caching mode (CAP.CM) a not-present →
//! present change is flushed too, since the unit may cache absence. The
//! structures a device needs are created the first time something is
//! attached to it and kept for the unit's lifetime.

use crate::error::{Error, Object};
use crate::hal::{Hal, PAGE_SIZE};

use super::desc;
use super::unit::{DID_RESERVED, DidKind, Unit, publish, read, withdraw};
use super::{context, pasid_entry, root};

/// What a device's scalable-mode context entry says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevCaps {
    /// The device's translation cache (ATS) is enabled.
    pub ats: bool,
    /// PASID width the device supports (0: none).
    pub pasid_bits: u8,
}

impl DevCaps {
    /// PASID-directory entries this device needs: one per 64 PASIDs, at
    /// least 128 (the smallest directory a context entry describes) and at
    /// most 8192 (16 pages, the largest allocation the Hal makes): PASIDs
    /// from 2^19 up are refused.
    fn dir_entries(&self) -> u64 {
        1u64 << u32::from(self.pasid_bits).saturating_sub(6).clamp(7, 13)
    }
}

fn not_attached() -> Error {
    Error::NotFound {
        what: Object::Attachment,
    }
}

impl Unit {
    /// The context table holding `sid`'s entry, allocated (and its root
    /// entry published) if `create`; with the entry's physical address.
    fn context_slot<H: Hal>(
        &mut self,
        hal: &H,
        sid: u16,
        create: bool,
    ) -> Result<Option<u64>, Error> {
        let bus = u64::from(sid >> 8);
        let devfn = u64::from(sid & 0xff);
        let root_entry = self.root + bus * 16;
        let e: [u64; root::WORDS] = read(hal, root_entry);
        // Scalable mode: 256-bit context entries, devfn 0..127 in the lower
        // table, 128..255 in the upper one.
        let upper = self.scalable && devfn >= 128;
        let index = if self.scalable { devfn % 128 } else { devfn };
        let (present, ptr) = if upper {
            (root::UP, root::UCTP)
        } else {
            (root::P, root::CTP)
        };
        let table = if present.get(&e) != 0 {
            ptr.get_in_place(&e)
        } else if create {
            let t = hal.alloc_pages(1).ok_or(Error::NoMemory)?.get();
            let new = if self.scalable {
                let lower = (root::LP.get(&e) != 0).then(|| root::LCTP.get_in_place(&e));
                let upper_t = (root::UP.get(&e) != 0).then(|| root::UCTP.get_in_place(&e));
                if upper {
                    root::scalable(lower, Some(t))
                } else {
                    root::scalable(Some(t), upper_t)
                }
            } else {
                root::legacy(t)
            };
            // Root entries are not cached: the context-cache flush that
            // follows the context entry covers this.
            publish(hal, root_entry, &new);
            t
        } else {
            return Ok(None);
        };
        let size = if self.scalable { 32 } else { 16 };
        Ok(Some(table + index * size))
    }

    /// The present context entry of `sid`, if any (legacy entries in the
    /// first two words).
    pub fn context<H: Hal>(&mut self, hal: &H, sid: u16) -> Result<Option<[u64; 4]>, Error> {
        let Some(slot) = self.context_slot(hal, sid, false)? else {
            return Ok(None);
        };
        let e: [u64; 4] = if self.scalable {
            read(hal, slot)
        } else {
            let l: [u64; 2] = read(hal, slot);
            [l[0], l[1], 0, 0]
        };
        Ok((context::P.get(&e) != 0).then_some(e))
    }

    /// Make `sid`'s legacy context entry `entry` (`None`: not present),
    /// flushing what the unit cached of the present one, if any (context
    /// cache, the IOTLB of its domain, and the device TLB with `ats`).
    pub fn set_legacy_context<H: Hal>(
        &mut self,
        hal: &H,
        sid: u16,
        entry: Option<[u64; context::LEGACY_WORDS]>,
        ats: bool,
    ) -> Result<(), Error> {
        let Some(slot) = self.context_slot(hal, sid, entry.is_some())? else {
            // Nothing was ever attached: nothing to clear.
            return Ok(());
        };
        let old: [u64; context::LEGACY_WORDS] = read(hal, slot);
        if context::P.get(&old) != 0 {
            // Present → anything: break first, flush, then write.
            withdraw(hal, slot);
            let did = context::DID.get(&old) as u16;
            if let Err(e) = self.flush_context(hal, sid, did, ats) {
                // A failed attach leaves the device on the old domain.
                publish(hal, slot, &old);
                return Err(e);
            }
        }
        if let Some(e) = entry {
            publish(hal, slot, &e);
            if self.id.cap.caching_mode {
                // Not-present → present: the absence may be cached (under
                // DID 0).
                self.flush_context(hal, sid, DID_RESERVED, false)?;
            }
        }
        Ok(())
    }

    /// Context cache for `sid` (under `did`), the domain's IOTLB, and the
    /// device TLB with `ats`; one wait.
    fn flush_context<H: Hal>(
        &mut self,
        hal: &H,
        sid: u16,
        did: u16,
        ats: bool,
    ) -> Result<(), Error> {
        if self.skip_flush {
            return Ok(());
        }
        self.submit(
            hal,
            &[desc::context_device(did, sid), desc::iotlb_domain(did)],
        )?;
        if ats {
            self.submit(hal, &[desc::device_tlb(sid, sid, 0, None)])?;
        }
        self.wait(hal)
    }

    /// The scalable context entry of `sid`, created (with its PASID
    /// directory) if `create` names the device; the directory's address
    /// and entry count.
    fn pasid_dir<H: Hal>(
        &mut self,
        hal: &H,
        sid: u16,
        create: Option<DevCaps>,
    ) -> Result<Option<(u64, u64)>, Error> {
        let Some(slot) = self.context_slot(hal, sid, create.is_some())? else {
            return Ok(None);
        };
        let ctx: [u64; context::SCALABLE_WORDS] = read(hal, slot);
        if context::P.get(&ctx) != 0 {
            let entries = 1u64 << (context::PDTS.get(&ctx) + 7);
            return Ok(Some((context::PASIDDIRPTR.get_in_place(&ctx), entries)));
        }
        let Some(dev) = create else {
            return Ok(None);
        };
        let entries = dev.dir_entries();
        let pages = (entries * 8).div_ceil(PAGE_SIZE) as usize;
        let dir = hal.alloc_pages(pages).ok_or(Error::NoMemory)?.get();
        let pasids = dev.pasid_bits > 0 && self.id.ecap.pasid;
        let pdts = u64::from(entries.trailing_zeros() - 7);
        let mut ctx = context::scalable(dir, pdts, pasids, dev.ats);
        // Without PRE the unit answers the device's page requests itself
        // and never queues them. A device without PRI sends none.
        context::PRE.set(&mut ctx, self.prq.is_some().into());
        publish(hal, slot, &ctx);
        if self.id.cap.caching_mode && !self.skip_flush {
            self.submit(
                hal,
                &[
                    desc::context_device(DID_RESERVED, sid),
                    desc::pasid_cache_global(),
                ],
            )?;
            self.wait(hal)?;
        }
        Ok(Some((dir, entries)))
    }

    /// The PASID-table entry of (`sid`, `pasid`), creating the device's
    /// scalable context entry, PASID directory and table on the way if
    /// `create` names the device.
    fn pasid_slot<H: Hal>(
        &mut self,
        hal: &H,
        sid: u16,
        pasid: u32,
        create: Option<DevCaps>,
    ) -> Result<Option<u64>, Error> {
        let Some((dir, entries)) = self.pasid_dir(hal, sid, create)? else {
            return Ok(None);
        };
        let dir_index = u64::from(pasid >> 6);
        if dir_index >= entries {
            return Err(Error::BadPasid { pasid });
        }
        let dir_entry = dir + dir_index * 8;
        let d: [u64; 1] = read(hal, dir_entry);
        let table = if pasid_entry::DIR_P.get(&d) != 0 {
            pasid_entry::DIR_PTPTR.get_in_place(&d)
        } else if create.is_some() {
            let t = hal.alloc_pages(1).ok_or(Error::NoMemory)?.get();
            // A directory entry is cached only with the PASID entries
            // under it; the PASID-cache flush that follows the entry
            // covers it.
            publish(hal, dir_entry, &[pasid_entry::dir(t)]);
            t
        } else {
            return Ok(None);
        };
        let index = u64::from(pasid) % pasid_entry::PER_TABLE as u64;
        Ok(Some(table + index * (pasid_entry::WORDS as u64 * 8)))
    }

    /// The present PASID-table entry of (`sid`, `pasid`), if any.
    pub fn pasid_entry<H: Hal>(
        &mut self,
        hal: &H,
        sid: u16,
        pasid: u32,
    ) -> Result<Option<[u64; pasid_entry::WORDS]>, Error> {
        let Some(slot) = self.pasid_slot(hal, sid, pasid, None)? else {
            return Ok(None);
        };
        let e: [u64; pasid_entry::WORDS] = read(hal, slot);
        Ok((pasid_entry::P.get(&e) != 0).then_some(e))
    }

    /// Make (`sid`, `pasid`)'s PASID-table entry `entry` (`None`: not
    /// present), flushing what the unit cached of the present one, if any,
    /// in the specification's order.
    pub fn set_pasid_entry<H: Hal>(
        &mut self,
        hal: &H,
        dev: DevCaps,
        sid: u16,
        pasid: u32,
        entry: Option<[u64; pasid_entry::WORDS]>,
    ) -> Result<(), Error> {
        let create = entry.is_some().then_some(dev);
        let Some(slot) = self.pasid_slot(hal, sid, pasid, create)? else {
            if entry.is_some() {
                return Err(not_attached());
            }
            return Ok(());
        };
        let old: [u64; pasid_entry::WORDS] = read(hal, slot);
        if pasid_entry::P.get(&old) != 0 {
            withdraw(hal, slot);
            let did = pasid_entry::DID.get(&old) as u16;
            let nested = pasid_entry::PGTT.get(&old) == pasid_entry::pgtt::NESTED;
            if let Err(e) = self.flush_pasid(hal, did, nested, pasid, sid, dev.ats) {
                // A failed attach leaves the device on the old domain.
                publish(hal, slot, &old);
                return Err(e);
            }
        }
        if let Some(e) = entry {
            publish(hal, slot, &e);
            if self.id.cap.caching_mode {
                let did = pasid_entry::DID.get(&e) as u16;
                let nested = pasid_entry::PGTT.get(&e) == pasid_entry::pgtt::NESTED;
                self.flush_pasid(hal, did, nested, pasid, sid, false)?;
            }
        }
        Ok(())
    }

    /// PASID cache, then IOTLB (by how `did` is invalidated), then device
    /// TLB; one wait.
    fn flush_pasid<H: Hal>(
        &mut self,
        hal: &H,
        did: u16,
        nested: bool,
        pasid: u32,
        sid: u16,
        ats: bool,
    ) -> Result<(), Error> {
        if self.skip_flush {
            return Ok(());
        }
        let iotlb = match self.did_kind(did) {
            // A nested entry's second stage is cached under the DID alone,
            // which only an IOTLB invalidation of the DID reaches.
            DidKind::FirstLevel if !nested => desc::piotlb_pasid(did, pasid),
            _ => desc::iotlb_domain(did),
        };
        self.submit(hal, &[desc::pasid_cache_pasid(did, pasid), iotlb])?;
        if ats {
            let d = if pasid == 0 {
                desc::device_tlb(sid, sid, 0, None)
            } else {
                desc::pasid_device_tlb(sid, sid, 0, pasid, None)
            };
            self.submit(hal, &[d])?;
        }
        self.wait(hal)
    }
}
