//! Identity-mapped stage-1 translation for EL1 (TTBR0, 4 KiB granule, 48-bit VA).
//!
//! RAM (from the device tree) is Normal write-back cacheable, inner
//! shareable, executable; everything else below the mapping limit is
//! Device-nGnRE and never executable. Each level uses the largest block that
//! is entirely RAM or entirely non-RAM: 1 GiB (level 1), 2 MiB (level 2),
//! else 4 KiB pages (level 3; a page only partly RAM is mapped as Device).
//! Tables come from a fixed pool in `.bss`.

use core::cell::UnsafeCell;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, MAIR_EL1, ReadWriteable, Readable, SCTLR_EL1, TCR_EL1, TTBR0_EL1, Writeable,
};
use iommu_board::platform::Region;

/// Why the MMU could not be turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Error {
    /// More page tables needed than the pool holds.
    OutOfTables,
    /// The running image is not inside a RAM region of the device tree (image start, end).
    ImageNotInRam(u64, u64),
}

/// What was mapped.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct Mapped {
    /// Everything below this is identity mapped.
    pub limit: u64,
    /// Physical address bits the CPU (and so TCR_EL1.IPS) supports, at most 48.
    pub pa_bits: u32,
    /// Translation tables used.
    pub tables: usize,
}

const ENTRIES: usize = 512;
const POOL: usize = 32;
const VA_BITS: u32 = 48;

const DESC_VALID: u64 = 1 << 0;
/// Table descriptor at levels 0-2, page descriptor at level 3 (clear: block).
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_IDX_NORMAL: u64 = 0 << 2;
const ATTR_IDX_DEVICE: u64 = 1 << 2;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

const NORMAL: u64 = DESC_VALID | ATTR_IDX_NORMAL | SH_INNER | AF | UXN;
const DEVICE: u64 = DESC_VALID | ATTR_IDX_DEVICE | AF | PXN | UXN;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

struct Pool(UnsafeCell<[Table; POOL]>);

// SAFETY: only `enable` touches the pool, once, on the single boot CPU
// before anything else runs.
unsafe impl Sync for Pool {}

static TABLES: Pool = Pool(UnsafeCell::new([const { Table([0; ENTRIES]) }; POOL]));

unsafe extern "C" {
    static __virt_image_start: u8;
    static __virt_image_end: u8;
}

/// The running image's physical range (identity mapped: VA = PA).
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__virt_image_start) as u64,
        core::ptr::addr_of!(__virt_image_end) as u64,
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Ram,
    Other,
    Mixed,
}

struct Builder<'a> {
    tables: &'a mut [Table; POOL],
    used: usize,
    ram: &'a [Region],
    limit: u64,
}

impl Builder<'_> {
    fn classify(&self, base: u64, size: u64) -> Class {
        let end = base + size;
        if self.ram.iter().any(|r| r.base <= base && end <= r.end()) {
            Class::Ram
        } else if self.ram.iter().any(|r| r.base < end && base < r.end()) {
            Class::Mixed
        } else {
            Class::Other
        }
    }

    fn alloc(&mut self) -> Result<usize, Error> {
        if self.used == POOL {
            return Err(Error::OutOfTables);
        }
        self.used += 1;
        Ok(self.used - 1)
    }

    /// Fills table `t` (level `level`, covering VAs from `va`) up to `limit`.
    fn fill(&mut self, t: usize, level: u32, va: u64) -> Result<(), Error> {
        let shift = 39 - 9 * level;
        let size = 1u64 << shift;
        for i in 0..ENTRIES {
            let base = va + ((i as u64) << shift);
            if base >= self.limit {
                break;
            }
            let class = self.classify(base, size);
            let desc = match (level, class) {
                (0, _) | (1 | 2, Class::Mixed) => {
                    let next = self.alloc()?;
                    self.fill(next, level + 1, base)?;
                    self.tables[next].0.as_ptr() as u64 | DESC_VALID | DESC_TABLE_OR_PAGE
                }
                (3, Class::Ram) => base | NORMAL | DESC_TABLE_OR_PAGE,
                (3, _) => base | DEVICE | DESC_TABLE_OR_PAGE,
                (_, Class::Ram) => base | NORMAL,
                (_, _) => base | DEVICE,
            };
            self.tables[t].0[i] = desc;
        }
        Ok(())
    }
}

/// Data cache line size in bytes (CTR_EL0.DminLine).
fn dcache_line() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Builds the identity map of `[0, limit)` (clamped to what the CPU can
/// address) with `ram` as Normal memory and turns the MMU and caches on.
///
/// Must run once, at EL1, with the MMU off.
pub fn enable(ram: &[Region], limit: u64) -> Result<Mapped, Error> {
    let (image_start, image_end) = image_range();
    if !ram
        .iter()
        .any(|r| r.base <= image_start && image_end <= r.end())
    {
        return Err(Error::ImageNotInRam(image_start, image_end));
    }

    let parange = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange);
    // TCR.IPS encodings 0..=5 = 32, 36, 40, 42, 44, 48 bits. 52 bits needs
    // FEAT_LPA with 64 KiB pages or TCR.DS, so cap at 48.
    let ips = parange.min(5);
    let pa_bits = [32, 36, 40, 42, 44, 48][ips as usize];
    let limit = limit.min(1 << pa_bits.min(VA_BITS));

    // SAFETY: called once before anything else uses the pool (see `Pool`).
    let tables = unsafe { &mut *TABLES.0.get() };
    let mut b = Builder {
        tables,
        used: 0,
        ram,
        limit,
    };
    let root = b.alloc()?;
    b.fill(root, 0, 0)?;
    let root_pa = b.tables[root].0.as_ptr() as u64;
    let used = b.used;

    // The tables (and all data so far) were written with the MMU off, i.e.
    // straight to memory. Discard any stale cache lines over the image before
    // the walker and our own accesses become cacheable.
    barrier::dsb(barrier::SY);
    let line = dcache_line();
    let mut a = image_start & !(line - 1);
    while a < image_end {
        // SAFETY: invalidating lines that hold no newer data than memory
        // (caches are off) loses nothing.
        unsafe { core::arch::asm!("dc ivac, {}", in(reg) a, options(nostack)) };
        a += line;
    }
    barrier::dsb(barrier::SY);

    MAIR_EL1.write(
        MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck,
    );
    TCR_EL1.write(
        TCR_EL1::T0SZ.val(u64::from(64 - VA_BITS))
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::SH0::Inner
            + TCR_EL1::EPD0::EnableTTBR0Walks
            + TCR_EL1::EPD1::DisableTTBR1Walks
            + TCR_EL1::A1::TTBR0
            + TCR_EL1::TBI0::Used
            + TCR_EL1::IPS.val(ips),
    );
    TTBR0_EL1.set_baddr(root_pa);
    // A nonzero ASID, as an OS's process would have: SVA binds share it.
    TTBR0_EL1.modify(TTBR0_EL1::ASID.val(CPU_ASID));
    // SAFETY: TLB and I-cache invalidation of the local CPU; nothing is
    // cached yet that we need.
    unsafe {
        core::arch::asm!(
            "tlbi vmalle1",
            "ic iallu",
            "dsb nsh",
            "isb",
            options(nostack)
        )
    };
    SCTLR_EL1.modify(
        SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::A::Disable
            + SCTLR_EL1::WXN::Disable,
    );
    barrier::isb(barrier::SY);

    Ok(Mapped {
        limit,
        pa_bits,
        tables: used,
    })
}

/// The ASID the CPU tags its translations with (TCR_EL1.AS = 0: 8 bits).
const CPU_ASID: u64 = 0x2a;

/// The CPU's page-table root (TTBR0_EL1), format (TCR_EL1, MAIR_EL1) and
/// ASID (TTBR0_EL1.ASID), for SVA.
pub fn cpu_space() -> (u64, iommu::core::CpuFormat, u32) {
    (
        TTBR0_EL1.get_baddr(),
        iommu::core::CpuFormat::Aarch64 {
            tcr: TCR_EL1.get(),
            mair: MAIR_EL1.get(),
        },
        TTBR0_EL1.read(TTBR0_EL1::ASID) as u32,
    )
}

/// Drop the CPU's translation of the page at `va` (every ASID).
pub fn flush_va(va: u64) {
    // SAFETY: TLB maintenance and barriers only; no memory is accessed.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vaae1is, {0}",
            "dsb ish",
            "isb",
            in(reg) (va >> 12) & ((1 << 44) - 1),
            options(nostack, preserves_flags)
        );
    }
}
