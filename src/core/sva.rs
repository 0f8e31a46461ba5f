//! Shared virtual addressing: a device translating through a CPU page table.
//!
//! The embedder registers an address space (the CPU page table's root, its
//! format, its ASID) with [`Iommu::register_space`](super::Iommu::register_space);
//! [`Iommu::bind`](super::Iommu::bind) gives a device access to it at the
//! space's one global PASID. The core never maps into or frees the CPU page
//! table: the embedder's memory manager owns it and reports changes through
//! [`Iommu::invalidate_range`](super::Iommu::invalidate_range).

use crate::addr::PhysAddr;

/// The format of a CPU page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuFormat {
    /// x86-64 4-level (`five_level` false) or 5-level paging.
    X86_64 {
        /// LA57 paging.
        five_level: bool,
    },
    /// AArch64 stage 1, as the CPU's translation registers describe it.
    Aarch64 {
        /// TCR_EL1 (the TTBR0 half is what a context descriptor takes).
        tcr: u64,
        /// MAIR_EL1.
        mair: u64,
    },
}

/// A CPU address space a device may share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// Physical address of the page table's root (CR3 / TTBR0 base).
    pub root: PhysAddr,
    /// Its format.
    pub format: CpuFormat,
    /// The CPU's ASID / PCID for it (0 if the CPU does not tag).
    pub asid: u32,
}

/// Names a registered address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

/// What a bond is (see [`Iommu::bond_info`](super::Iommu::bond_info)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BondInfo {
    /// The SVA domain it attached.
    pub domain: DomainId,
    /// Where: the space's PASID, or `None` for a whole-device bond (the
    /// requester ID).
    pub pasid: Option<u32>,
    /// How many binds it counts.
    pub users: u32,
}

/// Names one device's binding to an address space (refcounted: binding the
/// same pair again gives the same bond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BondId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::attach::{Changed, Owner, flushed};
use super::config::{Capacities, VecStore};
use super::driver::{DeviceId, DeviceInfo, IommuDriver};
use super::iommu::*;
use super::pasid::Pasid;
use super::slots::{self, Cell};
use super::tags;

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    pub(super) fn space_ref(&self, id: SpaceId) -> Result<&SpaceState<C>, Error> {
        slots::get(self.spaces.as_ref(), id)
    }

    pub(super) fn space_mut(&mut self, id: SpaceId) -> Result<&mut SpaceState<C>, Error> {
        slots::get_mut(self.spaces.as_mut(), id)
    }

    /// Make a CPU address space known. `fault` receives the page requests
    /// of every device bound to it (the embedder's memory manager makes the
    /// page present and answers `Success`).
    pub fn register_space(
        &mut self,
        desc: AddressSpace,
        fault: FaultTarget,
    ) -> Result<SpaceId, Error> {
        if !desc.root.is_aligned(crate::hal::PAGE_SIZE) {
            return Err(Error::Unaligned {
                value: desc.root.0,
                align: crate::hal::PAGE_SIZE,
            });
        }
        if let FaultTarget::Object(_) = fault {
            return Err(Error::Unsupported {
                what: "fault objects for address spaces (use a handler)",
            });
        }
        let index = slots::vacant(self.spaces.as_ref(), Object::Space)?;
        let state = SpaceState {
            desc,
            pasid: None,
            domains: VecStore::EMPTY,
            fault,
        };
        Ok(slots::fill(self.spaces.as_mut(), index, state))
    }

    /// The PASID of an address space (`None` until its first bind).
    pub fn space_pasid(&self, id: SpaceId) -> Result<Option<u32>, Error> {
        Ok(self.space_ref(id)?.pasid.map(Pasid::get))
    }

    /// The SVA domains an address space has (one per instance it is bound on).
    pub fn space_domains(&self, id: SpaceId) -> Result<&[DomainId], Error> {
        Ok(&self.space_ref(id)?.domains)
    }

    /// The domain a bond uses, where, and its user count.
    pub fn bond_info(&self, id: BondId) -> Result<BondInfo, Error> {
        let b = slots::get(self.bonds.as_ref(), id)?;
        Ok(BondInfo {
            domain: b.domain,
            pasid: b.pasid,
            users: b.users,
        })
    }

    fn find_bond(&self, dev: DeviceId, space: SpaceId, whole: bool) -> Option<BondId> {
        slots::live::<_, BondId>(self.bonds.as_ref())
            .find(|(_, b)| b.dev == dev && b.space == space && b.pasid.is_none() == whole)
            .map(|(id, _)| id)
    }

    /// One more user of an existing bond.
    fn reuse_bond(&mut self, id: BondId) -> Result<BondId, Error> {
        let b = slots::get_mut(self.bonds.as_mut(), id)?;
        b.users = b.users.checked_add(1).ok_or(Error::Exhausted {
            what: Object::BondUser,
        })?;
        Ok(id)
    }

    /// Give `dev` access to an address space at the space's PASID (taken
    /// from the global allocator at its first bind, below the device's
    /// width). Binding the same pair again returns the same bond with one
    /// more user. An existing SVA domain of the space on the device's
    /// instance is reused unless the driver answers `Incompatible` (or its
    /// cache-tag slots are full); only then is a new one allocated.
    ///
    /// The bond owns its attachment: attach or detach at that PASID is
    /// refused (`Busy`) until [`unbind`](Self::unbind). If the attachment was
    /// made but flushing the faults raised at that PASID before it failed,
    /// the bond is still returned; the flush is retried (and its error
    /// reported) by [`process_faults`](Self::process_faults).
    pub fn bind(&mut self, dev: DeviceId, space: SpaceId) -> Result<BondId, Error> {
        let info = self.device(dev)?;
        let s = self.space_ref(space)?;
        if let Some(id) = self.find_bond(dev, space, false) {
            return self.reuse_bond(id);
        }
        if info.pasid_bits == 0 {
            return Err(Error::Unsupported {
                what: "PASIDs on this device (bind_device binds the whole device)",
            });
        }
        let bond_index = slots::vacant(self.bonds.as_ref(), Object::Bond)?;
        let (pasid, fresh) = match s.pasid {
            Some(p) => {
                if (p.get() as u64) >= (1u64 << info.pasid_bits) {
                    return Err(Error::BadPasid { pasid: p.get() });
                }
                (p.get(), false)
            }
            None => (self.pasids.alloc(info.pasid_bits as u32)?.get(), true),
        };
        let domain = match self.bind_at(&info, space, Some(pasid)) {
            Ok(d) => d,
            Err(e) => {
                if fresh {
                    if let Ok(p) = Pasid::new(pasid) {
                        // Taken above: cannot be refused.
                        let _ = self.pasids.free(p);
                    }
                }
                return Err(e);
            }
        };
        if fresh {
            if let Ok(s) = self.space_mut(space) {
                s.pasid = Pasid::new(pasid).ok();
            }
        }
        let bond = Bond {
            dev,
            space,
            domain,
            pasid: Some(pasid),
            users: 1,
        };
        Ok(slots::fill(self.bonds.as_mut(), bond_index, bond))
    }

    /// Give the whole of `dev` access to an address space: its requester ID
    /// (untagged DMA) translates through the space's SVA domain, as VT-d's
    /// RID_PASID entry or an SMMUv3 stream without substreams. For devices
    /// without PASID support, and for hypervisors and unikernels whose
    /// device should simply share the CPU's address space. The requester ID
    /// must be Blocked (`Busy` otherwise); the space needs no PASID. The same
    /// entry writer and domain reuse as [`bind`](Self::bind) apply, and the
    /// bond owns the requester ID's attachment until
    /// [`unbind`](Self::unbind) leaves it Blocked.
    pub fn bind_device(&mut self, dev: DeviceId, space: SpaceId) -> Result<BondId, Error> {
        let info = self.device(dev)?;
        self.space_ref(space)?;
        if let Some(id) = self.find_bond(dev, space, true) {
            return self.reuse_bond(id);
        }
        let di = self.device_index(dev)?;
        if self.devices[di].rid != DomainId::BLOCKED || self.devices[di].rid_bond {
            return Err(Error::Busy {
                what: "the device's requester ID is attached (detach it first)",
            });
        }
        let bond_index = slots::vacant(self.bonds.as_ref(), Object::Bond)?;
        let domain = self.bind_at(&info, space, None)?;
        let bond = Bond {
            dev,
            space,
            domain,
            pasid: None,
            users: 1,
        };
        Ok(slots::fill(self.bonds.as_mut(), bond_index, bond))
    }

    /// Attach an SVA domain of `space` at `pasid` of the device (`None`:
    /// its requester ID), owned by a bond: an existing compatible one, else
    /// a new one.
    pub(super) fn bind_at(
        &mut self,
        info: &DeviceInfo,
        space: SpaceId,
        pasid: Option<u32>,
    ) -> Result<DomainId, Error> {
        let di = self.device_index(info.dev)?;
        if let Some(p) = pasid {
            if self.devices[di].attachment(p).is_some() {
                return Err(Error::Busy {
                    what: "the address space's PASID is in use on this device",
                });
            }
            if self.devices[di].pasids.is_full() {
                return Err(Error::Exhausted {
                    what: Object::Attachment,
                });
            }
        }
        // Attaching changes no space's list of domains.
        for k in 0..self.space_ref(space)?.domains.len() {
            let d = self.space_ref(space)?.domains[k];
            if self.domain_instance(d)? != info.dev.instance {
                continue;
            }
            // A failed fault flush stays recorded and is retried later.
            match self.attach_as(info.dev, pasid, d, Owner::Bond) {
                Ok(_) => return Ok(d),
                // Another domain of the space (a new one if need be) may
                // serve the device: the driver refused this one, or its
                // cache-tag slots are full.
                Err(
                    Error::Incompatible { .. }
                    | Error::Exhausted {
                        what: Object::CacheTag,
                    },
                ) => continue,
                Err(e) => return Err(e),
            }
        }
        let d = self.alloc_sva(info, space)?;
        if let Err(e) = self.attach_as(info.dev, pasid, d, Owner::Bond) {
            // Attached nowhere: freeing cannot be refused.
            let _ = self.free_domain(d);
            return Err(e);
        }
        Ok(d)
    }

    /// Drop one user of a bond. At zero users its attachment is removed
    /// (the PASID detached, or the requester ID left Blocked), with the
    /// faults raised under it flushed as at a detach, and the SVA domain
    /// freed when no other device uses it. The space keeps its PASID until
    /// [`teardown_space`](Self::teardown_space). If the hardware refuses,
    /// nothing changes. If the attachment was removed but the fault flush
    /// failed, the bond is gone and the flush error is returned.
    pub fn unbind(&mut self, id: BondId) -> Result<(), Error> {
        let b = *slots::get(self.bonds.as_ref(), id)?;
        if b.users > 1 {
            slots::get_mut(self.bonds.as_mut(), id)?.users -= 1;
            return Ok(());
        }
        flushed(self.release_bond(id))
    }

    /// Remove a bond's attachment whatever its users, then the bond, then
    /// its SVA domain if nothing else uses it.
    fn release_bond(&mut self, id: BondId) -> Changed {
        let b = *slots::get(self.bonds.as_ref(), id)?;
        let changed = match b.pasid {
            Some(p) => self.detach_as(b.dev, p, Owner::Bond)?,
            None => self.attach_as(b.dev, None, DomainId::BLOCKED, Owner::Bond)?,
        };
        slots::take(self.bonds.as_mut(), id)?;
        if self.domain_users(b.domain)? == 0 {
            self.free_domain(b.domain)?;
        }
        Ok(changed)
    }

    /// The address space is going away: unbind every device from it, free
    /// its SVA domains and its PASID, and forget it.
    ///
    /// Refused (`Busy`), changing nothing, while the space's PASID is
    /// attached anywhere other than through the space's own bonds. A
    /// hardware error stops it: the bonds released so far stay released and
    /// the rest are intact (call again). The PASID is not handed out again
    /// before the faults raised at it are flushed; a failed flush is
    /// returned after the teardown completed.
    pub fn teardown_space(&mut self, id: SpaceId) -> Result<(), Error> {
        if let Some(p) = self.space_ref(id)?.pasid {
            let outside = self
                .devices
                .iter()
                .any(|d| d.attachment(p.get()).is_some_and(|a| !a.bond));
            if outside {
                return Err(Error::Busy {
                    what: "the address space's PASID is attached outside its bonds",
                });
            }
        }
        let mut flush_err = None;
        // Every attachment of the space ends in this call: a request raised
        // through one is answered Invalid even while the bonds before it
        // are being released, never handed to the space's handler.
        self.tearing = Cell::Full(id);
        let released = self.release_space_bonds(id, &mut flush_err);
        self.tearing = Cell::Empty;
        released?;
        // Freeing one takes it off the list.
        while let Some(&d) = self.space_ref(id)?.domains.first() {
            self.free_domain(d)?;
        }
        if let Some(p) = slots::take(self.spaces.as_mut(), id)?.pasid {
            self.release_pasid(p)?;
        }
        flush_err.map_or(Ok(()), Err)
    }

    fn release_space_bonds(
        &mut self,
        id: SpaceId,
        flush_err: &mut Option<Error>,
    ) -> Result<(), Error> {
        while let Some(bond) = self.bond_of_space(id) {
            if let Some(e) = self.release_bond(bond)? {
                flush_err.get_or_insert(e);
            }
        }
        Ok(())
    }

    pub(super) fn bond_of_space(&self, space: SpaceId) -> Option<BondId> {
        slots::live(self.bonds.as_ref())
            .find(|(_, b): &(BondId, &Bond)| b.space == space)
            .map(|(id, _)| id)
    }

    /// The CPU side changed mappings in `[start, end)` of an address space:
    /// invalidate the range in every cache that may hold it, through the
    /// cache tags of every SVA domain of the space (one wait per instance).
    pub fn invalidate_range(&mut self, id: SpaceId, start: u64, end: u64) -> Result<(), Error> {
        if end <= start {
            return Err(Error::OutOfRange {
                what: "range end",
                value: end,
            });
        }
        let s = slots::get(self.spaces.as_ref(), id)?;
        let slots = self.slots.as_ref();
        let tags = s
            .domains
            .iter()
            .filter_map(|d| domain_ref(slots, *d).ok())
            .flat_map(|d| d.tags.iter());
        tags::flush(
            tags,
            Some((start, end)),
            crate::hal::PAGE_SIZE,
            true,
            &mut self.driver,
        )
    }
}
