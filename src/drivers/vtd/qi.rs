//! The invalidation queue (VT-d specification 6.5.2): a ring of
//! descriptors in memory the unit consumes from its head (IQH) up to the
//! tail software writes (IQT), with invalidation-wait descriptors whose
//! status write says everything before them completed.
//!
//! One page holds the ring (256 descriptors of 128 bits, or 128 of 256 bits
//! in scalable mode), another the wait status words. Every wait is polled
//! against the embedder's clock and times out with a typed error; queue
//! errors (FSTS.IQE, ITE, ICE) are reported naming the register and the
//! descriptor, and repaired so that the queue works again.

use core::sync::atomic::{Ordering, fence};

use tock_registers::interfaces::{Readable, Writeable};

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::hal::{Hal, PAGE_SIZE};

use super::desc::{self, Desc};
use super::regs::{FSTS, VtdRegisters};

/// How long a wait for the unit may take before it is reported as hung.
pub const TIMEOUT_NS: u64 = 1_000_000_000;

/// IQA: descriptor width (256-bit descriptors).
const IQA_DW: u64 = 1 << 11;

/// Counts for the invalidation benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QiStats {
    /// Descriptors queued (waits included).
    pub descriptors: u64,
    /// Invalidation waits issued.
    pub waits: u64,
}

/// One unit's invalidation queue.
pub struct Qi {
    ring: u64,
    status: u64,
    /// Bytes per descriptor: 16 or 32.
    size: u64,
    slots: u32,
    /// Next slot software writes.
    tail: u32,
    /// Tail as the unit last saw it (what IQT holds).
    rung: u32,
    seq: u32,
    /// Counters.
    pub stats: QiStats,
}

fn ptr<H: Hal>(hal: &H, phys: u64) -> *mut u64 {
    hal.phys_to_virt(PhysAddr(phys)) as *mut u64
}

impl Qi {
    /// Allocate the ring and status pages from `hal` (`wide`: 256-bit
    /// descriptors).
    pub fn new<H: Hal>(hal: &H, wide: bool) -> Result<Self, Error> {
        let ring = hal.alloc_pages(1).ok_or(Error::NoMemory)?.get();
        let Some(status) = hal.alloc_pages(1) else {
            // SAFETY: just allocated, never handed to the unit.
            unsafe { hal.free_pages(PhysAddr(ring), 1) };
            return Err(Error::NoMemory);
        };
        let size = if wide { 32 } else { 16 };
        Ok(Qi {
            ring,
            status: status.get(),
            size,
            slots: (PAGE_SIZE / size) as u32,
            tail: 0,
            rung: 0,
            seq: 0,
            stats: QiStats::default(),
        })
    }

    /// Give the pages back (the queue is disabled).
    ///
    /// # Safety
    /// The unit no longer reads the ring or writes the status page.
    pub unsafe fn free<H: Hal>(&self, hal: &H) {
        // SAFETY: the caller's promise; both pages came from `new`.
        unsafe {
            hal.free_pages(PhysAddr(self.ring), 1);
            hal.free_pages(PhysAddr(self.status), 1);
        }
    }

    /// The IQA value that programs this queue (one page).
    pub fn iqa(&self) -> u64 {
        self.ring | if self.size == 32 { IQA_DW } else { 0 }
    }

    /// Descriptors of `size` bytes: the IQH/IQT shift.
    fn shift(&self) -> u32 {
        if self.size == 32 { 5 } else { 4 }
    }

    /// The slot the unit reads next.
    fn head(&self, regs: &VtdRegisters) -> u32 {
        ((regs.iqh.get() >> self.shift()) as u32) % self.slots
    }

    /// Queue `d` (not yet visible to the unit: see [`ring`](Self::ring)).
    /// Waits for a free slot if the ring is full.
    pub fn push<H: Hal>(&mut self, hal: &H, regs: &VtdRegisters, d: Desc) -> Result<(), Error> {
        let next = (self.tail + 1) % self.slots;
        if next == self.head(regs) {
            // Full: let the unit catch up.
            self.ring(hal, regs);
            let start = hal.now_ns();
            while next == self.head(regs) {
                self.check_errors(hal, regs)?;
                if hal.now_ns().saturating_sub(start) > TIMEOUT_NS {
                    return Err(Error::Timeout {
                        what: "VT-d invalidation queue space",
                    });
                }
                core::hint::spin_loop();
            }
        }
        let p = ptr(hal, self.ring + u64::from(self.tail) * self.size);
        let words = (self.size / 8) as usize;
        for (i, w) in d.0.iter().take(words).enumerate() {
            // SAFETY: the slot lies in the ring page the driver owns; the
            // unit does not read it until the tail moves past it.
            unsafe { p.add(i).write_volatile(*w) };
        }
        hal.flush_dcache(p as *const u8, self.size as usize);
        self.tail = next;
        self.stats.descriptors += 1;
        Ok(())
    }

    /// Make every queued descriptor visible to the unit (write IQT).
    pub fn ring<H: Hal>(&mut self, _hal: &H, regs: &VtdRegisters) {
        if self.rung == self.tail {
            return;
        }
        // The descriptors are in memory before the tail says so.
        fence(Ordering::SeqCst);
        regs.iqt.set(u64::from(self.tail) << self.shift());
        self.rung = self.tail;
    }

    /// Queue an invalidation wait, ring, and poll its status until every
    /// descriptor before it completed; a queue error is reported (and
    /// repaired) instead.
    pub fn wait<H: Hal>(&mut self, hal: &H, regs: &VtdRegisters) -> Result<(), Error> {
        self.wait_for(hal, regs, TIMEOUT_NS, false)
    }

    /// [`wait`](Self::wait) with the given timeout; with `drain`, the wait
    /// also drains page requests (VT-d 7.10).
    pub fn wait_for<H: Hal>(
        &mut self,
        hal: &H,
        regs: &VtdRegisters,
        timeout_ns: u64,
        drain: bool,
    ) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let status = ptr(hal, self.status) as *mut u32;
        // SAFETY: the status page is the driver's; the unit writes it only
        // through this wait descriptor.
        unsafe { status.write_volatile(0) };
        let d = if drain {
            desc::wait_drain(self.status, seq)
        } else {
            desc::wait(self.status, seq)
        };
        self.push(hal, regs, d)?;
        self.stats.waits += 1;
        self.ring(hal, regs);
        self.poll(hal, regs, status, seq, timeout_ns)
    }

    /// Queue a wait without ringing and poll it: it cannot complete, so
    /// this times out (the queue is left with the wait pending; the next
    /// ring submits it). For tests of the timeout path.
    #[doc(hidden)]
    pub fn stalled_wait<H: Hal>(
        &mut self,
        hal: &H,
        regs: &VtdRegisters,
        timeout_ns: u64,
    ) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let status = ptr(hal, self.status) as *mut u32;
        // SAFETY: as in `wait_for`.
        unsafe { status.write_volatile(0) };
        self.push(hal, regs, desc::wait(self.status, seq))?;
        self.stats.waits += 1;
        self.poll(hal, regs, status, seq, timeout_ns)
    }

    fn poll<H: Hal>(
        &mut self,
        hal: &H,
        regs: &VtdRegisters,
        status: *mut u32,
        seq: u32,
        timeout_ns: u64,
    ) -> Result<(), Error> {
        let start = hal.now_ns();
        loop {
            // SAFETY: as in `wait_for`: our page, written by the unit.
            if unsafe { status.read_volatile() } == seq {
                return Ok(());
            }
            self.check_errors(hal, regs)?;
            if hal.now_ns().saturating_sub(start) > timeout_ns {
                return Err(Error::Timeout {
                    what: "VT-d invalidation wait",
                });
            }
            core::hint::spin_loop();
        }
    }

    /// Report and repair a queue error. An invalid descriptor (IQE) is
    /// replaced by a harmless one (a global context-cache invalidation) so
    /// the unit can go on; the error ([`Error::QueueEntry`]) names FSTS.IQE, the descriptor's
    /// type and its slot.
    /// Device-TLB time-outs (ITE) and completion errors (ICE) are cleared
    /// and reported with FSTS in the value's low 32 bits and the queue
    /// slot the unit had reached (IQH) above them; the waits they aborted
    /// are not retried (the next wait is a new one).
    pub fn check_errors<H: Hal>(&mut self, hal: &H, regs: &VtdRegisters) -> Result<(), Error> {
        let fsts = regs.fsts.extract();
        if fsts.is_set(FSTS::IQE) {
            let bad = self.head(regs);
            let p = ptr(hal, self.ring + u64::from(bad) * self.size);
            // SAFETY: the slot is in our ring; the unit stopped at it.
            let entry = desc::name(unsafe { p.read_volatile() } & 0xf);
            let words = (self.size / 8) as usize;
            let fix = desc::context_global();
            for (i, w) in fix.0.iter().take(words).enumerate() {
                // SAFETY: as above.
                unsafe { p.add(i).write_volatile(*w) };
            }
            hal.flush_dcache(p as *const u8, self.size as usize);
            fence(Ordering::SeqCst);
            // Write-1-to-clear, then the tail again: the unit resumes at
            // the repaired slot (QEMU fetches again only on a tail write).
            regs.fsts.write(FSTS::IQE::SET);
            regs.iqt.set(u64::from(self.rung) << self.shift());
            return Err(Error::QueueEntry {
                register: "FSTS.IQE (invalid descriptor)",
                entry,
                index: bad,
            });
        }
        let at = (u64::from(self.head(regs)) << 32) | u64::from(fsts.get());
        if fsts.is_set(FSTS::ITE) {
            regs.fsts.write(FSTS::ITE::SET);
            return Err(Error::Hardware {
                register: "FSTS.ITE (device-TLB invalidation timed out; IQH slot in bits 63:32)",
                value: at,
            });
        }
        if fsts.is_set(FSTS::ICE) {
            regs.fsts.write(FSTS::ICE::SET);
            return Err(Error::Hardware {
                register: "FSTS.ICE (invalidation completion error; IQH slot in bits 63:32)",
                value: at,
            });
        }
        Ok(())
    }
}
