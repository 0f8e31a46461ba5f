//! Arm System MMU version 3.

pub mod cd;
pub mod cdtab;
pub mod cmd;
pub mod cmdq;
pub mod driver;
pub mod evtq;
pub mod master;
pub mod priq;
pub mod queue;
pub mod records;
pub mod regs;
pub mod ste;
pub mod strtab;
pub mod tlbi;
pub mod unit;
pub mod user;
pub mod writer;

use core::ptr::NonNull;

use tock_registers::interfaces::Readable;

pub use regs::Identity;
use regs::{CR0, GBPA, SmmuRegisters};

/// One SMMUv3, reached through its register pages.
pub struct SmmuV3 {
    regs: NonNull<SmmuRegisters>,
}

// SAFETY: the value is only a pointer to MMIO registers; all access goes through
// volatile register reads/writes, and `new`'s caller promises exclusive use.
unsafe impl Send for SmmuV3 {}

impl SmmuV3 {
    /// Wrap the SMMU whose register page 0 is mapped at `base` (a virtual address).
    ///
    /// # Safety
    /// `base` must map both register pages (128 KiB, device memory) for as long
    /// as the returned value lives, and nothing else may drive the SMMU meanwhile.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        SmmuV3 { regs: base.cast() }
    }

    fn regs(&self) -> &SmmuRegisters {
        // SAFETY: `new`'s contract: the pointer maps register page 0.
        unsafe { self.regs.as_ref() }
    }

    /// Read and decode IDR0-5, IIDR and AIDR.
    pub fn identity(&self) -> Identity {
        let r = self.regs();
        Identity::decode([
            r.idr0.get(),
            r.idr1.get(),
            r.idr2.get(),
            r.idr3.get(),
            r.idr4.get(),
            r.idr5.get(),
            r.iidr.get(),
            r.aidr.get(),
        ])
    }

    /// Whether translation is enabled (CR0ACK.SMMUEN).
    pub fn enabled(&self) -> bool {
        self.regs().cr0ack.is_set(CR0::SMMUEN)
    }

    /// Whether incoming traffic is aborted while the SMMU is disabled (GBPA.ABORT).
    pub fn bypass_aborts(&self) -> bool {
        self.regs().gbpa.is_set(GBPA::ABORT)
    }
}
