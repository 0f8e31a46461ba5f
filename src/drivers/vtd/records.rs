//! What a unit reports: fault recording registers (unrecoverable faults)
//! and the page request queue (recoverable ones), both drained by polling,
//! and the page group responses that answer page requests.

use tock_registers::LocalRegisterCopy;
use tock_registers::interfaces::{Readable, Writeable};

use crate::core::Fault;
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};

use super::driver::RID_PASID;
use super::regs::{ECAP, FSTS};
use super::unit::{Unit, read};
use super::{desc, fault, prq};

/// PRS: pending page request.
const PRS_PPR: u32 = 1 << 0;
/// PRS: page request overflow.
const PRS_PRO: u32 = 1 << 1;
/// PQH / PQT: the queue offset is in bits 18:5.
const PQ_OFFSET_MASK: u64 = 0x7ffe0;

/// The page request queue: one page of 256-bit descriptors.
#[derive(Clone, Copy, Debug)]
pub struct PageRequestQueue {
    /// Physical address of the queue page.
    pub base: u64,
    /// Page requests dropped because the queue was full (PRS.PRO seen).
    pub overflows: u32,
}

impl PageRequestQueue {
    /// Descriptors the queue holds.
    pub const SLOTS: u64 = PAGE_SIZE / prq::BYTES;
}

impl Unit {
    /// Allocate and program the page request queue (ECAP.PRS units).
    pub(super) fn enable_prq<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        // Without page-request drain (ECAP.PDS) the wait's PD flag is
        // reserved: requests could not be drained when an attachment
        // ends, so the unit keeps answering them itself (PRE stays clear).
        let drain =
            LocalRegisterCopy::<u64, ECAP::Register>::new(self.id.ecap.raw).is_set(ECAP::PDS);
        if !self.id.ecap.page_requests || !drain || self.prq.is_some() {
            return Ok(());
        }
        let base = hal.alloc_pages(1).ok_or(Error::NoMemory)?.get();
        let r = self.regs();
        r.pqh.set(0);
        r.pqt.set(0);
        // PQA.QS = 0: one page.
        r.pqa.set(base);
        self.prq = Some(PageRequestQueue { base, overflows: 0 });
        Ok(())
    }

    /// Move pending fault records into `out`, clearing each, starting at
    /// the one FSTS.FRI names; then pending page requests. Returns how
    /// many. Overflows (FSTS.PFO, PRS.PRO) are acknowledged: what they lost
    /// is gone, and a page request lost that way is answered by the
    /// device's own timeout.
    ///
    /// A page request queue tail beyond the queue (a unit gone wrong) is
    /// a `Hardware` error naming PQT; nothing past the queue is read.
    pub fn drain_records<H: Hal>(&mut self, hal: &H, out: &mut [Fault]) -> Result<usize, Error> {
        let n = self.drain_frcd(out);
        Ok(n + self.drain_prq(hal, &mut out[n..])?)
    }

    fn drain_frcd(&mut self, out: &mut [Fault]) -> usize {
        let records = self.id.cap.fault_records.max(1);
        let fsts = self.regs().fsts.extract();
        let mut n = 0;
        if fsts.is_set(FSTS::PPF) {
            let first = (fsts.read(FSTS::FRI) as u16) % records;
            for k in 0..records {
                if n == out.len() {
                    break;
                }
                let rec = self.record((first + k) % records);
                let words = [rec.lo.get(), rec.hi.get()];
                if let Some(mut f) = fault::decode(self.instance, words) {
                    if self.scalable && f.pasid == Some(RID_PASID) {
                        // The requester ID's own requests: scalable mode
                        // translates them at RID_PASID, and some units
                        // (QEMU) record that PASID.
                        f.pasid = None;
                    }
                    // F is write-1-to-clear; the rest of the word is
                    // read-only.
                    rec.hi.set(fault::F.encode(1));
                    out[n] = f;
                    n += 1;
                }
            }
        }
        if fsts.is_set(FSTS::PFO) {
            self.regs().fsts.write(FSTS::PFO::SET);
            self.stats.fault_overflows += 1;
        }
        n
    }

    fn drain_prq<H: Hal>(&mut self, hal: &H, out: &mut [Fault]) -> Result<usize, Error> {
        let Some(q) = self.prq else {
            return Ok(0);
        };
        let r = self.regs();
        let mut head = (r.pqh.get() & PQ_OFFSET_MASK) / prq::BYTES;
        let raw_tail = r.pqt.get();
        let tail = (raw_tail & PQ_OFFSET_MASK) / prq::BYTES;
        if tail >= PageRequestQueue::SLOTS || head >= PageRequestQueue::SLOTS {
            return Err(Error::Hardware {
                register: "PQT (page request queue tail beyond the queue)",
                value: raw_tail,
            });
        }
        let mut n = 0;
        while head != tail && n < out.len() {
            let words: [u64; prq::WORDS] = read(hal, q.base + head * prq::BYTES);
            if let Some(f) = prq::decode(self.instance, words) {
                out[n] = f;
                n += 1;
            }
            head = (head + 1) % PageRequestQueue::SLOTS;
        }
        self.regs().pqh.set(head * prq::BYTES);
        let prs = self.regs().prs.get();
        if head == tail && prs & PRS_PRO != 0 {
            // The queue is empty again: the unit may take requests again.
            self.regs().prs.set(PRS_PRO);
            if let Some(q) = self.prq.as_mut() {
                q.overflows += 1;
            }
        }
        if head == tail && prs & PRS_PPR != 0 {
            self.regs().prs.set(PRS_PPR);
        }
        Ok(n)
    }

    /// Answer page request group `prgi` of `rid` (at `pasid`) with `code`
    /// ([`desc::response`]).
    pub fn page_response<H: Hal>(
        &mut self,
        hal: &H,
        rid: u16,
        pasid: Option<u32>,
        prgi: u16,
        code: u64,
    ) -> Result<(), Error> {
        if self.prq.is_none() {
            return Err(Error::Unsupported {
                what: "page requests (ECAP.PRS)",
            });
        }
        self.submit(hal, &[desc::page_group_response(rid, pasid, prgi, code)])?;
        self.wait(hal)
    }

    /// Make every page request the unit received before now visible in the
    /// queue (an invalidation wait with page-request drain). Nothing to do
    /// without a page request queue: fault records are written before the
    /// faulting request completes.
    pub fn drain_page_requests<H: Hal>(&mut self, hal: &H) -> Result<(), Error> {
        if self.prq.is_none() {
            return Ok(());
        }
        self.wait_drain(hal)
    }
}
