//! What the unit reports: primary fault records (11.4.14) at CAP.FRO with
//! FSTS.PPF / FRI / PFO kept as hardware keeps them, and page requests
//! (7.5.1) written into the page request queue at PQT. Encodings are the
//! specification's, independent of the driver's `fault.rs` / `prq.rs`.

use std::sync::atomic::Ordering;

use super::emu::{Emu, Event};
use super::spec::{ecap, fsts, prs, reg};
use super::walk::Ctx;

/// F: the record holds a fault (write 1 to clear).
const F: u64 = 1 << 63;

/// A fault as the unit records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRec {
    pub sid: u16,
    pub addr: u64,
    pub pasid: Option<u32>,
    pub reason: u8,
    pub write: bool,
    pub exec: bool,
    pub privileged: bool,
}

impl FaultRec {
    /// The record's two words (low: fault information; high: the rest).
    pub fn encode(&self) -> [u64; 2] {
        let mut hi = u64::from(self.sid)
            | (u64::from(self.privileged) << 29)
            | (u64::from(self.exec) << 30)
            | (u64::from(self.reason) << 32)
            | (u64::from(!self.write) << 62)
            | F;
        if let Some(p) = self.pasid {
            hi |= (1 << 31) | (u64::from(p & 0xf_ffff) << 40);
        }
        [self.addr & !0xfff, hi]
    }
}

/// The fault recording registers as the hardware holds them.
pub struct RecordState {
    pub words: Vec<[u64; 2]>,
    /// What the model last wrote into each record's high word.
    published: Vec<u64>,
    /// Where the next fault goes.
    pub next: usize,
    /// FSTS.FRI: the first pending record.
    pub fri: u8,
}

impl RecordState {
    pub fn new(n: usize) -> Self {
        RecordState {
            words: vec![[0; 2]; n],
            published: vec![0; n],
            next: 0,
            fri: 0,
        }
    }

    pub fn pending(&self) -> bool {
        self.words.iter().any(|w| w[1] & F != 0)
    }
}

/// A page request as a device sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageReq {
    pub rid: u16,
    pub pasid: Option<u32>,
    pub addr: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub privileged: bool,
    pub prgi: u16,
    pub last: bool,
}

impl PageReq {
    /// A one-request group reading `addr`.
    pub fn read(rid: u16, pasid: Option<u32>, addr: u64, prgi: u16) -> Self {
        PageReq {
            rid,
            pasid,
            addr,
            read: true,
            write: false,
            exec: false,
            privileged: false,
            prgi,
            last: true,
        }
    }

    /// The page request descriptor (type 01h).
    pub fn encode(&self) -> [u64; 4] {
        let mut q0 = 0x1 | (u64::from(self.rid) << 16);
        if let Some(p) = self.pasid {
            q0 |= (1 << 8) | (u64::from(p & 0xf_ffff) << 32);
        }
        q0 |= u64::from(self.exec) << 52 | u64::from(self.privileged) << 53;
        let q1 = u64::from(self.read)
            | u64::from(self.write) << 1
            | u64::from(self.last) << 2
            | u64::from(self.prgi & 0x1ff) << 3
            | (self.addr & !0xfff);
        [q0, q1, 0, 0]
    }
}

impl Emu {
    fn record_hi(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        self.regs.r64(self.id.fro() + i * 16 + 8)
    }

    fn publish_record(&mut self, i: usize) {
        let w = self.records.words[i];
        self.regs
            .r64(self.id.fro() + i * 16)
            .store(w[0], Ordering::SeqCst);
        if self
            .record_hi(i)
            .compare_exchange(
                self.records.published[i],
                w[1],
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            self.records.published[i] = w[1];
        }
    }

    /// The driver's writes to the records' high words: F is write-1-to-
    /// clear, the rest read-only.
    pub(super) fn record_writes(&mut self) -> bool {
        let mut work = false;
        for i in 0..self.records.words.len() {
            let m = self.record_hi(i).load(Ordering::SeqCst);
            if m == self.records.published[i] {
                continue;
            }
            if m & F != 0 {
                self.records.words[i][1] &= !F;
            }
            let v = self.records.words[i][1];
            if self
                .record_hi(i)
                .compare_exchange(m, v, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                self.records.published[i] = v;
            }
            work = true;
        }
        if work {
            self.publish_fsts();
        }
        work
    }

    /// The driver's writes to PRS (PPR, PRO write-1-to-clear). A clear of
    /// PPR alone cannot be told from the value already there.
    pub(super) fn prs_write(&mut self) -> bool {
        let regs = self.regs;
        let cell = regs.r32(reg::PRS);
        let m = cell.load(Ordering::SeqCst);
        if m == self.prs_pub {
            return false;
        }
        self.prs &= !(m & (prs::PPR | prs::PRO));
        if cell
            .compare_exchange(m, self.prs, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.prs_pub = self.prs;
        }
        true
    }

    fn publish_prs(&mut self) {
        let regs = self.regs;
        let cell = regs.r32(reg::PRS);
        if cell
            .compare_exchange(self.prs_pub, self.prs, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.prs_pub = self.prs;
        }
    }

    /// Record a primary fault as the hardware does: in the next record,
    /// unless it still holds an unserviced fault (then FSTS.PFO, and the
    /// fault is lost). Returns the record's index.
    pub fn record_fault(&mut self, f: &FaultRec) -> Option<usize> {
        self.step();
        let i = self.records.next;
        if self.records.words[i][1] & F != 0 {
            self.fsts |= fsts::PFO;
            self.publish_fsts();
            self.log.push(Event::FaultOverflow);
            return None;
        }
        if !self.records.pending() {
            self.records.fri = i as u8;
        }
        self.records.words[i] = f.encode();
        self.publish_record(i);
        self.records.next = (i + 1) % self.records.words.len();
        self.publish_fsts();
        self.log.push(Event::FaultRecorded { index: i });
        Some(i)
    }

    /// A page request arrives from a device (see `deliver_page_request`).
    pub fn page_request(&mut self, r: PageReq) -> Option<u64> {
        self.step();
        self.deliver_page_request(r)
    }

    /// Check a page request against its device's context entry (scalable
    /// mode, present, PRE; PASIDE for one with a PASID) and write it at
    /// PQT, or answer it in the unit when refused or when the queue is full
    /// (PRS.PRO). Returns where it was written.
    pub(super) fn deliver_page_request(&mut self, r: PageReq) -> Option<u64> {
        let refuse = |e: &mut Emu, why| {
            e.log.push(Event::AutoResponse { req: r, why });
            None
        };
        if !self.id.has_ecap(ecap::PRS) {
            return refuse(self, "no ECAP.PRS");
        }
        let ctx = self.walker().map(|w| w.context(r.rid));
        let c = match ctx {
            Some(Ok(Ctx::Scalable(c))) if c.present => c,
            _ => return refuse(self, "no present scalable-mode context entry"),
        };
        if !c.pre {
            return refuse(self, "page requests disabled (context entry PRE clear)");
        }
        if r.pasid.is_some() && !c.paside {
            return refuse(self, "PASIDs disabled (context entry PASIDE clear)");
        }
        let pqa = self.regs.r64(reg::PQA).load(Ordering::SeqCst);
        let base = pqa & !0xfff;
        let size = 4096u64 << (pqa & 7);
        let head = self.regs.r64(reg::PQH).load(Ordering::SeqCst) & 0x7ffe0;
        let tail = self.regs.r64(reg::PQT).load(Ordering::SeqCst) & 0x7ffe0;
        if (tail + 32) % size == head {
            self.prs |= prs::PRO;
            self.publish_prs();
            return refuse(self, "page request queue full");
        }
        for (i, w) in r.encode().iter().enumerate() {
            if !self.hal.write_u64(base + tail + 8 * i as u64, *w) {
                self.violation(format!("PQA {pqa:#x} is not memory"));
                return None;
            }
        }
        self.regs
            .r64(reg::PQT)
            .store((tail + 32) % size, Ordering::SeqCst);
        self.prs |= prs::PPR;
        self.publish_prs();
        self.log.push(Event::PageRequest {
            offset: tail,
            req: r,
        });
        Some(tail)
    }
}
