//! Shared virtual addressing: a device translating through a CPU page table.
//!
//! The embedder registers an address space (the CPU page table's root, its
//! format, its ASID) with [`Iommu::register_space`](super::Iommu::register_space);
//! [`Iommu::bind`](super::Iommu::bind) gives a device access to it at the
//! space's one global PASID. The core never maps into or frees the CPU page
//! table: the embedder's memory manager owns it and reports changes through
//! [`Iommu::invalidate_range`](super::Iommu::invalidate_range).

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
    pub root: u64,
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

/// Names one device's binding to an address space (refcounted: binding the
/// same pair again gives the same bond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BondId {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

use heapless::Vec;

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::driver::{DeviceId, DeviceInfo, IommuDriver};
use super::iommu::*;
use super::pasid::Pasid;
use super::slots;
use super::tags;

impl<D: IommuDriver, H: Hal + Clone, const DOMAINS: usize, const DEVICES: usize>
    Iommu<D, H, DOMAINS, DEVICES>
{
    pub(super) fn space_ref(&self, id: SpaceId) -> Result<&SpaceState, Error> {
        slots::get(&self.spaces, id)
    }

    pub(super) fn space_mut(&mut self, id: SpaceId) -> Result<&mut SpaceState, Error> {
        slots::get_mut(&mut self.spaces, id)
    }

    /// Make a CPU address space known. `fault` receives the page requests
    /// of every device bound to it (the embedder's memory manager makes the
    /// page present and answers `Success`).
    pub fn register_space(
        &mut self,
        desc: AddressSpace,
        fault: FaultTarget,
    ) -> Result<SpaceId, Error> {
        if !desc.root.is_multiple_of(crate::hal::PAGE_SIZE) {
            return Err(Error::Unaligned {
                value: desc.root,
                align: crate::hal::PAGE_SIZE,
            });
        }
        if let FaultTarget::Object(_) = fault {
            return Err(Error::Unsupported {
                what: "fault objects for address spaces (use a handler)",
            });
        }
        let index = slots::vacant(&self.spaces, Object::Space)?;
        let state = SpaceState {
            desc,
            pasid: None,
            domains: Vec::new(),
            fault,
        };
        Ok(slots::fill(&mut self.spaces, index, state))
    }

    /// The PASID of an address space (`None` until its first bind).
    pub fn space_pasid(&self, id: SpaceId) -> Result<Option<u32>, Error> {
        Ok(self.space_ref(id)?.pasid.map(Pasid::get))
    }

    /// The SVA domains an address space has (one per instance it is bound on).
    pub fn space_domains(&self, id: SpaceId) -> Result<&[DomainId], Error> {
        Ok(&self.space_ref(id)?.domains)
    }

    /// The domain and PASID a bond uses, and its user count.
    pub fn bond_info(&self, id: BondId) -> Result<(DomainId, u32, u32), Error> {
        let b = slots::get(&self.bonds, id)?;
        Ok((b.domain, b.pasid, b.users))
    }

    /// Give `dev` access to an address space at the space's PASID (taken
    /// from the global allocator at its first bind, below the device's
    /// width). Binding the same pair again returns the same bond with one
    /// more user. An existing SVA domain of the space on the device's
    /// instance is reused unless the driver answers `Incompatible`; only
    /// then is a new one allocated.
    pub fn bind(&mut self, dev: DeviceId, space: SpaceId) -> Result<BondId, Error> {
        let info = self.device(dev)?;
        let s = self.space_ref(space)?;
        let bound = slots::live::<_, BondId>(&self.bonds)
            .find(|(_, b)| b.dev == dev && b.space == space)
            .map(|(id, _)| id);
        if let Some(id) = bound {
            let b = slots::get_mut(&mut self.bonds, id)?;
            b.users = b.users.checked_add(1).ok_or(Error::Exhausted {
                what: Object::BondUser,
            })?;
            return Ok(id);
        }
        if info.pasid_bits == 0 {
            return Err(Error::Unsupported {
                what: "PASIDs on this device",
            });
        }
        let bond_index = slots::vacant(&self.bonds, Object::Bond)?;
        let (pasid, fresh) = match s.pasid {
            Some(p) => {
                if (p.get() as u64) >= (1u64 << info.pasid_bits) {
                    return Err(Error::BadPasid { pasid: p.get() });
                }
                (p.get(), false)
            }
            None => (self.pasids.alloc(info.pasid_bits as u32)?.get(), true),
        };
        let result = self.bind_at(&info, space, pasid);
        let domain = match result {
            Ok(d) => d,
            Err(e) => {
                if fresh {
                    if let Ok(p) = Pasid::new(pasid) {
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
            pasid,
            users: 1,
        };
        Ok(slots::fill(&mut self.bonds, bond_index, bond))
    }

    /// Attach an SVA domain of `space` at `pasid` of the device: an existing
    /// compatible one, else a new one.
    pub(super) fn bind_at(
        &mut self,
        info: &DeviceInfo,
        space: SpaceId,
        pasid: u32,
    ) -> Result<DomainId, Error> {
        if self.attached(info.dev, Some(pasid))?.is_some() {
            return Err(Error::Busy {
                what: "the address space's PASID is in use on this device",
            });
        }
        let di = self.device_index(info.dev)?;
        if self.devices[di].pasids.is_full() {
            return Err(Error::Exhausted {
                what: Object::Attachment,
            });
        }
        let existing = self.space_ref(space)?.domains.clone();
        for d in existing {
            if self.domain_instance(d)? != info.dev.instance {
                continue;
            }
            match self.attach_at(info.dev, Some(pasid), d) {
                Ok(()) => return Ok(d),
                // Another domain of the space (a new one if need be) may
                // serve the device: the driver refused this one, or its
                // cache-tag slots are full.
                Err(Error::Incompatible { .. } | Error::Exhausted { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let d = self.alloc_sva(info, space)?;
        if let Err(e) = self.attach_at(info.dev, Some(pasid), d) {
            // Attached nowhere: freeing cannot be refused.
            let _ = self.free_domain(d);
            return Err(e);
        }
        Ok(d)
    }

    /// Drop one user of a bond. At zero users the device's PASID is
    /// detached, and the SVA domain freed when no other device uses it. The
    /// space keeps its PASID until [`teardown_space`](Self::teardown_space).
    pub fn unbind(&mut self, id: BondId) -> Result<(), Error> {
        let b = *slots::get(&self.bonds, id)?;
        if b.users > 1 {
            slots::get_mut(&mut self.bonds, id)?.users -= 1;
            return Ok(());
        }
        self.detach_pasid(b.dev, b.pasid)?;
        slots::take(&mut self.bonds, id)?;
        if self.domain_users(b.domain)? == 0 {
            self.free_domain(b.domain)?;
        }
        Ok(())
    }

    /// The address space is going away: unbind every device from it, free
    /// its SVA domains and its PASID, and forget it. Stops at the first
    /// hardware error (what was unbound stays unbound; call again).
    pub fn teardown_space(&mut self, id: SpaceId) -> Result<(), Error> {
        self.space_ref(id)?;
        while let Some(bond) = self.bond_of_space(id) {
            slots::get_mut(&mut self.bonds, bond)?.users = 1;
            self.unbind(bond)?;
        }
        // Domains the embedder attached itself keep the space alive.
        let domains = self.space_ref(id)?.domains.clone();
        for d in domains {
            self.free_domain(d)?;
        }
        if let Some(p) = slots::take(&mut self.spaces, id)?.pasid {
            // Taken at the space's first bind and never freed since.
            let _ = self.pasids.free(p);
        }
        Ok(())
    }

    pub(super) fn bond_of_space(&self, space: SpaceId) -> Option<BondId> {
        slots::live(&self.bonds)
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
        let s = slots::get(&self.spaces, id)?;
        let slots = &self.slots;
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
