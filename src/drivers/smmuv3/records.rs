//! What an SMMU reports: the event queue (translation and configuration
//! faults, stalled transactions) and the PRI queue (page requests), both
//! drained by polling, and the answers to stalls and page requests.

use tock_registers::interfaces::{Readable, Writeable};

use crate::addr::PhysAddr;
use crate::core::{Fault, FaultKind, Response};
use crate::error::Error;
use crate::hal::Hal;

use super::queue::Queue;
use super::regs::GERROR;
use super::unit::Unit;
use super::{cmd, evtq, priq};

/// PROD.OVFLG / CONS.OVACKFLG.
const OVERFLOW: u32 = 1 << 31;

fn read<H: Hal, const N: usize>(hal: &H, q: &Queue, ptr: u32) -> [u64; N] {
    let p = hal.phys_to_virt(PhysAddr(q.slot(ptr))) as *const u64;
    let mut w = [0; N];
    for (i, x) in w.iter_mut().enumerate() {
        // SAFETY: an entry of a queue the driver allocated.
        *x = unsafe { p.add(i).read_volatile() };
    }
    w
}

impl Unit {
    /// Move pending events, then page requests, into `out`; returns how
    /// many. Overflows (PROD.OVFLG) and event-queue aborts
    /// (GERROR.EVTQ_ABT_ERR: the queue was full) are counted and
    /// acknowledged: what they lost is gone. Stalled transactions are
    /// remembered until answered.
    pub fn drain_records<H: Hal>(&mut self, hal: &H, out: &mut [Fault]) -> Result<usize, Error> {
        let n = self.drain_events(hal, out);
        Ok(n + self.drain_pri(hal, &mut out[n..]))
    }

    fn drain_events<H: Hal>(&mut self, hal: &H, out: &mut [Fault]) -> usize {
        let Some(q) = self.evtq else {
            return 0;
        };
        let prod = self.page1().eventq_prod.get();
        let mut cons = self.page1().eventq_cons.get();
        let mut n = 0;
        while !q.empty(prod, cons) && n < out.len() {
            let words: [u64; evtq::DWORDS] = read(hal, &q, cons);
            if let Some(f) = evtq::decode(self.instance, words) {
                if f.kind == FaultKind::Stall && self.stalls.push((f.device, f.group)).is_err() {
                    // No room to remember it: terminate it now rather than
                    // leave the device stalled.
                    let _ = self.submit(hal, &[cmd::resume(f.device, f.group, true)]);
                } else {
                    out[n] = f;
                    n += 1;
                }
            }
            cons = q.next(cons);
            self.stats.events += 1;
        }
        let mut ack = q.ptr(cons);
        if prod & OVERFLOW != self.page1().eventq_cons.get() & OVERFLOW {
            self.stats.event_overflows += 1;
        }
        ack |= prod & OVERFLOW;
        self.page1().eventq_cons.set(ack);
        let active = self.regs().gerror.get() ^ self.regs().gerrorn.get();
        if active & GERROR::EVTQ_ABT_ERR::SET.value != 0 {
            self.stats.event_aborts += 1;
            let r = self.regs();
            r.gerrorn
                .set(r.gerrorn.get() ^ GERROR::EVTQ_ABT_ERR::SET.value);
        }
        n
    }

    fn drain_pri<H: Hal>(&mut self, hal: &H, out: &mut [Fault]) -> usize {
        let Some(q) = self.priq else {
            return 0;
        };
        let prod = self.page1().priq_prod.get();
        let mut cons = self.page1().priq_cons.get();
        let mut n = 0;
        while !q.empty(prod, cons) && n < out.len() {
            let words: [u64; priq::DWORDS] = read(hal, &q, cons);
            out[n] = priq::decode(self.instance, words);
            n += 1;
            cons = q.next(cons);
        }
        if prod & OVERFLOW != self.page1().priq_cons.get() & OVERFLOW {
            self.stats.pri_overflows += 1;
        }
        self.page1().priq_cons.set(q.ptr(cons) | (prod & OVERFLOW));
        n
    }

    /// Answer group `group` of `device` (at `pasid`): RESUME for a stalled
    /// transaction the unit reported, PRI_RESP for a page request group;
    /// then sync.
    pub fn respond<H: Hal>(
        &mut self,
        hal: &H,
        device: u32,
        pasid: Option<u32>,
        group: u16,
        r: Response,
    ) -> Result<(), Error> {
        let c = if let Some(i) = self.stalls.iter().position(|&s| s == (device, group)) {
            self.stalls.swap_remove(i);
            cmd::resume(device, group, r != Response::Success)
        } else if self.priq.is_some() {
            let code = match r {
                Response::Success => 2,
                Response::Invalid => 0,
                Response::Failure => 1,
            };
            cmd::pri_resp(device, pasid, group, code)
        } else {
            return Err(Error::Unsupported {
                what: "page requests (SMMU_IDR0.PRI) or stalls",
            });
        };
        self.submit(hal, &[c])?;
        self.sync(hal)
    }
}
