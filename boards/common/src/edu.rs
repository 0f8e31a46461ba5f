//! Driver for QEMU's `edu` teaching device (1234:11e8) used as a DMA engine.
//!
//! The device copies between a 4 KiB buffer of its own (device addresses
//! 0x40000..0x41000) and a bus address. Its DMA goes through the IOMMU like
//! any PCI master. Bad requests are refused here with a typed error: the
//! emulated device aborts QEMU on a range outside its buffer.

use crate::pci::{Bdf, Config, PciDevice, Topology};

/// PCI vendor id.
pub const VENDOR: u16 = 0x1234;
/// PCI device id.
pub const DEVICE: u16 = 0x11e8;
/// Size of the device's DMA buffer.
pub const BUF_SIZE: usize = 4096;
/// Device-side address of the DMA buffer.
const BUF_DEV_ADDR: u64 = 0x40000;
/// Value of the identification register.
pub const ID_VALUE: u32 = 0x0100_00ed;

mod reg {
    pub const ID: usize = 0x00;
    pub const LIVENESS: usize = 0x04;
    pub const DMA_SRC: usize = 0x80;
    pub const DMA_DST: usize = 0x88;
    pub const DMA_COUNT: usize = 0x90;
    pub const DMA_CMD: usize = 0x98;
    pub const CMD_START: u64 = 1 << 0;
    pub const CMD_TO_RAM: u64 = 1 << 1;
}

/// Why a transfer was refused or did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum EduError {
    /// Zero bytes, or more than the device's buffer holds.
    BadLength(usize),
    /// `offset + len` runs past the device buffer.
    OutsideBuffer {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
    },
    /// A previous transfer is still running.
    Busy,
    /// The transfer did not complete in time (the device is left running).
    Timeout {
        /// How long we waited, in nanoseconds.
        waited_ns: u64,
    },
    /// BAR0 was not assigned, so the device cannot be driven.
    NoBar,
}

/// One edu function with its registers mapped.
pub struct Edu {
    /// Where it sits.
    pub bdf: Bdf,
    /// Segment.
    pub segment: u16,
    mmio: u64,
    config: Config,
}

impl Edu {
    /// Wrap an enumerated edu function (BAR0 must be assigned).
    pub fn new(dev: &PciDevice) -> Result<Self, EduError> {
        let bar0 = dev
            .bars
            .iter()
            .find(|b| b.index == 0)
            .and_then(|b| b.cpu_addr)
            .ok_or(EduError::NoBar)?;
        Ok(Edu {
            bdf: dev.bdf,
            segment: dev.segment,
            mmio: bar0,
            config: Config::at(dev.config),
        })
    }

    /// Every edu function in the topology, in scan order (those without BAR0 are left out).
    pub fn all(t: &Topology) -> heapless::Vec<Edu, 8> {
        t.find(VENDOR, DEVICE)
            .filter_map(|d| Edu::new(d).ok())
            .take(8)
            .collect()
    }

    fn read32(&self, off: usize) -> u32 {
        // SAFETY: `mmio` is the device's assigned BAR0 (1 MiB), identity-mapped as
        // device memory; `off` is one of the register offsets below 0x100.
        unsafe {
            core::ptr::read_volatile(crate::pci::phys_ptr(self.mmio + off as u64) as *const u32)
        }
    }

    fn write32(&self, off: usize, v: u32) {
        // SAFETY: as in `read32`.
        unsafe {
            core::ptr::write_volatile(crate::pci::phys_ptr(self.mmio + off as u64) as *mut u32, v)
        }
    }

    fn read64(&self, off: usize) -> u64 {
        // SAFETY: as in `read32`; the DMA registers accept 8-byte accesses.
        unsafe {
            core::ptr::read_volatile(crate::pci::phys_ptr(self.mmio + off as u64) as *const u64)
        }
    }

    fn write64(&self, off: usize, v: u64) {
        // SAFETY: as in `read64`.
        unsafe {
            core::ptr::write_volatile(crate::pci::phys_ptr(self.mmio + off as u64) as *mut u64, v)
        }
    }

    /// Identification register (0x010000ed on QEMU's edu).
    pub fn id(&self) -> u32 {
        self.read32(reg::ID)
    }

    /// Liveness check: the device returns the bitwise inverse of what was written.
    pub fn liveness(&self, v: u32) -> u32 {
        self.write32(reg::LIVENESS, v);
        self.read32(reg::LIVENESS)
    }

    /// Allow or forbid the device to master the bus.
    pub fn set_bus_master(&self, on: bool) {
        self.config.set_bus_master(on);
    }

    /// Whether a transfer is running.
    pub fn busy(&self) -> bool {
        self.read64(reg::DMA_CMD) & reg::CMD_START != 0
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), EduError> {
        if len == 0 || len > BUF_SIZE {
            return Err(EduError::BadLength(len));
        }
        if offset.checked_add(len).is_none_or(|end| end > BUF_SIZE) {
            return Err(EduError::OutsideBuffer { offset, len });
        }
        if self.busy() {
            return Err(EduError::Busy);
        }
        Ok(())
    }

    /// Start copying `len` bytes from bus address `src` into the device buffer at `offset`.
    pub fn start_to_device(&self, src: u64, offset: usize, len: usize) -> Result<(), EduError> {
        self.check(offset, len)?;
        self.write64(reg::DMA_SRC, src);
        self.write64(reg::DMA_DST, BUF_DEV_ADDR + offset as u64);
        self.write64(reg::DMA_COUNT, len as u64);
        // Make the CPU's writes to the source buffer visible before the device reads it.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.write64(reg::DMA_CMD, reg::CMD_START);
        Ok(())
    }

    /// Start copying `len` bytes from the device buffer at `offset` to bus address `dst`.
    pub fn start_from_device(&self, offset: usize, dst: u64, len: usize) -> Result<(), EduError> {
        self.check(offset, len)?;
        self.write64(reg::DMA_SRC, BUF_DEV_ADDR + offset as u64);
        self.write64(reg::DMA_DST, dst);
        self.write64(reg::DMA_COUNT, len as u64);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.write64(reg::DMA_CMD, reg::CMD_START | reg::CMD_TO_RAM);
        Ok(())
    }

    /// Poll until the running transfer completes, or `timeout_ns` passes on `now_ns`.
    pub fn wait(&self, now_ns: fn() -> u64, timeout_ns: u64) -> Result<(), EduError> {
        let start = now_ns();
        loop {
            if !self.busy() {
                // Order the device's completion before the CPU reads what it wrote.
                core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
                return Ok(());
            }
            let waited = now_ns().saturating_sub(start);
            if waited >= timeout_ns {
                return Err(EduError::Timeout { waited_ns: waited });
            }
            core::hint::spin_loop();
        }
    }

    /// Copy into the device buffer and wait.
    pub fn copy_to_device(
        &self,
        src: u64,
        offset: usize,
        len: usize,
        now_ns: fn() -> u64,
        timeout_ns: u64,
    ) -> Result<(), EduError> {
        self.start_to_device(src, offset, len)?;
        self.wait(now_ns, timeout_ns)
    }

    /// Copy out of the device buffer and wait.
    pub fn copy_from_device(
        &self,
        offset: usize,
        dst: u64,
        len: usize,
        now_ns: fn() -> u64,
        timeout_ns: u64,
    ) -> Result<(), EduError> {
        self.start_from_device(offset, dst, len)?;
        self.wait(now_ns, timeout_ns)
    }
}
