//! What the SMMU writes to memory on its own: event records at EVENTQ_PROD
//! (7.2, with PROD.OVFLG when the queue is full, or GERROR.EVTQ_ABT_ERR
//! when the write aborts) and page requests at PRIQ_PROD (8.1, with
//! PROD.OVFLG when full). Encodings are the specification's, independent of
//! the driver's `evtq.rs` / `priq.rs`.

use super::emu::{Emu, Event, Q};
use super::request::EventRec;
use super::spec::{OVFLG, cr0, gerror, mask, reg};

/// A PCIe page request as a device sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriReq {
    pub sid: u32,
    pub ssid: Option<u32>,
    pub addr: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub privileged: bool,
    pub prgi: u16,
    pub last: bool,
}

impl PriReq {
    /// A one-request group reading `addr`.
    pub fn read(sid: u32, ssid: Option<u32>, addr: u64, prgi: u16) -> Self {
        PriReq {
            sid,
            ssid,
            addr,
            read: true,
            write: false,
            exec: false,
            privileged: false,
            prgi,
            last: true,
        }
    }

    /// The PRI queue entry's two words.
    pub fn encode(&self) -> [u64; 2] {
        let mut w0 = u64::from(self.sid)
            | u64::from(self.privileged) << 58
            | u64::from(self.exec) << 59
            | u64::from(self.read) << 60
            | u64::from(self.write) << 61
            | u64::from(self.last) << 62;
        if let Some(s) = self.ssid {
            w0 |= (u64::from(s) & 0xf_ffff) << 32 | 1 << 63;
        }
        let w1 = u64::from(self.prgi & 0x1ff) | (self.addr & mask(63, 12));
        [w0, w1]
    }
}

impl Emu {
    /// Write `words` at the producer index of `q`; whether memory took it.
    fn put(&mut self, q: &Q, prod: u32, words: &[u64]) -> bool {
        let at = q.slot(prod);
        for (i, w) in words.iter().enumerate() {
            if !self.hal.write_u64(at + 8 * i as u64, *w) {
                self.violation(format!("queue slot at {at:#x} is not memory"));
                return false;
            }
        }
        true
    }

    /// Record an event as the hardware does: at EVENTQ_PROD unless the
    /// queue is disabled (lost), the write aborts (GERROR.EVTQ_ABT_ERR) or
    /// the queue is full (PROD.OVFLG toggled to differ from CONS.OVACKFLG,
    /// or with the knob, GERROR.EVTQ_ABT_ERR). Returns its index.
    pub fn record_event(&mut self, rec: &EventRec) -> Option<u32> {
        let lost = |e: &mut Emu, why| {
            e.log.push(Event::RecordLost { rec: *rec, why });
            None
        };
        let q = match self.evtq {
            Some(q) if self.cr0 & cr0::EVENTQEN != 0 => q,
            _ => return lost(self, "event queue disabled"),
        };
        if self.knobs.abort_event_writes > 0 {
            self.knobs.abort_event_writes -= 1;
            self.raise(gerror::EVTQ_ABT_ERR);
            return lost(self, "the write aborted: EVTQ_ABT_ERR");
        }
        let cons_raw = self.regs.get32(reg::EVENTQ_CONS);
        if cons_raw & !(q.mask() | OVFLG) != 0 {
            self.violation(format!("EVENTQ_CONS {cons_raw:#x} sets reserved bits"));
        }
        if q.full(self.evtq_prod, cons_raw) {
            if self.knobs.evtq_full_aborts {
                self.raise(gerror::EVTQ_ABT_ERR);
                return lost(self, "queue full: EVTQ_ABT_ERR");
            }
            if self.evtq_ovflg == cons_raw & OVFLG {
                self.evtq_ovflg ^= OVFLG;
                self.regs
                    .set32(reg::EVENTQ_PROD, self.evtq_prod | self.evtq_ovflg);
            }
            return lost(self, "queue full: overflow");
        }
        let index = q.index(self.evtq_prod);
        if !self.put(&q, self.evtq_prod, &rec.encode()) {
            return None;
        }
        self.evtq_prod = q.next(self.evtq_prod);
        self.regs
            .set32(reg::EVENTQ_PROD, self.evtq_prod | self.evtq_ovflg);
        self.log.push(Event::Recorded { index, rec: *rec });
        Some(index)
    }

    /// A page request from a device: at PRIQ_PROD, or lost (PROD.OVFLG when
    /// the queue is full; the SMMU answers a lost last request itself).
    pub fn page_request(&mut self, r: PriReq) -> Option<u32> {
        self.step();
        let lost = |e: &mut Emu, why| {
            e.log.push(Event::PriLost { req: r, why });
            None
        };
        if !self.id.has_pri() {
            return lost(self, "no IDR0.PRI");
        }
        let q = match self.priq {
            Some(q) if self.cr0 & cr0::PRIQEN != 0 => q,
            _ => return lost(self, "PRI queue disabled"),
        };
        let cons_raw = self.regs.get32(reg::PRIQ_CONS);
        if q.full(self.priq_prod, cons_raw) {
            if self.priq_ovflg == cons_raw & OVFLG {
                self.priq_ovflg ^= OVFLG;
                self.regs
                    .set32(reg::PRIQ_PROD, self.priq_prod | self.priq_ovflg);
            }
            return lost(self, "queue full: overflow");
        }
        let index = q.index(self.priq_prod);
        if !self.put(&q, self.priq_prod, &r.encode()) {
            return None;
        }
        self.priq_prod = q.next(self.priq_prod);
        self.regs
            .set32(reg::PRIQ_PROD, self.priq_prod | self.priq_ovflg);
        self.log.push(Event::PriWritten { index, req: r });
        Some(index)
    }
}
