//! The command queue: commands written at PROD and consumed by the SMMU up
//! to it, batches closed by one CMD_SYNC whose consumption (CONS past it)
//! says everything before it completed. Every wait is polled against the
//! embedder's clock and times out with a typed error; a command error
//! (GERROR.CMDQ_ERR, CMDQ_CONS.ERR) is reported naming the error, the
//! command and its index, the queue repaired and acknowledged so that it
//! works again.

use core::sync::atomic::{Ordering, fence};

use tock_registers::interfaces::{Readable, Writeable};

use crate::addr::PhysAddr;
use crate::error::Error;
use crate::hal::Hal;

use super::cmd::{self, Command, cerror};
use super::queue::Queue;
use super::regs::{GERROR, SmmuRegisters};

/// How long a wait for the SMMU may take before it is reported as hung.
pub const TIMEOUT_NS: u64 = 1_000_000_000;

/// Counts for the invalidation benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdStats {
    /// Commands queued (CMD_SYNCs not included).
    pub commands: u64,
    /// CMD_SYNCs issued.
    pub syncs: u64,
    /// Command errors reported.
    pub errors: u64,
}

/// One SMMU's command queue.
pub struct CmdQueue {
    /// Memory and geometry.
    pub q: Queue,
    /// Where the next command goes (with wrap bit).
    prod: u32,
    /// PROD as the SMMU last saw it.
    published: u32,
    /// Counters.
    pub stats: CmdStats,
}

fn words<H: Hal>(hal: &H, phys: u64) -> *mut u64 {
    hal.phys_to_virt(PhysAddr(phys)) as *mut u64
}

/// The command names errors report.
fn name(opcode: u64) -> &'static str {
    match opcode {
        cmd::op::CFGI_STE => "CFGI_STE",
        cmd::op::CFGI_STE_RANGE => "CFGI_STE_RANGE",
        cmd::op::CFGI_CD => "CFGI_CD",
        cmd::op::CFGI_CD_ALL => "CFGI_CD_ALL",
        cmd::op::TLBI_NH_ALL => "TLBI_NH_ALL",
        cmd::op::TLBI_NH_ASID => "TLBI_NH_ASID",
        cmd::op::TLBI_NH_VA => "TLBI_NH_VA",
        cmd::op::TLBI_NH_VAA => "TLBI_NH_VAA",
        cmd::op::TLBI_S12_VMALL => "TLBI_S12_VMALL",
        cmd::op::TLBI_S2_IPA => "TLBI_S2_IPA",
        cmd::op::TLBI_NSNH_ALL => "TLBI_NSNH_ALL",
        cmd::op::ATC_INV => "ATC_INV",
        cmd::op::PRI_RESP => "PRI_RESP",
        cmd::op::RESUME => "RESUME",
        cmd::op::CMD_SYNC => "CMD_SYNC",
        _ => "an unknown opcode",
    }
}

impl CmdQueue {
    /// A queue of at most 2^`max_log2` commands (IDR1.CMDQS).
    pub fn new<H: Hal>(hal: &H, max_log2: u32) -> Result<Self, Error> {
        let q = Queue::new(hal, max_log2, (cmd::DWORDS * 8) as u64)?;
        Ok(CmdQueue {
            q,
            prod: 0,
            published: 0,
            stats: CmdStats::default(),
        })
    }

    /// Program CMDQ_BASE, PROD and CONS (the queue disabled).
    pub fn program(&mut self, regs: &SmmuRegisters) {
        regs.cmdq_base.set(self.q.base_reg());
        regs.cmdq_prod.set(0);
        regs.cmdq_cons.set(0);
        self.prod = 0;
        self.published = 0;
    }

    /// Queue `c` (the SMMU sees it at the next [`sync`](Self::sync) or
    /// when the queue is full). Waits for room, with a timeout.
    pub fn push<H: Hal>(&mut self, hal: &H, regs: &SmmuRegisters, c: Command) -> Result<(), Error> {
        if self.q.full(self.prod, regs.cmdq_cons.get()) {
            self.publish(regs);
            let start = hal.now_ns();
            while self.q.full(self.prod, regs.cmdq_cons.get()) {
                self.check_errors(hal, regs)?;
                if hal.now_ns().saturating_sub(start) > TIMEOUT_NS {
                    return Err(Error::Timeout {
                        what: "SMMUv3 command queue space",
                    });
                }
                core::hint::spin_loop();
            }
        }
        let p = words(hal, self.q.slot(self.prod));
        for (i, w) in c.words().iter().enumerate() {
            // SAFETY: the slot lies in the queue memory the driver owns;
            // the SMMU does not read it until PROD moves past it.
            unsafe { p.add(i).write_volatile(*w) };
        }
        hal.flush_dcache(p as *const u8, self.q.entry as usize);
        self.prod = self.q.next(self.prod);
        if c.opcode() == cmd::op::CMD_SYNC {
            self.stats.syncs += 1;
        } else {
            self.stats.commands += 1;
        }
        Ok(())
    }

    /// Make every queued command visible to the SMMU (write PROD).
    pub fn publish(&mut self, regs: &SmmuRegisters) {
        // The commands are in memory before PROD says so.
        fence(Ordering::SeqCst);
        regs.cmdq_prod.set(self.prod);
        self.published = self.prod;
    }

    /// Queue a CMD_SYNC, publish, and poll until the SMMU consumed it.
    pub fn sync<H: Hal>(&mut self, hal: &H, regs: &SmmuRegisters) -> Result<(), Error> {
        self.sync_for(hal, regs, TIMEOUT_NS, true)
    }

    /// [`sync`](Self::sync) with the given timeout; without `publish` the
    /// CMD_SYNC is queued but PROD not written, so it cannot complete (the
    /// timeout path's test; the next sync publishes it).
    pub fn sync_for<H: Hal>(
        &mut self,
        hal: &H,
        regs: &SmmuRegisters,
        timeout_ns: u64,
        publish: bool,
    ) -> Result<(), Error> {
        self.push(hal, regs, cmd::sync())?;
        let after = self.prod;
        if publish {
            self.publish(regs);
        }
        let start = hal.now_ns();
        loop {
            let cons = regs.cmdq_cons.get();
            // Consumed once CONS reached the entry after it: nothing is
            // queued behind a sync while the driver waits for it.
            if self.q.used(after, cons) == 0 {
                fence(Ordering::SeqCst);
                return Ok(());
            }
            self.check_errors(hal, regs)?;
            if hal.now_ns().saturating_sub(start) > timeout_ns {
                return Err(Error::Timeout {
                    what: "SMMUv3 CMD_SYNC",
                });
            }
            core::hint::spin_loop();
        }
    }

    /// Report and repair a command error. An illegal command is replaced by
    /// a CMD_SYNC (harmless); a fetch abort or an ATC-invalidation timeout
    /// is retried as it stands. The error is acknowledged (GERRORN), the
    /// SMMU resumes at the same index.
    pub fn check_errors<H: Hal>(&mut self, hal: &H, regs: &SmmuRegisters) -> Result<(), Error> {
        let active = regs.gerror.get() ^ regs.gerrorn.get();
        if active & GERROR::CMDQ_ERR::SET.value == 0 {
            return Ok(());
        }
        let cons = regs.cmdq_cons.get();
        let err = cmd::CONS_ERR.get(&[u64::from(cons)]);
        let slot = self.q.slot(cons);
        let p = words(hal, slot);
        // SAFETY: the slot is in the queue memory; the SMMU stopped at it.
        let opcode = unsafe { p.read_volatile() } & 0xff;
        if err == cerror::ILL {
            for (i, w) in cmd::sync().words().iter().enumerate() {
                // SAFETY: as above.
                unsafe { p.add(i).write_volatile(*w) };
            }
            hal.flush_dcache(p as *const u8, self.q.entry as usize);
            fence(Ordering::SeqCst);
        }
        self.stats.errors += 1;
        regs.gerrorn
            .set(regs.gerrorn.get() ^ GERROR::CMDQ_ERR::SET.value);
        // Some SMMUs (QEMU) fetch again only when PROD is written.
        regs.cmdq_prod.set(self.published);
        let register = match err {
            cerror::ILL => "CMDQ_CONS.ERR = CERROR_ILL",
            cerror::ABT => "CMDQ_CONS.ERR = CERROR_ABT",
            cerror::ATC_INV_SYNC => "CMDQ_CONS.ERR = CERROR_ATC_INV_SYNC",
            _ => "CMDQ_CONS.ERR (a reserved code)",
        };
        Err(Error::QueueEntry {
            register,
            entry: name(opcode),
            index: self.q.index(cons),
        })
    }
}
