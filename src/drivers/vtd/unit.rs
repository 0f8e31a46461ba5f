//! One remapping unit as the driver keeps it: its registers and
//! capabilities, its root table and the context and PASID tables hanging
//! off it, its invalidation queue and its domain IDs.
//!
//! Table entries are written with their present bit last (the word holding
//! it is written after the others), a change from one present entry to
//! another goes through not-present with the caches flushed in between, and
//! every flush follows the specification's order: context cache, then PASID
//! cache, then IOTLB, then device TLB, closed by one invalidation wait.

use core::ptr::NonNull;
use core::sync::atomic::{Ordering, fence};

use tock_registers::interfaces::{Readable, Writeable};

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::hal::Hal;

use super::desc::{self, Desc};
use super::qi::{Qi, TIMEOUT_NS};
use super::regs::{FaultRecordRegs, GCMD, Identity, VtdRegisters};

/// Domain IDs a unit hands out at most (fewer if CAP.ND says so).
pub const MAX_DIDS: usize = 1024;
/// DID 0: never handed out (caching mode tags not-present entries with it).
pub(super) const DID_RESERVED: u16 = 0;
/// The DID of pass-through (Identity) entries.
pub const DID_IDENTITY: u16 = 1;

/// RTADDR: translation table mode, scalable.
const RTADDR_SMT: u64 = 1 << 10;

/// GSTS bits that stay set and must be written back with every GCMD
/// write (TE, EAFL, QIE, IRE, CFI).
const GCMD_PERSISTENT: u32 = (1 << 31) | (1 << 28) | (1 << 26) | (1 << 25) | (1 << 23);

/// What a domain ID is used for, which decides how its translations are
/// invalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DidKind {
    /// Second-level (or pass-through, nested stage 2) entries: IOTLB
    /// descriptors by DID.
    SecondLevel,
    /// First-level entries (first-level paging, SVA, nested stage 1):
    /// PASID-based IOTLB descriptors.
    FirstLevel,
}

/// Counters a unit keeps besides its queue's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitStats {
    /// Primary fault overflows seen (FSTS.PFO): faults lost.
    pub fault_overflows: u32,
    /// Pages named by page-selective IOTLB invalidations queued (IOTLB
    /// and PASID-based IOTLB).
    pub pages_invalidated: u64,
    /// Domain- or PASID-selective IOTLB invalidations queued (everything
    /// under a tag).
    pub whole_invalidations: u64,
}

/// A remapping unit.
pub struct Unit {
    /// The embedder's index of the unit.
    pub instance: u16,
    pub(super) regs: NonNull<VtdRegisters>,
    /// VER/CAP/ECAP.
    pub id: Identity,
    /// Scalable mode (ECAP.SMTS) is in use.
    pub scalable: bool,
    /// Second-level table width (39, 48 or 57).
    pub agaw: u32,
    /// Root table.
    pub(super) root: u64,
    /// The queue, once enabled.
    pub qi: Option<Qi>,
    pub(super) dids: [u64; MAX_DIDS / 64],
    pub(super) first_level: [u64; MAX_DIDS / 64],
    pub(super) did_limit: usize,
    /// The page request queue (ECAP.PRS units).
    pub prq: Option<super::records::PageRequestQueue>,
    /// Counters.
    pub stats: UnitStats,
    /// Flushes skipped on purpose (tests showing that the unit caches).
    pub(super) skip_flush: bool,
}

// SAFETY: the unit is a pointer to MMIO registers plus plain data; the
// embedder serialises all access (the core takes `&mut self`).
unsafe impl Send for Unit {}

pub(super) fn words<H: Hal>(hal: &H, phys: u64) -> *mut u64 {
    hal.phys_to_virt(PhysAddr(phys)) as *mut u64
}

/// Write `entry` at `phys` with word 0 (the present bit) last.
pub(super) fn publish<H: Hal>(hal: &H, phys: u64, entry: &[u64]) {
    let p = words(hal, phys);
    for (i, w) in entry.iter().enumerate().skip(1) {
        // SAFETY: `phys` is an entry in a table page the driver allocated
        // from the Hal; its words are written one at a time.
        unsafe { p.add(i).write_volatile(*w) };
    }
    fence(Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { p.write_volatile(entry[0]) };
    hal.flush_dcache(p as *const u8, entry.len() * 8);
}

/// Clear word 0 (the present bit) of the entry at `phys`.
pub(super) fn withdraw<H: Hal>(hal: &H, phys: u64) {
    let p = words(hal, phys);
    // SAFETY: as in `publish`.
    unsafe { p.write_volatile(0) };
    hal.flush_dcache(p as *const u8, 8);
}

pub(super) fn read<H: Hal, const N: usize>(hal: &H, phys: u64) -> [u64; N] {
    let p = words(hal, phys);
    let mut e = [0; N];
    for (i, w) in e.iter_mut().enumerate() {
        // SAFETY: as in `publish`.
        *w = unsafe { p.add(i).read_volatile() };
    }
    e
}

impl Unit {
    /// Read the unit's identity at `base`.
    ///
    /// # Safety
    /// `base` maps the unit's register block (at least
    /// [`Identity::register_span`] bytes, device memory) for as long as the
    /// unit lives, and nothing else drives it.
    pub unsafe fn new(instance: u16, base: NonNull<u8>) -> Self {
        let regs: NonNull<VtdRegisters> = base.cast();
        // SAFETY: the caller's promise.
        let r = unsafe { regs.as_ref() };
        let id = Identity::decode(r.ver.get(), r.cap.get(), r.ecap.get());
        Unit {
            instance,
            regs,
            id,
            scalable: false,
            agaw: 0,
            root: 0,
            qi: None,
            dids: [0; MAX_DIDS / 64],
            first_level: [0; MAX_DIDS / 64],
            did_limit: 0,
            skip_flush: false,
            prq: None,
            stats: UnitStats::default(),
        }
    }

    /// The register block.
    pub fn regs(&self) -> &VtdRegisters {
        // SAFETY: `new`'s contract: the pointer maps the register block.
        unsafe { self.regs.as_ref() }
    }

    /// Fault recording register `i` (below CAP.NFR + 1).
    pub(super) fn record(&self, i: u16) -> &FaultRecordRegs {
        let off = self.id.cap.fault_record_offset + usize::from(i) * 16;
        // SAFETY: `new`'s contract covers the register span, which includes
        // every fault record CAP names.
        unsafe {
            self.regs
                .cast::<u8>()
                .add(off)
                .cast::<FaultRecordRegs>()
                .as_ref()
        }
    }

    /// Check what the driver needs and choose how to drive the unit:
    /// queued invalidation, a second-level width from SAGAW and MGAW, and
    /// scalable mode where the unit offers it.
    pub fn probe(&mut self) -> Result<(), Error> {
        let (cap, ecap) = (self.id.cap, self.id.ecap);
        if self.id.version.major < 1 {
            return Err(Error::Unsupported {
                what: "VT-d version 1.0 or later (VER_REG)",
            });
        }
        if !ecap.queued_invalidation {
            return Err(Error::Unsupported {
                what: "queued invalidation (ECAP.QI)",
            });
        }
        self.scalable = ecap.scalable_mode;
        if self.scalable && !ecap.second_level && !ecap.first_level {
            return Err(Error::Unsupported {
                what: "first- or second-level translation (ECAP.SLTS/FLTS)",
            });
        }
        // The smallest width the unit walks that covers its guest address
        // width, else the largest it walks.
        let widths = [(39, 1u8 << 1), (48, 1 << 2), (57, 1 << 3)];
        let offered = |bit: u8| cap.sagaw.bits() & bit != 0;
        let need = u32::from(cap.mgaw).min(57);
        self.agaw = widths
            .iter()
            .find(|(w, b)| offered(*b) && *w >= need)
            .or_else(|| widths.iter().rev().find(|(_, b)| offered(*b)))
            .map(|(w, _)| *w)
            .unwrap_or(0);
        let second_level = !self.scalable || ecap.second_level;
        if second_level && self.agaw == 0 {
            return Err(Error::Unsupported {
                what: "a second-level table width (CAP.SAGAW)",
            });
        }
        self.did_limit = (cap.domains as usize).min(MAX_DIDS);
        self.dids = [0; MAX_DIDS / 64];
        self.first_level = [0; MAX_DIDS / 64];
        for reserved in [DID_RESERVED, DID_IDENTITY] {
            self.dids[usize::from(reserved) / 64] |= 1 << (reserved % 64);
        }
        Ok(())
    }

    /// Whether translation is on (GSTS.TES).
    pub fn translation_enabled(&self) -> bool {
        self.regs().gsts.get() & GCMD::TE::SET.value != 0
    }

    /// Whether second-level tables can be built (legacy mode, or SLTS).
    pub fn second_level(&self) -> bool {
        !self.scalable || self.id.ecap.second_level
    }

    /// Whether first-level tables can be used (scalable mode with FLTS).
    pub fn first_level(&self) -> bool {
        self.scalable && self.id.ecap.first_level
    }

    /// Set (or clear) one GCMD bit, writing back the ones that stay set,
    /// and wait for GSTS to confirm it.
    fn gcmd<H: Hal>(&self, hal: &H, bit: u32, status_wanted: bool) -> Result<(), Error> {
        let r = self.regs();
        let persistent = r.gsts.get() & GCMD_PERSISTENT;
        let value = if status_wanted {
            persistent | bit
        } else {
            persistent & !bit
        };
        r.gcmd.set(value);
        let start = hal.now_ns();
        loop {
            let set = r.gsts.get() & bit != 0;
            if set == status_wanted {
                return Ok(());
            }
            if hal.now_ns().saturating_sub(start) > TIMEOUT_NS {
                return Err(Error::Timeout {
                    what: "VT-d global status (GSTS)",
                });
            }
            core::hint::spin_loop();
        }
    }

    /// Tables, queue, global invalidation, translation on; every device
    /// blocked (no context entry is present).
    pub fn enable<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        let r = self.regs();
        if r.gsts.get() & GCMD::TE::SET.value != 0 {
            // Firmware left translation on: start from a known state.
            self.gcmd(hal, GCMD::TE::SET.value, false)?;
        }
        if self.regs().gsts.get() & GCMD::QIE::SET.value != 0 {
            // So did it queued invalidation: IQA may only be written with
            // the queue off, and the unit would go on reading the old ring.
            self.gcmd(hal, GCMD::QIE::SET.value, false)?;
        }
        let root = hal.alloc_pages(1).ok_or(Error::NoMemory)?.get();
        let qi = match Qi::new(hal, self.scalable) {
            Ok(q) => q,
            Err(e) => {
                // SAFETY: never handed to the unit.
                unsafe { hal.free_pages(PhysAddr(root), 1) };
                return Err(e);
            }
        };
        // Queued invalidation first: QEMU ignores register-based
        // invalidation once it is on, and everything below uses the queue.
        let r = self.regs();
        r.iqt.set(0);
        r.iqa.set(qi.iqa());
        self.qi = Some(qi);
        self.root = root;
        self.gcmd(hal, GCMD::QIE::SET.value, true)?;
        let r = self.regs();
        r.rtaddr
            .set(root | if self.scalable { RTADDR_SMT } else { 0 });
        self.gcmd(hal, GCMD::SRTP::SET.value, true)?;
        self.invalidate_all(hal)?;
        self.enable_prq(hal)?;
        self.gcmd(hal, GCMD::TE::SET.value, true)
    }

    /// Queue descriptors (not yet waited for).
    pub fn submit<H: Hal>(&mut self, hal: &H, ds: &[Desc]) -> Result<(), Error> {
        let regs = self.regs;
        let qi = self.qi.as_mut().ok_or(Error::Busy {
            what: "VT-d unit not enabled",
        })?;
        // SAFETY: `new`'s contract.
        let r = unsafe { regs.as_ref() };
        for d in ds {
            qi.push(hal, r, *d)?;
        }
        Ok(())
    }

    /// Submit everything queued and wait for it.
    pub fn wait<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        let regs = self.regs;
        let qi = self.qi.as_mut().ok_or(Error::Busy {
            what: "VT-d unit not enabled",
        })?;
        // SAFETY: `new`'s contract.
        qi.wait(hal, unsafe { regs.as_ref() })
    }

    /// Invalidate every cache of the unit: context cache, PASID cache
    /// (scalable mode), IOTLB; one wait.
    pub fn invalidate_all<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        self.submit(hal, &[desc::context_global()])?;
        if self.scalable {
            self.submit(hal, &[desc::pasid_cache_global()])?;
        }
        self.submit(hal, &[desc::iotlb_global()])?;
        self.wait(hal)
    }

    /// Queue a wait without making it visible to the unit and poll it for
    /// `timeout_ns`: it cannot complete, so this reports `Timeout` (the
    /// wait is submitted with the next one). For tests of the timeout path.
    #[doc(hidden)]
    pub fn stalled_wait<H: Hal>(&mut self, hal: &H, timeout_ns: u64) -> Result<(), Error> {
        let regs = self.regs;
        let qi = self.qi.as_mut().ok_or(Error::Busy {
            what: "VT-d unit not enabled",
        })?;
        // SAFETY: `new`'s contract.
        qi.stalled_wait(hal, unsafe { regs.as_ref() }, timeout_ns)
    }

    /// Submit everything queued and wait for it, page requests drained.
    pub fn wait_drain<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        let regs = self.regs;
        let qi = self.qi.as_mut().ok_or(Error::Busy {
            what: "VT-d unit not enabled",
        })?;
        // SAFETY: `new`'s contract.
        qi.wait_for(hal, unsafe { regs.as_ref() }, TIMEOUT_NS, true)
    }

    /// Skip the flushes of entry changes (tests showing that the unit
    /// caches what it walked: without a flush, DMA keeps the old
    /// translation).
    #[doc(hidden)]
    pub fn set_skip_flush(&mut self, skip: bool) {
        self.skip_flush = skip;
    }

    // ---- domain IDs -----------------------------------------------------

    /// A free domain ID for entries of `kind`.
    pub fn alloc_did(&mut self, kind: DidKind) -> Result<u16, Error> {
        let did = (0..self.did_limit)
            .find(|&d| self.dids[d / 64] & (1 << (d % 64)) == 0)
            .ok_or(Error::Exhausted {
                what: crate::error::Object::Domain,
            })?;
        self.dids[did / 64] |= 1 << (did % 64);
        if kind == DidKind::FirstLevel {
            self.first_level[did / 64] |= 1 << (did % 64);
        } else {
            self.first_level[did / 64] &= !(1 << (did % 64));
        }
        Ok(did as u16)
    }

    /// Give a domain ID back.
    pub fn free_did(&mut self, did: u16) {
        let d = usize::from(did);
        if did > DID_IDENTITY && d < MAX_DIDS {
            self.dids[d / 64] &= !(1 << (d % 64));
        }
    }

    /// Domain IDs in use (the reserved ones included).
    pub fn dids_in_use(&self) -> u32 {
        self.dids.iter().map(|w| w.count_ones()).sum()
    }

    /// How `did`'s translations are invalidated.
    pub fn did_kind(&self, did: u16) -> DidKind {
        let d = usize::from(did);
        if d < MAX_DIDS && self.first_level[d / 64] & (1 << (d % 64)) != 0 {
            DidKind::FirstLevel
        } else {
            DidKind::SecondLevel
        }
    }
}
