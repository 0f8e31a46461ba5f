//! The emulated SMMU: a register block (page 0 and page 1) in ordinary
//! memory, and the state behind it. `Emu::step` does what the hardware does
//! in response to what the driver wrote since the last step: a GBPA update,
//! an acknowledgement in GERRORN, a CR0 write (reflected in CR0ACK, queue
//! and stream table bases latched as their enables go on), then it runs the
//! command queue from CONS to PROD.
//!
//! Memory-backed registers cannot see a write that repeats the value they
//! hold, so CR0, which the driver only writes, is consumed: the model resets
//! it to an idle value (reserved bits set, never a value the driver writes)
//! once read, and every CR0 write is seen.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::cache::Caches;
use super::cmdq::{self, Cmd};
use super::hal::ModelHal;
use super::records::PriReq;
use super::request::{EventRec, Kind, Req, Translated, WalkFault};
use super::spec::{SmmuConfig, cerror, cr0, gbpa, gerror, mask, reg};
pub use super::unit::Regs;
use super::walk::{StrtabCfg, Walker};
use super::watch::Watch;

/// CR0 after the model consumed a write (reserved bits set).
pub const CR0_IDLE: u32 = 0xffff_fe00;

/// A circular queue's geometry (Q_BASE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Q {
    pub base: u64,
    pub log2: u32,
    pub entry: u64,
}

impl Q {
    /// Index and wrap bits.
    pub fn mask(&self) -> u32 {
        (2 << self.log2) - 1
    }

    pub fn index(&self, p: u32) -> u32 {
        p & ((1 << self.log2) - 1)
    }

    pub fn next(&self, p: u32) -> u32 {
        (p + 1) & self.mask()
    }

    pub fn full(&self, prod: u32, cons: u32) -> bool {
        let (p, c) = (prod & self.mask(), cons & self.mask());
        p != c && self.index(p) == self.index(c)
    }

    pub fn slot(&self, p: u32) -> u64 {
        self.base + u64::from(self.index(p)) * self.entry
    }

    pub fn bytes(&self) -> u64 {
        self.entry << self.log2
    }
}

/// Which queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Cmd,
    Event,
    Pri,
}

/// What the SMMU did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A GBPA update carried out.
    Gbpa {
        abort: bool,
    },
    /// A CR0 write, as acknowledged in CR0ACK.
    Cr0 {
        value: u32,
    },
    /// CR0 bits the SMMU was told never to acknowledge.
    Cr0Ignored {
        bits: u32,
    },
    /// SMMUEN latched the stream table.
    StrtabLatched {
        base: u64,
        cfg: u32,
    },
    QueueEnabled {
        queue: Queue,
        base: u64,
    },
    QueueDisabled {
        queue: Queue,
    },
    /// A command executed, from this slot.
    Cmd {
        index: u32,
        cmd: Cmd,
    },
    /// The command at CONS refused: CMDQ_CONS.ERR, GERROR.CMDQ_ERR.
    CmdError {
        index: u32,
        code: u32,
        words: [u64; 2],
        why: String,
    },
    /// GERRORN acknowledged these errors.
    GerrorAck {
        bits: u32,
    },
    Recorded {
        index: u32,
        rec: EventRec,
    },
    RecordLost {
        rec: EventRec,
        why: &'static str,
    },
    PriWritten {
        index: u32,
        req: PriReq,
    },
    PriLost {
        req: PriReq,
        why: &'static str,
    },
    /// A stalled transaction resumed: retried (with its PA or the event it
    /// raised again) or terminated.
    Resumed {
        sid: u32,
        stag: u16,
        retry: bool,
        abort: bool,
        outcome: Option<Result<u64, u8>>,
    },
}

/// Knobs a test turns.
#[derive(Clone, Copy, Debug, Default)]
pub struct Knobs {
    /// CR0 bits the SMMU never acknowledges.
    pub stuck_cr0: u32,
    /// Never clear GBPA.UPDATE.
    pub gbpa_stuck: bool,
    /// Consume no command.
    pub hold_cmdq: bool,
    /// Stop before every CMD_SYNC.
    pub hold_syncs: bool,
    /// The next N command fetches abort (CERROR_ABT).
    pub abort_fetches: u32,
    /// A full event queue raises GERROR.EVTQ_ABT_ERR instead of PROD.OVFLG.
    pub evtq_full_aborts: bool,
    /// The next N event-queue writes abort (GERROR.EVTQ_ABT_ERR).
    pub abort_event_writes: u32,
    /// The next N CMD_SYNCs after an ATC_INV report that the ATC
    /// invalidation timed out (CERROR_ATC_INV_SYNC).
    pub atc_sync_errors: u32,
}

/// A transaction stalled until a RESUME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stalled {
    pub sid: u32,
    pub stag: u16,
    pub req: Req,
}

#[derive(Clone, Copy, Debug, Default)]
struct Latched {
    strtab: (u64, u32),
    cmdq: u64,
    evtq: u64,
    priq: u64,
}

pub struct Emu {
    pub id: SmmuConfig,
    pub regs: Regs,
    pub hal: ModelHal,
    pub knobs: Knobs,
    /// CR0 as acknowledged (CR0ACK).
    pub cr0: u32,
    pub gbpa_abort: bool,
    pub gerror: u32,
    gerrorn_seen: u32,
    pub strtab: Option<StrtabCfg>,
    latched: Latched,
    pub cmdq: Option<Q>,
    pub cmdq_cons: u32,
    pub evtq: Option<Q>,
    pub evtq_prod: u32,
    pub evtq_ovflg: u32,
    pub priq: Option<Q>,
    pub priq_prod: u32,
    pub priq_ovflg: u32,
    pub log: Vec<Event>,
    pub violations: Vec<String>,
    reported: BTreeSet<String>,
    pub caches: Caches,
    pub stalls: Vec<Stalled>,
    pub next_stag: u16,
    pub watch: Watch,
    /// An ATC_INV executed since the last CMD_SYNC.
    atc_pending: bool,
}

impl Emu {
    pub fn new(id: SmmuConfig, regs: Regs, hal: ModelHal) -> Self {
        for (i, v) in id.idr.iter().enumerate() {
            regs.set32(reg::IDR0 + 4 * i, *v);
        }
        regs.set32(reg::IIDR, 0x43b);
        regs.set32(reg::AIDR, 0x1);
        regs.set32(reg::CR0, CR0_IDLE);
        Emu {
            id,
            regs,
            hal,
            knobs: Knobs::default(),
            cr0: 0,
            gbpa_abort: false,
            gerror: 0,
            gerrorn_seen: 0,
            strtab: None,
            latched: Latched::default(),
            cmdq: None,
            cmdq_cons: 0,
            evtq: None,
            evtq_prod: 0,
            evtq_ovflg: 0,
            priq: None,
            priq_prod: 0,
            priq_ovflg: 0,
            log: Vec::new(),
            violations: Vec::new(),
            reported: BTreeSet::new(),
            caches: Caches::default(),
            stalls: Vec::new(),
            next_stag: 1,
            watch: Watch::default(),
            atc_pending: false,
        }
    }

    pub fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// A violation reported once per `key`.
    fn violation_once(&mut self, key: &str, what: String) {
        if self.reported.insert(key.into()) {
            self.violations.push(what);
        }
    }

    /// A walker over the latched stream table (`None` before SMMUEN).
    pub fn walker(&self) -> Option<Walker<'_>> {
        Some(Walker {
            mem: &self.hal,
            id: &self.id,
            st: self.strtab?,
        })
    }

    /// One pass: react to the driver's writes, then run the command queue.
    /// Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let mut work = self.gbpa();
        work |= self.gerrorn();
        self.check_latched();
        work |= self.cr0();
        work |= self.run_cmdq();
        work
    }

    // ---- GBPA, GERROR ----------------------------------------------------

    fn gbpa(&mut self) -> bool {
        let v = self.regs.get32(reg::GBPA);
        if v & gbpa::UPDATE == 0 || self.knobs.gbpa_stuck {
            return false;
        }
        self.gbpa_abort = v & gbpa::ABORT != 0;
        self.regs.set32(reg::GBPA, v & !gbpa::UPDATE);
        self.log.push(Event::Gbpa {
            abort: self.gbpa_abort,
        });
        true
    }

    fn gerrorn(&mut self) -> bool {
        let n = self.regs.get32(reg::GERRORN);
        if n == self.gerrorn_seen {
            return false;
        }
        let changed = n ^ self.gerrorn_seen;
        let active = self.gerror ^ self.gerrorn_seen;
        if changed & !active != 0 {
            self.violation(format!(
                "GERRORN toggles {:#x}, not an active error (GERROR {:#x}, GERRORN was {:#x})",
                changed & !active,
                self.gerror,
                self.gerrorn_seen
            ));
        }
        self.gerrorn_seen = n;
        self.log.push(Event::GerrorAck { bits: changed });
        true
    }

    /// Errors raised and not yet acknowledged.
    pub fn active_errors(&self) -> u32 {
        self.gerror ^ self.regs.get32(reg::GERRORN)
    }

    /// Raise a global error (toggle GERROR) unless it is already active.
    pub fn raise(&mut self, bit: u32) {
        if self.active_errors() & bit == 0 {
            self.gerror ^= bit;
            self.regs.set32(reg::GERROR, self.gerror);
        }
    }

    // ---- CR0 and what it enables ----------------------------------------

    fn cr0(&mut self) -> bool {
        let v = self.regs.r32(reg::CR0).swap(CR0_IDLE, Ordering::SeqCst);
        if v == CR0_IDLE {
            return false;
        }
        if v & !cr0::DEFINED != 0 {
            self.violation(format!("CR0 write {v:#x} sets reserved bits"));
        }
        if v & cr0::PRIQEN != 0 && !self.id.has_pri() {
            self.violation("CR0.PRIQEN on an SMMU without IDR0.PRI".into());
        }
        let stuck = self.knobs.stuck_cr0;
        let new = (v & !stuck) | (self.cr0 & stuck);
        if v != new {
            self.log.push(Event::Cr0Ignored { bits: v ^ new });
        }
        let old = self.cr0;
        for b in [cr0::CMDQEN, cr0::EVENTQEN, cr0::PRIQEN, cr0::SMMUEN] {
            if (old ^ new) & b == 0 {
                continue;
            }
            let on = new & b != 0;
            match b {
                cr0::CMDQEN => self.cmdq_enable(on),
                cr0::EVENTQEN => self.evtq_enable(on),
                cr0::PRIQEN => self.priq_enable(on),
                _ => self.smmu_enable(on),
            }
        }
        self.cr0 = new;
        self.regs.set32(reg::CR0ACK, new);
        self.log.push(Event::Cr0 { value: new });
        true
    }

    fn queue(&mut self, which: Queue, base_reg: usize, entry: u64, max_log2: u32) -> Q {
        let base = self.regs.get64(base_reg);
        let q = Q {
            base: base & mask(51, 5),
            log2: (base & 0x1f) as u32,
            entry,
        };
        if q.log2 > max_log2 {
            self.violation(format!(
                "{which:?} queue LOG2SIZE {} above the IDR1 maximum {max_log2}",
                q.log2
            ));
        }
        if !self.hal.contains(q.base, q.bytes()) {
            self.violation(format!(
                "{which:?} queue base {base:#x} ({} bytes) is not memory",
                q.bytes()
            ));
        }
        if !q.base.is_multiple_of(q.bytes().max(32)) {
            self.violation(format!(
                "{which:?} queue base {base:#x} not aligned to its size"
            ));
        }
        self.log.push(Event::QueueEnabled { queue: which, base });
        q
    }

    fn cmdq_enable(&mut self, on: bool) {
        if !on {
            self.cmdq = None;
            self.log.push(Event::QueueDisabled { queue: Queue::Cmd });
            return;
        }
        let q = self.queue(Queue::Cmd, reg::CMDQ_BASE, 16, self.id.cmdqs());
        self.latched.cmdq = self.regs.get64(reg::CMDQ_BASE);
        self.cmdq_cons = self.regs.get32(reg::CMDQ_CONS) & q.mask();
        self.cmdq = Some(q);
    }

    fn evtq_enable(&mut self, on: bool) {
        if !on {
            self.evtq = None;
            self.log.push(Event::QueueDisabled {
                queue: Queue::Event,
            });
            return;
        }
        let q = self.queue(Queue::Event, reg::EVENTQ_BASE, 32, self.id.eventqs());
        self.latched.evtq = self.regs.get64(reg::EVENTQ_BASE);
        let prod = self.regs.get32(reg::EVENTQ_PROD);
        self.evtq_prod = prod & q.mask();
        self.evtq_ovflg = prod & super::spec::OVFLG;
        self.evtq = Some(q);
    }

    fn priq_enable(&mut self, on: bool) {
        if !on {
            self.priq = None;
            self.log.push(Event::QueueDisabled { queue: Queue::Pri });
            return;
        }
        let q = self.queue(Queue::Pri, reg::PRIQ_BASE, 16, self.id.priqs());
        self.latched.priq = self.regs.get64(reg::PRIQ_BASE);
        let prod = self.regs.get32(reg::PRIQ_PROD);
        self.priq_prod = prod & q.mask();
        self.priq_ovflg = prod & super::spec::OVFLG;
        self.priq = Some(q);
    }

    fn smmu_enable(&mut self, on: bool) {
        if !on {
            self.strtab = None;
            return;
        }
        let base = self.regs.get64(reg::STRTAB_BASE);
        let cfg = self.regs.get32(reg::STRTAB_BASE_CFG);
        let st = StrtabCfg::decode(base, cfg);
        let fmt = (cfg >> 16) & 3;
        if fmt > 1 {
            self.violation(format!("STRTAB_BASE_CFG.FMT {fmt} reserved"));
        }
        if st.log2size > self.id.sids() {
            self.violation(format!(
                "STRTAB_BASE_CFG.LOG2SIZE {} above SIDSIZE {}",
                st.log2size,
                self.id.sids()
            ));
        }
        let bytes = if st.two_level {
            if !self.id.has_two_level() {
                self.violation("two-level stream table without IDR0.ST_LEVEL".into());
            }
            if ![6, 8, 10].contains(&st.split) {
                self.violation(format!("STRTAB_BASE_CFG.SPLIT {} reserved", st.split));
            }
            8u64 << st.log2size.saturating_sub(st.split)
        } else {
            64u64 << st.log2size
        };
        if !self.hal.contains(st.base, bytes) {
            self.violation(format!(
                "stream table at {base:#x} ({bytes} bytes) is not memory"
            ));
        }
        if !st.base.is_multiple_of(bytes.max(64)) {
            self.violation(format!(
                "stream table at {base:#x} not aligned to its {bytes} bytes"
            ));
        }
        self.latched.strtab = (base, cfg);
        self.strtab = Some(st);
        self.log.push(Event::StrtabLatched { base, cfg });
    }

    /// Bases may change only while what uses them is disabled.
    fn check_latched(&mut self) {
        let r = self.regs;
        let checks = [
            (
                self.strtab.is_some()
                    && (r.get64(reg::STRTAB_BASE), r.get32(reg::STRTAB_BASE_CFG))
                        != self.latched.strtab,
                "STRTAB_BASE / STRTAB_BASE_CFG changed while SMMUEN = 1",
            ),
            (
                self.cmdq.is_some() && r.get64(reg::CMDQ_BASE) != self.latched.cmdq,
                "CMDQ_BASE changed while CMDQEN = 1",
            ),
            (
                self.evtq.is_some() && r.get64(reg::EVENTQ_BASE) != self.latched.evtq,
                "EVENTQ_BASE changed while EVENTQEN = 1",
            ),
            (
                self.priq.is_some() && r.get64(reg::PRIQ_BASE) != self.latched.priq,
                "PRIQ_BASE changed while PRIQEN = 1",
            ),
        ];
        for (bad, what) in checks {
            if bad {
                self.violation_once(what, what.into());
            }
        }
    }

    // ---- the command queue -----------------------------------------------

    fn run_cmdq(&mut self) -> bool {
        let Some(q) = self.cmdq else {
            return false;
        };
        if self.active_errors() & gerror::CMDQ_ERR != 0 || self.knobs.hold_cmdq {
            return false;
        }
        let raw = self.regs.get32(reg::CMDQ_PROD);
        if raw & !q.mask() != 0 {
            self.violation_once(
                "prod",
                format!("CMDQ_PROD {raw:#x} sets bits above the wrap bit"),
            );
        }
        let prod = raw & q.mask();
        let mut work = false;
        while self.cmdq_cons != prod {
            let cons = self.cmdq_cons;
            let at = q.slot(cons);
            if self.knobs.abort_fetches > 0 {
                self.knobs.abort_fetches -= 1;
                self.cmd_error(q, cons, cerror::ABT, [0, 0], "fetch aborted".into());
                return true;
            }
            let w = match (self.hal.read_u64(at), self.hal.read_u64(at + 8)) {
                (Some(a), Some(b)) => [a, b],
                _ => {
                    self.violation(format!("command slot at {at:#x} is not memory"));
                    self.cmd_error(q, cons, cerror::ABT, [0, 0], "not memory".into());
                    return true;
                }
            };
            let cmd = match cmdq::decode(w, &self.id) {
                Ok(c) => c,
                Err(why) => {
                    self.cmd_error(q, cons, cerror::ILL, w, why);
                    return true;
                }
            };
            if cmd.is_sync() && self.knobs.hold_syncs {
                return work;
            }
            if cmd.is_sync() && self.atc_pending && self.knobs.atc_sync_errors > 0 {
                self.knobs.atc_sync_errors -= 1;
                self.atc_pending = false;
                let why = "an ATC invalidation timed out".into();
                self.cmd_error(q, cons, cerror::ATC_INV_SYNC, w, why);
                return true;
            }
            match cmd {
                Cmd::AtcInv { .. } => self.atc_pending = true,
                Cmd::Sync { .. } => self.atc_pending = false,
                _ => {}
            }
            self.execute(&cmd);
            self.log.push(Event::Cmd {
                index: q.index(cons),
                cmd,
            });
            self.cmdq_cons = q.next(cons);
            self.regs.set32(reg::CMDQ_CONS, self.cmdq_cons);
            work = true;
        }
        work
    }

    fn cmd_error(&mut self, q: Q, cons: u32, code: u32, words: [u64; 2], why: String) {
        self.regs
            .set32(reg::CMDQ_CONS, cons | (code << cerror::SHIFT));
        self.raise(gerror::CMDQ_ERR);
        self.log.push(Event::CmdError {
            index: q.index(cons),
            code,
            words,
            why,
        });
    }

    fn execute(&mut self, cmd: &Cmd) {
        self.caches.invalidate(cmd, &self.id);
        match *cmd {
            Cmd::Resume {
                sid,
                stag,
                retry,
                abort,
            } => self.resume(sid, stag, retry, abort),
            Cmd::StallTerm { sid } => {
                let gone: Vec<_> = self
                    .stalls
                    .iter()
                    .filter(|s| s.sid == sid)
                    .copied()
                    .collect();
                self.stalls.retain(|s| s.sid != sid);
                for s in gone {
                    self.log.push(Event::Resumed {
                        sid,
                        stag: s.stag,
                        retry: false,
                        abort: false,
                        outcome: None,
                    });
                }
            }
            _ => {}
        }
    }

    // ---- transactions -----------------------------------------------------

    /// A transaction through the SMMU: its caches, and the event it records
    /// when it faults (stalled when the configuration says so).
    pub fn transact(&mut self, req: &Req) -> Result<Translated, WalkFault> {
        if self.cr0 & cr0::SMMUEN == 0 {
            return if self.gbpa_abort {
                Err(WalkFault::Abort("SMMUEN = 0 with GBPA.ABORT"))
            } else {
                Ok(Translated::untranslated(req, Kind::Untranslated))
            };
        }
        let st = self.strtab.expect("SMMUEN without a stream table");
        let w = Walker {
            mem: &self.hal,
            id: &self.id,
            st,
        };
        let r = self.caches.translate(&w, req);
        match r {
            Err(WalkFault::Event {
                mut rec,
                record,
                stall,
            }) => {
                if stall {
                    let stag = self.next_stag;
                    self.next_stag = self.next_stag.wrapping_add(1);
                    self.stalls.push(Stalled {
                        sid: req.sid,
                        stag,
                        req: *req,
                    });
                    rec.stag = Some(stag);
                }
                if record || stall {
                    self.record_event(&rec);
                }
                Err(WalkFault::Event { rec, record, stall })
            }
            r => r,
        }
    }

    fn resume(&mut self, sid: u32, stag: u16, retry: bool, abort: bool) {
        let Some(i) = self
            .stalls
            .iter()
            .position(|s| s.sid == sid && s.stag == stag)
        else {
            self.violation(format!(
                "RESUME of StreamID {sid:#x} STAG {stag} with no such transaction stalled"
            ));
            self.log.push(Event::Resumed {
                sid,
                stag,
                retry,
                abort,
                outcome: None,
            });
            return;
        };
        let s = self.stalls.remove(i);
        let outcome = retry.then(|| match self.transact(&s.req) {
            Ok(t) => Ok(t.pa),
            Err(f) => Err(f.id().unwrap_or(0)),
        });
        self.log.push(Event::Resumed {
            sid,
            stag,
            retry,
            abort,
            outcome,
        });
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

    fn flushed(&mut self, addr: u64, len: u64) {
        Emu::flushed(self, addr, len);
    }

    fn freed(&mut self, addr: u64, len: u64) {
        self.watch.forget(addr, len);
    }
}
