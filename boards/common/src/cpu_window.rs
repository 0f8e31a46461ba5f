//! A window of the CPU's own address space that the suites map pages into:
//! a subtree built with the crate's table formats (x86-64 paging, Arm
//! stage 1 with the CPU's MAIR slots) and spliced into the live page-table
//! root at one top-level entry, so that the CPU reaches the pages at their
//! virtual addresses and a device bound to the CPU's space (SVA) walks the
//! very same tables.

use iommu::core::CpuFormat;
use iommu::pgtable::{AnyFormat, ArmS1, Gather, IoTable, MairIndices, Prot, TableFormat, X86_64};
use iommu::{Error, Iova, PhysAddr};

use crate::CpuOps;
use crate::pool::PoolHal;

/// Bytes one top-level entry covers (4-level, 4 KiB pages: 512 GiB).
const SPAN: u64 = 1 << 39;

/// A window in the CPU's address space.
pub struct CpuWindow {
    table: <AnyFormat as TableFormat>::Table<PoolHal>,
    live_root: u64,
    index: usize,
    /// First virtual address of the window.
    pub base: u64,
    ops: CpuOps,
    /// The CPU's table format.
    pub format: CpuFormat,
    hal: PoolHal,
}

fn entry(root: u64, index: usize) -> *mut u64 {
    (root as *mut u64).wrapping_add(index)
}

impl CpuWindow {
    /// A window at `base` (aligned to a top-level entry, whose slot in the
    /// live root must be empty).
    pub fn new(ops: CpuOps, hal: PoolHal, base: u64) -> Result<Self, Error> {
        let (live_root, format, _) = (ops.space)();
        let any = match format {
            CpuFormat::X86_64 { five_level: false } => AnyFormat::X86_64(X86_64::new(false)),
            CpuFormat::Aarch64 { tcr, .. } if tcr & 0x3f == 16 => {
                // The CPU's MAIR: write-back normal in slot 0, device in 1.
                let mair = MairIndices {
                    normal: 0,
                    device: 1,
                    normal_nc: 2,
                };
                AnyFormat::ArmS1(ArmS1::new(mair, 48)?)
            }
            _ => {
                return Err(Error::Unsupported {
                    what: "a CPU table other than 4-level x86-64 or 48-bit AArch64",
                });
            }
        };
        if !base.is_multiple_of(SPAN) {
            return Err(Error::Unaligned {
                value: base,
                align: SPAN,
            });
        }
        let index = ((base >> 39) & 511) as usize;
        // SAFETY: the live root is identity mapped; reading one entry.
        if unsafe { entry(live_root, index).read_volatile() } != 0 {
            return Err(Error::Busy {
                what: "the CPU already maps that window",
            });
        }
        Ok(CpuWindow {
            table: any.build(hal)?,
            live_root,
            index,
            base,
            ops,
            format,
            hal,
        })
    }

    /// Map the page at `phys` at `va` (inside the window), read-write, for
    /// the CPU and the devices sharing its space.
    pub fn map(&mut self, va: u64, phys: u64) -> Result<(), Error> {
        // Executable too: the x86 boards run without EFER.NXE, where the
        // execute-disable bit is reserved.
        let prot = Prot::READ | Prot::WRITE | Prot::EXEC | Prot::CACHE;
        self.table.map(Iova(va), PhysAddr(phys), 4096, prot)?;
        let ours = self.table.root_phys().get();
        // SAFETY: both roots are identity-mapped table pages; the live
        // root's slot belongs to this window.
        unsafe {
            let e = entry(ours, self.index).read_volatile();
            entry(self.live_root, self.index).write_volatile(e);
        }
        (self.ops.flush_va)(va);
        Ok(())
    }

    /// Unmap the page at `va` from the CPU's view (the devices' cached
    /// translations are the caller's to invalidate; the gather holds any
    /// table page freed until then).
    pub fn unmap(&mut self, va: u64, gather: &mut Gather) -> Result<(), Error> {
        self.table.unmap(Iova(va), 4096, gather)?;
        (self.ops.flush_va)(va);
        Ok(())
    }

    /// Release table pages an unmap gathered (once no device can walk them).
    pub fn release(&self, gather: &mut Gather) {
        gather.release(&self.hal);
    }

    /// The CPU's page-table root and format, as an SVA space names them.
    pub fn space(&self) -> (u64, CpuFormat) {
        (self.live_root, self.format)
    }
}

impl Drop for CpuWindow {
    fn drop(&mut self) {
        // SAFETY: the slot is this window's; clearing it before the subtree
        // is freed (by the table's own drop).
        unsafe { entry(self.live_root, self.index).write_volatile(0) };
        (self.ops.flush_va)(self.base);
    }
}
