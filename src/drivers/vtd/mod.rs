//! Intel VT-d (Virtualization Technology for Directed I/O).

pub mod context;
pub mod desc;
pub mod driver;
pub mod fault;
pub mod pasid_entry;
pub mod prq;
pub mod psi;
pub mod qi;
pub mod records;
pub mod regs;
pub mod root;
pub mod tables;
pub mod unit;
pub mod user;

use core::ptr::NonNull;

use tock_registers::interfaces::Readable;

pub use regs::{Capability, ExtCapability, Identity, Version};
use regs::{GCMD, VtdRegisters};

/// One remapping hardware unit (a DMAR DRHD), reached through its register block.
pub struct VtdUnit {
    regs: NonNull<VtdRegisters>,
}

// SAFETY: the unit is only a pointer to MMIO registers; all access goes through
// volatile register reads/writes, and `new`'s caller promises exclusive use.
unsafe impl Send for VtdUnit {}

impl VtdUnit {
    /// Wrap the register block mapped at `base` (a virtual address).
    ///
    /// # Safety
    /// `base` must map the unit's registers (at least 4 KiB, uncached/device
    /// memory) for as long as the returned value lives, and nothing else may
    /// drive the unit meanwhile.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        VtdUnit { regs: base.cast() }
    }

    fn regs(&self) -> &VtdRegisters {
        // SAFETY: `new`'s contract: the pointer maps the register block.
        unsafe { self.regs.as_ref() }
    }

    /// Read and decode VER, CAP and ECAP.
    pub fn identity(&self) -> Identity {
        let r = self.regs();
        Identity::decode(r.ver.get(), r.cap.get(), r.ecap.get())
    }

    /// Raw global status register.
    pub fn global_status(&self) -> u32 {
        self.regs().gsts.get()
    }

    /// Whether DMA remapping is enabled (GSTS.TES).
    pub fn translation_enabled(&self) -> bool {
        self.regs().gsts.is_set(GCMD::TE)
    }
}
