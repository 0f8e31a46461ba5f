//! One SMMU as the driver keeps it: its registers and identification, the
//! stream table, the command, event and PRI queues, its ASIDs and VMIDs,
//! and the devices (masters) it has configured.
//!
//! Bring-up follows the architecture's order (and Linux's): traffic
//! aborted while disabled (GBPA), everything off, table and queue
//! attributes, the stream table, the command queue on, global invalidation,
//! the event (and PRI) queue on, translation on; every CR0 change confirmed
//! through CR0ACK with a timeout.

use core::ptr::NonNull;

use tock_registers::interfaces::{Readable, Writeable};

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::cmd::{self, Command};
use super::cmdq::{CmdQueue, TIMEOUT_NS};
use super::queue::Queue;
use super::regs::{CR0, GBPA, Identity, PAGE1_OFFSET, SmmuPage1, SmmuRegisters, TableFormats};
use super::strtab::StreamTable;
use super::{evtq, priq};

/// ASIDs (and VMIDs) one SMMU hands out at most.
pub const MAX_IDS: usize = 1024;
/// The VMID of stage-1-only STEs (their TLB entries carry it on an SMMU
/// with stage 2); never given to a domain.
pub const VMID_S1: u16 = 0;
/// Event queue entries: 2^7 (one page).
pub const EVENTQ_LOG2: u32 = 7;
/// ASID 0: never handed out.
pub(super) const ASID_RESERVED: u16 = 0;

/// CR1: table and queue walks inner shareable, write-back both levels.
const CR1_WB_ISH: u32 = (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1;
/// CR2: private TLB maintenance (ignore broadcast TLBIs), record C_BAD_STREAMID.
const CR2_PTM_RECINVSID: u32 = (1 << 2) | (1 << 1);

/// Counters an SMMU keeps besides its command queue's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitStats {
    /// Event queue overflows seen (EVENTQ_PROD.OVFLG): events lost.
    pub event_overflows: u32,
    /// Event queue aborts seen (GERROR.EVTQ_ABT_ERR): events lost.
    pub event_aborts: u32,
    /// PRI queue overflows seen: page requests lost (the device times out).
    pub pri_overflows: u32,
    /// Events drained.
    pub events: u64,
    /// 4 KiB pages named by the TLBI address commands queued.
    pub pages_invalidated: u64,
    /// TLBIs of a whole ASID or VMID queued.
    pub whole_invalidations: u64,
}

/// A bitmap of IDs below [`MAX_IDS`].
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    bits: [u64; MAX_IDS / 64],
    limit: usize,
}

impl Ids {
    /// IDs below `limit` (at most [`MAX_IDS`]), none taken.
    pub const fn new(limit: usize) -> Self {
        Ids {
            bits: [0; MAX_IDS / 64],
            limit: if limit < MAX_IDS { limit } else { MAX_IDS },
        }
    }

    /// Take `id` (a reserved one).
    pub fn reserve(&mut self, id: u16) {
        let i = usize::from(id);
        if i < MAX_IDS {
            self.bits[i / 64] |= 1 << (i % 64);
        }
    }

    /// The lowest free ID.
    pub fn alloc(&mut self, what: Object) -> Result<u16, Error> {
        let i = (0..self.limit)
            .find(|&i| self.bits[i / 64] & (1 << (i % 64)) == 0)
            .ok_or(Error::Exhausted { what })?;
        self.bits[i / 64] |= 1 << (i % 64);
        Ok(i as u16)
    }

    /// Take `id` itself if it is below the limit and free; `false` (nothing
    /// taken) otherwise.
    pub fn take(&mut self, id: u16) -> bool {
        let i = usize::from(id);
        if i >= self.limit || self.bits[i / 64] & (1 << (i % 64)) != 0 {
            return false;
        }
        self.bits[i / 64] |= 1 << (i % 64);
        true
    }

    /// Give `id` back.
    pub fn free(&mut self, id: u16) {
        let i = usize::from(id);
        if i < MAX_IDS {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// IDs taken (reserved ones included).
    pub fn in_use(&self) -> u32 {
        self.bits.iter().map(|w| w.count_ones()).sum()
    }
}

/// An SMMU.
pub struct Unit {
    /// The embedder's index of the SMMU.
    pub instance: u16,
    regs: NonNull<SmmuRegisters>,
    page1: NonNull<SmmuPage1>,
    /// IDR0-5, IIDR, AIDR.
    pub id: Identity,
    /// The stream table, once enabled.
    pub strtab: Option<StreamTable>,
    /// The command queue, once enabled.
    pub cmdq: Option<CmdQueue>,
    /// The event queue, once enabled.
    pub evtq: Option<Queue>,
    /// The PRI queue (IDR0.PRI), once enabled.
    pub priq: Option<Queue>,
    /// ASIDs.
    pub asids: Ids,
    /// VMIDs.
    pub vmids: Ids,
    /// Counters.
    pub stats: UnitStats,
    /// Use a linear stream table whatever SIDSIZE says.
    pub force_linear: bool,
    /// Skip the syncs of entry changes (tests showing that the SMMU caches
    /// configuration).
    pub(super) skip_sync: bool,
    /// The devices configured.
    pub masters: heapless::Vec<super::master::Master, { super::master::MAX_MASTERS }>,
    /// Stalled transactions reported and not yet resumed: (StreamID, tag).
    pub stalls: heapless::Vec<(u32, u16), 32>,
}

// SAFETY: pointers to MMIO registers plus plain data; the embedder
// serialises access (the core takes `&mut self`).
unsafe impl Send for Unit {}

impl Unit {
    /// Read the SMMU's identification at `base`.
    ///
    /// # Safety
    /// `base` maps both register pages (128 KiB, device memory) for as long
    /// as the unit lives, and nothing else drives the SMMU.
    pub unsafe fn new(instance: u16, base: NonNull<u8>) -> Self {
        let regs: NonNull<SmmuRegisters> = base.cast();
        // SAFETY: the caller's promise covers page 1.
        let page1 = unsafe { base.add(PAGE1_OFFSET) }.cast();
        // SAFETY: the caller's promise.
        let r = unsafe { regs.as_ref() };
        let id = Identity::decode([
            r.idr0.get(),
            r.idr1.get(),
            r.idr2.get(),
            r.idr3.get(),
            r.idr4.get(),
            r.idr5.get(),
            r.iidr.get(),
            r.aidr.get(),
        ]);
        Unit {
            instance,
            regs,
            page1,
            id,
            strtab: None,
            cmdq: None,
            evtq: None,
            priq: None,
            asids: Ids::new(0),
            vmids: Ids::new(0),
            stats: UnitStats::default(),
            force_linear: false,
            skip_sync: false,
            masters: heapless::Vec::new(),
            stalls: heapless::Vec::new(),
        }
    }

    /// Register page 0.
    pub fn regs(&self) -> &SmmuRegisters {
        // SAFETY: `new`'s contract.
        unsafe { self.regs.as_ref() }
    }

    /// Register page 1.
    pub fn page1(&self) -> &SmmuPage1 {
        // SAFETY: `new`'s contract.
        unsafe { self.page1.as_ref() }
    }

    /// Output address size in bits (IDR5.OAS), at most 48 (the table
    /// formats' limit).
    pub fn oas_bits(&self) -> u32 {
        u32::from(self.id.idr5.oas_bits).min(48)
    }

    /// Check what the driver needs: a translation stage, AArch64 tables
    /// with 4 KiB granules, queues and tables the driver places.
    pub fn probe(&mut self) -> Result<(), Error> {
        let (i0, i1, i5) = (self.id.idr0, self.id.idr1, self.id.idr5);
        if !i0.stage1 && !i0.stage2 {
            return Err(Error::Unsupported {
                what: "a translation stage (SMMU_IDR0.S1P / S2P)",
            });
        }
        if !matches!(i0.table_formats, TableFormats::AArch64 | TableFormats::Both) {
            return Err(Error::Unsupported {
                what: "AArch64 translation tables (SMMU_IDR0.TTF)",
            });
        }
        if !i5.gran_4k {
            return Err(Error::Unsupported {
                what: "the 4 KiB granule (SMMU_IDR5.GRAN4K)",
            });
        }
        if i1.tables_preset || i1.queues_preset {
            return Err(Error::Unsupported {
                what: "tables and queues the driver places (SMMU_IDR1.TABLES_PRESET / QUEUES_PRESET)",
            });
        }
        if self.oas_bits() < 32 {
            return Err(Error::Unsupported {
                what: "an output address size of 32 bits or more (SMMU_IDR5.OAS)",
            });
        }
        let asid_bits = if i0.asid16 { 16 } else { 8 };
        let vmid_bits = if i0.vmid16 { 16 } else { 8 };
        self.asids = Ids::new(1 << asid_bits);
        self.asids.reserve(ASID_RESERVED);
        self.vmids = Ids::new(1 << vmid_bits);
        self.vmids.reserve(VMID_S1);
        Ok(())
    }

    /// Write CR0 = `value` and wait for CR0ACK to match.
    fn cr0<H: Hal>(&self, hal: &H, value: u32) -> Result<(), Error> {
        let r = self.regs();
        r.cr0.set(value);
        let start = hal.now_ns();
        while r.cr0ack.get() != value {
            if hal.now_ns().saturating_sub(start) > TIMEOUT_NS {
                return Err(Error::Timeout {
                    what: "SMMUv3 CR0ACK",
                });
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// Make traffic abort while the SMMU is disabled (GBPA.ABORT through
    /// GBPA.UPDATE).
    fn gbpa_abort<H: Hal>(&self, hal: &H) -> Result<(), Error> {
        let r = self.regs();
        r.gbpa.write(GBPA::ABORT::SET + GBPA::UPDATE::SET);
        let start = hal.now_ns();
        while r.gbpa.is_set(GBPA::UPDATE) {
            if hal.now_ns().saturating_sub(start) > TIMEOUT_NS {
                return Err(Error::Timeout {
                    what: "SMMUv3 GBPA.UPDATE",
                });
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// Tables, queues, global invalidation, translation on; every
    /// StreamID aborting.
    pub fn enable<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        self.gbpa_abort(hal)?;
        self.cr0(hal, 0)?;
        let r = self.regs();
        r.cr1.set(CR1_WB_ISH);
        r.cr2.set(CR2_PTM_RECINVSID);
        let (i0, i1) = (self.id.idr0, self.id.idr1);
        if self.strtab.is_none() {
            let t = StreamTable::new(
                hal,
                i1.sid_bits.into(),
                i0.two_level_stream_table,
                self.force_linear,
            )?;
            self.strtab = Some(t);
        }
        if self.cmdq.is_none() {
            self.cmdq = Some(CmdQueue::new(hal, i1.cmdq_log2.into())?);
        }
        if self.evtq.is_none() {
            // One page: the driver drains it by polling, and a burst that
            // overflows it is counted (the faults it lost are gone).
            let log2 = u32::from(i1.eventq_log2).min(EVENTQ_LOG2);
            let q = Queue::new(hal, log2, evtq::BYTES)?;
            self.evtq = Some(q);
        }
        if i0.pri && self.priq.is_none() {
            self.priq = Some(Queue::new(hal, i1.priq_log2.into(), priq::BYTES)?);
        }
        let (strtab, evtq, priq) = (self.strtab, self.evtq, self.priq);
        let r = self.regs();
        if let Some(t) = strtab {
            r.strtab_base.set(t.base_reg());
            r.strtab_base_cfg.set(t.cfg_reg());
        }
        if let Some(q) = self.cmdq.as_mut() {
            // SAFETY: `new`'s contract.
            q.program(unsafe { self.regs.as_ref() });
        }
        let mut on = CR0::CMDQEN::SET.value;
        self.cr0(hal, on)?;
        // Nothing the SMMU may have cached before is trusted.
        self.submit(hal, &[cmd::cfgi_all()])?;
        self.submit(hal, &[cmd::tlbi_nsnh_all()])?;
        if i0.stage2 {
            self.submit(hal, &[cmd::tlbi_s12_vmall(VMID_S1)])?;
        }
        self.sync(hal)?;
        if let Some(q) = evtq {
            self.regs().eventq_base.set(q.base_reg());
            self.page1().eventq_prod.set(0);
            self.page1().eventq_cons.set(0);
            on |= CR0::EVENTQEN::SET.value;
            self.cr0(hal, on)?;
        }
        if let Some(q) = priq {
            self.regs().priq_base.set(q.base_reg());
            self.page1().priq_prod.set(0);
            self.page1().priq_cons.set(0);
            on |= CR0::PRIQEN::SET.value;
            self.cr0(hal, on)?;
        }
        on |= CR0::SMMUEN::SET.value;
        self.cr0(hal, on)
    }

    /// Whether translation is on (CR0ACK.SMMUEN).
    pub fn enabled(&self) -> bool {
        self.regs().cr0ack.is_set(CR0::SMMUEN)
    }

    /// Queue commands (not yet synchronised).
    pub fn submit<H: Hal>(&mut self, hal: &H, cmds: &[Command]) -> Result<(), Error> {
        let regs = self.regs;
        let q = self.cmdq.as_mut().ok_or(Error::Busy {
            what: "SMMUv3 not enabled",
        })?;
        for c in cmds {
            // SAFETY: `new`'s contract.
            q.push(hal, unsafe { regs.as_ref() }, *c)?;
        }
        Ok(())
    }

    /// Publish everything queued and wait for a CMD_SYNC after it.
    pub fn sync<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        let regs = self.regs;
        let q = self.cmdq.as_mut().ok_or(Error::Busy {
            what: "SMMUv3 not enabled",
        })?;
        // SAFETY: `new`'s contract.
        q.sync(hal, unsafe { regs.as_ref() })
    }

    /// Queue a CMD_SYNC without publishing it and poll it for `timeout_ns`:
    /// it cannot complete, so this reports `Timeout` (it is published with
    /// the next sync). For tests of the timeout path.
    #[doc(hidden)]
    pub fn stalled_sync<H: Hal>(&mut self, hal: &H, timeout_ns: u64) -> Result<(), Error> {
        let regs = self.regs;
        let q = self.cmdq.as_mut().ok_or(Error::Busy {
            what: "SMMUv3 not enabled",
        })?;
        // SAFETY: `new`'s contract.
        q.sync_for(hal, unsafe { regs.as_ref() }, timeout_ns, false)
    }

    /// Skip the syncs of STE and CD changes (tests showing that the SMMU
    /// caches configuration: without them DMA keeps the old one).
    #[doc(hidden)]
    pub fn set_skip_sync(&mut self, skip: bool) {
        self.skip_sync = skip;
    }

    /// Invalidate every configuration and TLB entry, and wait.
    pub fn invalidate_all<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        self.submit(hal, &[cmd::cfgi_all(), cmd::tlbi_nsnh_all()])?;
        if self.id.idr0.stage2 {
            self.submit(hal, &[cmd::tlbi_s12_vmall(VMID_S1)])?;
        }
        self.sync(hal)
    }
}

#[cfg(test)]
mod tests {
    use super::Ids;
    use crate::error::Object;

    #[test]
    fn take_claims_a_free_id_below_the_limit_only() {
        let mut ids = Ids::new(256);
        ids.reserve(0);
        assert!(ids.take(0x2a));
        assert!(!ids.take(0x2a), "taken twice");
        assert!(!ids.take(0), "a reserved ID");
        assert!(!ids.take(256), "at the limit");
        assert_eq!(ids.in_use(), 2);
        // alloc skips it; free gives it back.
        for _ in 1..0x2a {
            ids.alloc(Object::Domain).unwrap();
        }
        assert_eq!(ids.alloc(Object::Domain).unwrap(), 0x2b);
        ids.free(0x2a);
        assert_eq!(ids.alloc(Object::Domain).unwrap(), 0x2a);
    }
}
