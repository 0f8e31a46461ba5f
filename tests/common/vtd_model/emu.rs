//! The emulated unit: a register block in ordinary memory, and the state
//! behind it. `Emu::step` does what the hardware does in response to what
//! the driver wrote since the last step: a GCMD command (moved into GSTS),
//! a write-1-to-clear of FSTS or a fault record, a new invalidation-queue
//! tail; then it runs the queue from IQH to IQT.
//!
//! Memory-backed registers cannot see a write that repeats the value they
//! hold, so the registers the driver only writes are consumed: GCMD and
//! IQT are reset to an idle value (reserved bits set, never a value the
//! driver writes) once read, and FSTS shows FRI as 0xff while PPF is clear
//! (the specification leaves FRI undefined then), so that a W1C of the
//! only pending bit still differs from what the model published.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::cache::Caches;
use super::hal::ModelHal;
use super::inv::{self, Inv, IotlbScope, PiotlbScope};
use super::report::{PageReq, RecordState};
use super::spec::{IQA_DW, RTADDR_TTM_SHIFT, UnitConfig, cap, ecap, fsts, gcmd, reg};
use super::walk::{PscLine, Walker};

/// GCMD after the model consumed a write (reserved bits 22:0 set).
pub const GCMD_IDLE: u32 = 0x007f_ffff;
/// IQT after the model consumed a write (reserved bits set).
pub const IQT_IDLE: u64 = u64::MAX;

/// Errors the unit can be told to raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueFault {
    /// Device-TLB invalidation time-out (FSTS.ITE).
    Ite,
    /// Invalidation completion error (FSTS.ICE).
    Ice,
}

/// What the unit did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A GCMD operation carried out (`on`: set or started).
    Command { op: &'static str, on: bool },
    /// A GCMD operation the unit was told never to acknowledge.
    Ignored { op: &'static str },
    /// QIE latched this IQA.
    QueueEnabled { iqa: u64 },
    /// SRTP latched this RTADDR.
    RootLatched { rtaddr: u64 },
    /// A descriptor executed, from this slot.
    Desc { slot: u64, inv: Inv },
    /// A descriptor refused: FSTS.IQE set, the queue stopped at it.
    Invalid { slot: u64, reason: &'static str },
    /// ITE / ICE raised at a device-TLB invalidation in this slot.
    QueueFault { fault: QueueFault, slot: u64 },
    /// A wait discarded (no status write) while ITE / ICE was pending.
    WaitAborted { slot: u64 },
    /// A page request written into the page request queue.
    PageRequest { offset: u64, req: PageReq },
    /// A page request the unit answered itself (not queued).
    AutoResponse { req: PageReq, why: &'static str },
    /// A fault recorded in this fault recording register.
    FaultRecorded { index: usize },
    /// A fault lost: the next record was still pending (FSTS.PFO).
    FaultOverflow,
}

/// Knobs a test turns.
#[derive(Clone, Copy, Debug, Default)]
pub struct Knobs {
    /// GCMD bits whose operation the unit never carries out.
    pub stuck: u32,
    /// Stop the queue at the next wait descriptor (never complete it).
    pub hold_waits: bool,
    /// Raise this at the next device-TLB invalidation.
    pub arm: Option<QueueFault>,
}

pub use super::unit::Regs;

/// Bytes of the register block (VER..PRS, IOTLB registers, up to 256 fault
/// records after FRO).
pub const BLOCK: usize = 3 * 4096;

#[derive(Clone, Copy, Debug)]
pub struct Queue {
    pub base: u64,
    pub wide: bool,
    pub slots: u64,
}

impl Queue {
    fn size(&self) -> u64 {
        if self.wide { 32 } else { 16 }
    }

    fn shift(&self) -> u32 {
        if self.wide { 5 } else { 4 }
    }
}

pub struct Emu {
    pub id: UnitConfig,
    pub regs: Regs,
    pub hal: ModelHal,
    pub knobs: Knobs,
    pub gsts: u32,
    /// RTADDR as SRTP latched it.
    pub root: Option<u64>,
    pub queue: Option<Queue>,
    pub head: u64,
    tail_raw: u64,
    /// FSTS as the hardware holds it (PPF and FRI are derived).
    pub fsts: u32,
    fsts_pub: u32,
    pub records: RecordState,
    pub prs: u32,
    pub prs_pub: u32,
    /// Page requests on their way: written into the queue at the next
    /// wait with page-request drain.
    pub in_flight: VecDeque<PageReq>,
    pub log: Vec<Event>,
    pub violations: Vec<String>,
    pub caches: Caches,
    /// The second-level paging-structure cache (see `PscLine`).
    pub psc: RefCell<Vec<PscLine>>,
    iqa_reported: bool,
}

impl Emu {
    pub fn new(id: UnitConfig, regs: Regs, hal: ModelHal) -> Self {
        regs.r32(reg::VER).store(id.ver, Ordering::SeqCst);
        regs.r64(reg::CAP).store(id.cap, Ordering::SeqCst);
        regs.r64(reg::ECAP).store(id.ecap, Ordering::SeqCst);
        regs.r32(reg::GCMD).store(GCMD_IDLE, Ordering::SeqCst);
        regs.r64(reg::IQT).store(IQT_IDLE, Ordering::SeqCst);
        let mut e = Emu {
            records: RecordState::new(id.records()),
            id,
            regs,
            hal,
            knobs: Knobs::default(),
            gsts: 0,
            root: None,
            queue: None,
            head: 0,
            tail_raw: 0,
            fsts: 0,
            fsts_pub: 0,
            prs: 0,
            prs_pub: 0,
            in_flight: VecDeque::new(),
            log: Vec::new(),
            violations: Vec::new(),
            caches: Caches::default(),
            psc: RefCell::new(Vec::new()),
            iqa_reported: false,
        };
        let v = e.fsts_value();
        e.regs.r32(reg::FSTS).store(v, Ordering::SeqCst);
        e.fsts_pub = v;
        e
    }

    pub fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Whether the latched root table is in scalable mode.
    pub fn scalable(&self) -> bool {
        self.root.is_some_and(|r| (r >> RTADDR_TTM_SHIFT) & 3 == 1)
    }

    /// A walker over the latched root table (`None` before SRTP).
    pub fn walker(&self) -> Option<Walker<'_>> {
        let root = self.root?;
        Some(Walker {
            mem: &self.hal,
            id: &self.id,
            root: root & !0xfff,
            scalable: self.scalable(),
            psc: None,
            did: Cell::new(None),
        })
    }

    /// Translate `req` through the caches (the unit must have latched a
    /// root table); with whether its context entry disables fault
    /// processing.
    pub fn translate(
        &mut self,
        req: &super::walk::Req,
    ) -> (
        Result<super::walk::Translated, super::walk::WalkFault>,
        bool,
    ) {
        let cm = self.id.has_cap(cap::CM);
        let w = Walker {
            mem: &self.hal,
            id: &self.id,
            root: self.root.expect("TE without a root pointer") & !0xfff,
            scalable: self.root.is_some_and(|r| (r >> RTADDR_TTM_SHIFT) & 3 == 1),
            psc: Some(&self.psc),
            did: Cell::new(None),
        };
        let r = self.caches.translate(&w, cm, req);
        let fpd = w.context(req.sid).is_ok_and(|c| c.fpd());
        (r, fpd)
    }

    /// One pass: react to the driver's writes, then run the queue.
    /// Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        // The driver polls GSTS after every GCMD write, so whatever else it
        // wrote since the last step came before the command: see it first.
        let mut work = self.fsts_write();
        work |= self.record_writes();
        work |= self.prs_write();
        work |= self.iqt_write();
        self.check_iqa();
        work |= self.gcmd();
        work |= self.run_queue();
        work
    }

    // ---- GCMD / GSTS ---------------------------------------------------

    fn gcmd(&mut self) -> bool {
        let v = self.regs.r32(reg::GCMD).swap(GCMD_IDLE, Ordering::SeqCst);
        if v == GCMD_IDLE {
            return false;
        }
        if v & gcmd::RESERVED != 0 {
            self.violation(format!("GCMD write {v:#x} sets reserved bits"));
        }
        let changed = (v ^ self.gsts) & gcmd::PERSISTENT;
        let shots = v & gcmd::ONE_SHOT;
        let ops = changed | shots;
        if ops.count_ones() != 1 {
            self.violation(format!(
                "GCMD write {v:#x} over GSTS {:#x} asks for {} operations (one at a time)",
                self.gsts,
                ops.count_ones()
            ));
        }
        for b in (0..32).rev().map(|i| 1u32 << i).filter(|b| ops & b != 0) {
            let on = v & b != 0;
            let op = gcmd::name(b);
            if self.knobs.stuck & b != 0 {
                self.log.push(Event::Ignored { op });
                continue;
            }
            match b {
                gcmd::QIE if on => self.enable_queue(),
                gcmd::QIE => {
                    self.queue = None;
                    self.head = 0;
                    self.regs.r64(reg::IQH).store(0, Ordering::SeqCst);
                    self.gsts &= !gcmd::QIE;
                }
                gcmd::SRTP => {
                    let rtaddr = self.regs.r64(reg::RTADDR).load(Ordering::SeqCst);
                    if (rtaddr >> RTADDR_TTM_SHIFT) & 3 == 1 && !self.id.has_ecap(ecap::SMTS) {
                        self.violation("RTADDR.TTM scalable on a unit without ECAP.SMTS".into());
                    }
                    if !self.hal.contains(rtaddr & !0xfff, 4096) {
                        self.violation(format!("RTADDR {rtaddr:#x} is not memory"));
                    }
                    self.root = Some(rtaddr);
                    self.gsts |= gcmd::SRTP;
                    self.log.push(Event::RootLatched { rtaddr });
                }
                gcmd::TE => {
                    if on && self.root.is_none() {
                        self.violation("TE set before a root table pointer".into());
                    }
                    self.gsts = (self.gsts & !b) | if on { b } else { 0 };
                }
                _ if b & gcmd::PERSISTENT != 0 => {
                    self.gsts = (self.gsts & !b) | if on { b } else { 0 };
                }
                _ => {}
            }
            self.log.push(Event::Command { op, on });
        }
        self.regs.r32(reg::GSTS).store(self.gsts, Ordering::SeqCst);
        true
    }

    fn enable_queue(&mut self) {
        let iqa = self.regs.r64(reg::IQA).load(Ordering::SeqCst);
        let wide = iqa & IQA_DW != 0;
        if wide && !self.id.has_ecap(ecap::SMTS) {
            self.violation("IQA.DW set on a unit without ECAP.SMTS".into());
        }
        let bytes = 4096u64 << (iqa & 7);
        let base = iqa & !0xfff;
        if !self.hal.contains(base, bytes) {
            self.violation(format!("IQA {iqa:#x} is not memory"));
        }
        if self.tail_raw != 0 {
            self.violation(format!(
                "QIE set with IQT {:#x} (must be 0 before enabling)",
                self.tail_raw
            ));
        }
        let q = Queue {
            base,
            wide,
            slots: bytes / if wide { 32 } else { 16 },
        };
        self.queue = Some(q);
        self.head = 0;
        self.regs.r64(reg::IQH).store(0, Ordering::SeqCst);
        self.gsts |= gcmd::QIE;
        self.log.push(Event::QueueEnabled { iqa });
    }

    /// IQA may change only while the queue is disabled.
    fn check_iqa(&mut self) {
        if let Some(q) = self.queue {
            let iqa = self.regs.r64(reg::IQA).load(Ordering::SeqCst);
            if iqa & !0xfff != q.base && !self.iqa_reported {
                self.iqa_reported = true;
                self.violation(format!(
                    "IQA changed to {iqa:#x} while the queue at {:#x} is enabled",
                    q.base
                ));
            }
        }
    }

    /// What firmware left behind: the queue enabled at `iqa` (its own
    /// ring), with IQT and IQH at 0.
    pub fn preset_queue(&mut self, iqa: u64) {
        self.regs.r64(reg::IQA).store(iqa, Ordering::SeqCst);
        self.enable_queue();
        self.log.clear();
        self.regs.r32(reg::GSTS).store(self.gsts, Ordering::SeqCst);
    }

    // ---- FSTS ----------------------------------------------------------

    fn fsts_value(&self) -> u32 {
        let pending = self.records.pending();
        let base = self.fsts & fsts::W1C;
        match pending {
            true => base | fsts::PPF | (u32::from(self.records.fri) << fsts::FRI_SHIFT),
            false => base | (0xff << fsts::FRI_SHIFT),
        }
    }

    /// Publish FSTS unless a write of the driver is waiting to be seen
    /// (then `fsts_write` publishes after applying it).
    pub fn publish_fsts(&mut self) {
        let v = self.fsts_value();
        if self
            .regs
            .r32(reg::FSTS)
            .compare_exchange(self.fsts_pub, v, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.fsts_pub = v;
        }
    }

    fn fsts_write(&mut self) -> bool {
        let regs = self.regs;
        let cell = regs.r32(reg::FSTS);
        let m = cell.load(Ordering::SeqCst);
        if m == self.fsts_pub {
            if self.fsts_value() != self.fsts_pub {
                self.publish_fsts();
            }
            return false;
        }
        // The driver wrote `m`: its W1C bits clear ours.
        self.fsts &= !(m & fsts::W1C);
        if m & !fsts::W1C & !(0xff << fsts::FRI_SHIFT) & !fsts::PPF != 0 {
            self.violation(format!("FSTS write {m:#x} sets reserved bits"));
        }
        let v = self.fsts_value();
        if cell
            .compare_exchange(m, v, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.fsts_pub = v;
        }
        true
    }

    // ---- the invalidation queue ------------------------------------------

    fn iqt_write(&mut self) -> bool {
        let v = self.regs.r64(reg::IQT).swap(IQT_IDLE, Ordering::SeqCst);
        if v == IQT_IDLE {
            return false;
        }
        let wide = self.queue.is_some_and(|q| q.wide);
        if v & 0xf != 0 || (wide && v & 0x10 != 0) || v >> 19 != 0 {
            self.violation(format!("IQT write {v:#x} sets reserved bits"));
        }
        self.tail_raw = v;
        true
    }

    fn run_queue(&mut self) -> bool {
        let Some(q) = self.queue else {
            return false;
        };
        if self.fsts & fsts::IQE != 0 {
            return false;
        }
        let tail = self.tail_raw >> q.shift();
        if tail >= q.slots {
            return false;
        }
        let mut work = false;
        while self.head != tail {
            let slot = self.head;
            let at = q.base + slot * q.size();
            let mut w = [0u64; 4];
            for (i, x) in w.iter_mut().enumerate().take((q.size() / 8) as usize) {
                match self.hal.read_u64(at + 8 * i as u64) {
                    Some(v) => *x = v,
                    None => {
                        self.violation(format!("queue slot {slot} at {at:#x} is not memory"));
                        return work;
                    }
                }
            }
            let inv = match inv::decode(w, q.wide, self.scalable(), &self.id) {
                Ok(inv) => inv,
                Err(reason) => {
                    self.fsts |= fsts::IQE;
                    self.publish_fsts();
                    self.log.push(Event::Invalid { slot, reason });
                    return true;
                }
            };
            if inv.is_wait() && self.knobs.hold_waits {
                return work;
            }
            self.check(&inv);
            self.execute(slot, &inv);
            self.log.push(Event::Desc { slot, inv });
            self.head = (slot + 1) % q.slots;
            self.regs
                .r64(reg::IQH)
                .store(self.head << q.shift(), Ordering::SeqCst);
            work = true;
        }
        work
    }

    /// Requirements whose breach the specification leaves undefined: the
    /// model reports them as violations (a test fails on them).
    fn check(&mut self, inv: &Inv) {
        let mamv = self.id.cap(cap::MAMV) as u8;
        let pages = match *inv {
            Inv::Iotlb {
                scope: IotlbScope::Pages { addr, am, .. },
                ..
            } => {
                if !self.id.has_cap(cap::PSI) {
                    self.violation("page-selective IOTLB invalidation without CAP.PSI".into());
                }
                Some((addr, am))
            }
            Inv::PasidIotlb {
                scope: PiotlbScope::Pages { addr, am, .. },
                ..
            } => Some((addr, am)),
            _ => None,
        };
        if let Some((addr, am)) = pages {
            if am > mamv {
                self.violation(format!("{}: AM {am} above CAP.MAMV {mamv}", inv.kind()));
            }
            if addr & ((4096u64 << am) - 1) != 0 {
                self.violation(format!(
                    "{}: address {addr:#x} not aligned to AM {am}",
                    inv.kind()
                ));
            }
        }
    }

    fn execute(&mut self, slot: u64, inv: &Inv) {
        match *inv {
            Inv::DevTlb { .. } | Inv::PasidDevTlb { .. } => {
                if let Some(fault) = self.knobs.arm.take() {
                    self.fsts |= match fault {
                        QueueFault::Ite => fsts::ITE,
                        QueueFault::Ice => fsts::ICE,
                    };
                    self.publish_fsts();
                    self.log.push(Event::QueueFault { fault, slot });
                }
            }
            Inv::Wait {
                data,
                addr,
                status_write,
                page_drain,
                ..
            } => {
                if self.fsts & (fsts::ITE | fsts::ICE) != 0 {
                    self.log.push(Event::WaitAborted { slot });
                    return;
                }
                if page_drain {
                    while let Some(r) = self.in_flight.pop_front() {
                        self.deliver_page_request(r);
                    }
                }
                if status_write && !self.hal.write_u32(addr, data) {
                    self.violation(format!("wait status address {addr:#x} is not memory"));
                }
            }
            _ => {
                self.caches.invalidate(inv);
                invalidate_psc(&mut self.psc.borrow_mut(), inv);
            }
        }
    }
}

/// The second-level paging-structure cache keeps what an IOTLB invalidation
/// of its DID does not reach: everything, the domain, or the pages of a
/// page-selective one unless its hint says only leaves changed (IH). The
/// PASID-based descriptors do not reach it (6.5.2.4).
fn invalidate_psc(psc: &mut Vec<PscLine>, inv: &Inv) {
    let Inv::Iotlb { scope, .. } = *inv else {
        return;
    };
    match scope {
        IotlbScope::Global => psc.clear(),
        IotlbScope::Domain { did } => psc.retain(|l| l.did != did),
        IotlbScope::Pages { ih: true, .. } => {}
        IotlbScope::Pages { did, addr, am, .. } => {
            let end = addr.saturating_add(4096u64 << am);
            psc.retain(|l| {
                let (a, b) = l.range();
                !(l.did == did && a < end && addr < b)
            });
        }
    }
}

impl super::unit::Emulator for Emu {
    type Event = Event;

    fn step(&mut self) -> bool {
        Emu::step(self)
    }

    fn log(&mut self) -> &mut Vec<Event> {
        &mut self.log
    }

    fn violations(&self) -> &[String] {
        &self.violations
    }
}
