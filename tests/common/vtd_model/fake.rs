//! A fake VT-d unit: the register block the driver is given, the emulator
//! thread that plays the hardware behind it, and what a test asks of it
//! (its log, walks and DMA through its tables, injected faults and page
//! requests, knobs). Dropping it stops and joins the thread, then fails
//! the test if the model saw the driver break a rule.

use std::sync::atomic::Ordering;

use super::emu::{BLOCK, Emu, Event, QueueFault};
use super::hal::ModelHal;
use super::inv::Inv;
use super::report::{FaultRec, PageReq};
use super::spec::{UnitConfig, fsts, gcmd, reg};
use super::unit::Unit;
use super::walk::{Ctx, PasidEnt, Req, Translated, WalkFault};

pub struct FakeUnit {
    unit: Unit<Emu>,
    pub id: UnitConfig,
}

/// The register block, its log and state, as `Unit` gives them.
impl std::ops::Deref for FakeUnit {
    type Target = Unit<Emu>;

    fn deref(&self) -> &Unit<Emu> {
        &self.unit
    }
}

impl std::ops::DerefMut for FakeUnit {
    fn deref_mut(&mut self) -> &mut Unit<Emu> {
        &mut self.unit
    }
}

impl FakeUnit {
    /// A unit with these identification registers, its emulator running.
    pub fn new(hal: &ModelHal, id: UnitConfig) -> Self {
        let unit = Unit::new(hal, BLOCK, |regs| Emu::new(id, regs, hal.clone()));
        FakeUnit { unit, id }
    }

    /// A 32-bit register, as the driver sees it.
    pub fn reg32(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        self.unit.r32(off)
    }

    /// A 64-bit register, as the driver sees it.
    pub fn reg64(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        self.unit.r64(off)
    }

    /// The descriptors executed (emptying the log).
    pub fn take_invs(&self) -> Vec<Inv> {
        invs(&self.take_log())
    }

    /// Walk the tables the unit latched, without its caches.
    pub fn walk(&self, req: Req) -> Result<Translated, WalkFault> {
        self.settle();
        let st = self.lock();
        if st.gsts & gcmd::TE == 0 {
            return Ok(untranslated(&req));
        }
        let w = st.walker().expect("TE without a root pointer");
        w.walk(&req)
    }

    /// A DMA through the unit: its caches, and a fault record when it
    /// faults (unless the context entry disables fault processing).
    pub fn dma(&self, req: Req) -> Result<Translated, WalkFault> {
        self.settle();
        let mut st = self.lock();
        if st.gsts & gcmd::TE == 0 {
            return Ok(untranslated(&req));
        }
        let scalable = st.scalable();
        let (r, fpd) = st.translate(&req);
        if let Err(f) = r {
            if !fpd {
                st.record_fault(&FaultRec {
                    sid: req.sid,
                    addr: req.addr,
                    pasid: req.pasid,
                    reason: f.reason(scalable) as u8,
                    write: req.write,
                    exec: false,
                    privileged: req.privileged,
                });
            }
        }
        r
    }

    /// The context entry of `sid` (present or not), decoded; `None` when
    /// the root entry is not present.
    pub fn context(&self, sid: u16) -> Option<Ctx> {
        self.settle();
        let st = self.lock();
        st.walker()?.context(sid).ok()
    }

    /// The PASID-table entry of (`sid`, `pasid`), present or not; `None`
    /// when there is no scalable context entry or directory entry for it.
    pub fn pasid_entry(&self, sid: u16, pasid: u32) -> Option<PasidEnt> {
        self.settle();
        let st = self.lock();
        let w = st.walker()?;
        match w.context(sid).ok()? {
            Ctx::Scalable(c) if c.present => w.pasid_entry(&c, pasid).ok(),
            _ => None,
        }
    }

    /// Record a primary fault; its record index, `None` if lost (PFO).
    pub fn inject_fault(&self, f: FaultRec) -> Option<usize> {
        self.lock().record_fault(&f)
    }

    /// A page request from a device; where it went in the queue, `None` if
    /// the unit answered it itself.
    pub fn page_request(&self, r: PageReq) -> Option<u64> {
        self.lock().page_request(r)
    }

    /// A page request still on its way: it reaches the queue at the next
    /// invalidation wait with page-request drain.
    pub fn page_request_in_flight(&self, r: PageReq) {
        self.lock().in_flight.push_back(r);
    }

    /// Never carry out these GCMD operations.
    pub fn set_stuck(&self, bits: u32) {
        self.lock().knobs.stuck = bits;
    }

    /// Stop (or resume) the queue at wait descriptors.
    pub fn hold_waits(&self, on: bool) {
        self.lock().knobs.hold_waits = on;
    }

    /// Raise ITE or ICE at the next device-TLB invalidation.
    pub fn arm(&self, f: QueueFault) {
        self.lock().knobs.arm = Some(f);
    }

    /// Status bits firmware left set (before the driver runs).
    pub fn preset_gsts(&self, bits: u32) {
        let mut st = self.lock();
        st.gsts |= bits;
        self.unit.r32(reg::GSTS).store(st.gsts, Ordering::SeqCst);
    }

    /// Queued invalidation left enabled by firmware, on a ring of its own.
    pub fn preset_queue(&self, hal: &ModelHal) {
        let ring = hal.page();
        self.lock().preset_queue(ring);
    }

    pub fn gsts(&self) -> u32 {
        self.settle();
        self.lock().gsts
    }

    /// FSTS's write-1-to-clear bits as the unit holds them.
    pub fn fsts_errors(&self) -> u32 {
        self.settle();
        self.lock().fsts & fsts::W1C
    }

    /// FSTS as the driver reads it.
    pub fn fsts_register(&self) -> u32 {
        self.settle();
        self.unit.r32(reg::FSTS).load(Ordering::SeqCst)
    }

    /// Fault records still pending (F set).
    pub fn pending_records(&self) -> usize {
        self.settle();
        let st = self.lock();
        st.records.words.iter().filter(|w| w[1] >> 63 != 0).count()
    }

    /// PQH and PQT as the registers hold them.
    pub fn prq_head_tail(&self) -> (u64, u64) {
        self.settle();
        let r = self.unit.regs();
        (
            r.r64(reg::PQH).load(Ordering::SeqCst),
            r.r64(reg::PQT).load(Ordering::SeqCst),
        )
    }

    pub fn violations(&self) -> Vec<String> {
        self.settle();
        self.lock().violations.clone()
    }

    /// Empty the unit's caches (as if everything was invalidated).
    pub fn clear_caches(&self) {
        let st = self.lock();
        let mut st = st;
        st.caches.clear();
        st.psc.borrow_mut().clear();
    }
}

fn untranslated(req: &Req) -> Translated {
    Translated {
        pa: req.addr,
        kind: super::walk::Kind::Untranslated,
        did: None,
        page: 4096,
        read: true,
        write: true,
    }
}

/// The descriptors of a log, in order.
pub fn invs(log: &[Event]) -> Vec<Inv> {
    log.iter()
        .filter_map(|e| match e {
            Event::Desc { inv, .. } => Some(*inv),
            _ => None,
        })
        .collect()
}

/// The descriptors of a log without the waits.
pub fn invs_no_waits(log: &[Event]) -> Vec<Inv> {
    invs(log).into_iter().filter(|i| !i.is_wait()).collect()
}

/// How many waits a log executed.
pub fn waits(log: &[Event]) -> usize {
    invs(log).iter().filter(|i| i.is_wait()).count()
}

impl QueueFault {
    pub fn bit(self) -> u32 {
        match self {
            QueueFault::Ite => fsts::ITE,
            QueueFault::Ice => fsts::ICE,
        }
    }
}
