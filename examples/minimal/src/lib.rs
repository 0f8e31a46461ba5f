//! The README's embedding example, built for both bare-metal targets in CI
//! and measured by `cargo xtask bench size`.
//!
//! A firmware or unikernel that identity-maps its memory gives the crate
//! table pages from a static pool, drives one IOMMU instance through a
//! paging-only driver, and keeps the core in a `static` (all of it in
//! `.bss`: no code builds it). The driver here is the smallest honest one:
//! its "hardware" is a table of root pointers indexed by requester ID, as a
//! legacy VT-d context table would hold them (the crate's own VT-d and
//! SMMUv3 drivers take its place on real machines).

#![no_std]

use core::cell::UnsafeCell;

use iommu::core::{
    CacheTag, Caps, DeviceId, DeviceInfo, DomainDesc, DomainHw, DomainRequest, FaultResponder,
    HW_INFO_TYPE_NONE, HwInfo, Iommu, IommuDriver, PagingFlags, TagInvalidate,
};
use iommu::hal::{Hal, PAGE_SIZE};
use iommu::pgtable::Prot;
use iommu::{Error, Iova, Object, PhysAddr};

// ---- 1. Table pages: a static pool, identity mapped ------------------------

/// Pages the pool holds (one table per level, and a few more).
const PAGES: usize = 32;

#[repr(C, align(4096))]
struct Pages(UnsafeCell<[[u8; 4096]; PAGES]>);

// SAFETY: pages are handed out one owner at a time under `USED`'s lock.
unsafe impl Sync for Pages {}

static MEMORY: Pages = Pages(UnsafeCell::new([[0; 4096]; PAGES]));
/// Bit `i` set: page `i` is handed out.
static USED: spin::Mutex<u32> = spin::Mutex::new(0);

/// Pool pages handed out now.
pub fn pool_pages_in_use() -> u32 {
    USED.lock().count_ones()
}

/// The embedder's services: zero-sized (every page table keeps a copy).
#[derive(Clone, Copy)]
pub struct StaticHal;

// SAFETY: each allocation is a run of pool pages no one else holds until it
// is freed (tracked in `USED`), zeroed first; physical = virtual (identity
// mapped), so `phys_to_virt` reaches the very bytes the IOMMU reads.
unsafe impl Hal for StaticHal {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        let mut used = USED.lock();
        let run = (1u32 << count) - 1;
        let first = (0..=PAGES - count)
            .step_by(count)
            .find(|&i| *used & (run << i) == 0)?;
        *used |= run << first;
        let base = MEMORY.0.get() as *mut u8;
        // SAFETY: the run is inside `MEMORY` and now ours alone.
        let page = unsafe { base.add(first * PAGE_SIZE as usize) };
        // SAFETY: as above, `count` whole pages.
        unsafe { core::ptr::write_bytes(page, 0, count * PAGE_SIZE as usize) };
        Some(PhysAddr(page as u64))
    }

    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        let first = (phys.get() - MEMORY.0.get() as u64) / PAGE_SIZE;
        *USED.lock() &= !(((1u32 << count) - 1) << first);
    }

    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        phys.get() as *mut u8
    }

    fn now_ns(&self) -> u64 {
        // A firmware reads its timer here (TSC, generic timer, HPET); this
        // driver never waits, so a tick per call is enough.
        TICKS.fetch_add(1_000, core::sync::atomic::Ordering::Relaxed)
    }
}

static TICKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

// ---- 2. A paging-only driver ---------------------------------------------

/// The table format the driver's domains use: one format, so only its code
/// is compiled in.
#[cfg(feature = "vtd")]
pub type Format = iommu::pgtable::VtdSl;
/// The table format the driver's domains use: one format, so only its code
/// is compiled in.
#[cfg(all(feature = "smmuv3", not(feature = "vtd")))]
pub type Format = iommu::pgtable::ArmS2;

#[cfg(feature = "vtd")]
fn format() -> Result<Format, Error> {
    iommu::pgtable::VtdSl::new(48, iommu::pgtable::LargePages::SIZE_2M)
}

#[cfg(all(feature = "smmuv3", not(feature = "vtd")))]
fn format() -> Result<Format, Error> {
    iommu::pgtable::ArmS2::new(40, 44)
}

/// One IOMMU instance whose hardware is a table of root pointers, one per
/// requester ID (0: blocked).
pub struct RootTable {
    /// What each requester ID translates through.
    pub roots: [u64; 256],
    next_tag: u32,
    /// IOTLB invalidations queued.
    pub invalidations: u32,
}

impl RootTable {
    /// All devices blocked.
    pub const fn new() -> Self {
        RootTable {
            roots: [0; 256],
            next_tag: 0,
            invalidations: 0,
        }
    }

    fn check(&self, instance: u16) -> Result<(), Error> {
        match instance {
            0 => Ok(()),
            _ => Err(Error::NotFound {
                what: Object::Instance,
            }),
        }
    }
}

impl Default for RootTable {
    fn default() -> Self {
        Self::new()
    }
}

impl TagInvalidate for RootTable {
    fn invalidate(
        &mut self,
        tag: &CacheTag,
        _: Option<(u64, u64)>,
        _: u64,
        _: bool,
    ) -> Result<(), Error> {
        self.check(tag.instance)?;
        self.invalidations += 1;
        Ok(())
    }

    fn wait(&mut self, instance: u16) -> Result<(), Error> {
        self.check(instance)
    }
}

/// No page requests on this hardware.
impl FaultResponder for RootTable {}

impl IommuDriver for RootTable {
    type DomainData = ();
    type Format = Format;
    // It reads no fault records: the core leaves out fault handling (the
    // `faults` feature keeps it, to measure what it costs).
    const REPORTS_FAULTS: bool = cfg!(feature = "faults");

    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error> {
        self.hw_info(instance)
    }

    fn enable(&mut self, instance: u16) -> Result<(), Error> {
        self.check(instance)
    }

    fn hw_info(&self, instance: u16) -> Result<HwInfo, Error> {
        self.check(instance)?;
        Ok(HwInfo {
            ty: HW_INFO_TYPE_NONE,
            regs: [0; 8],
            len: 0,
        })
    }

    fn domain_alloc(
        &mut self,
        dev: &DeviceInfo,
        req: &DomainRequest<'_, (), Format>,
    ) -> Result<DomainHw<(), Format>, Error> {
        self.check(dev.dev.instance)?;
        let DomainRequest::Paging { .. } = req else {
            return Err(Error::Unsupported {
                what: "SVA and nested domains",
            });
        };
        self.next_tag += 1;
        Ok(DomainHw::new(self.next_tag, Some(format()?), ()))
    }

    fn domain_free(&mut self, _: u16, _: &DomainHw<(), Format>) {}

    fn attach(
        &mut self,
        dev: &DeviceInfo,
        pasid: Option<u32>,
        new: &DomainDesc<'_, (), Format>,
        _: &DomainDesc<'_, (), Format>,
    ) -> Result<(), Error> {
        self.check(dev.dev.instance)?;
        if pasid.is_some() {
            return Err(Error::Unsupported { what: "PASIDs" });
        }
        let root = match new {
            DomainDesc::Blocked => 0,
            DomainDesc::Paging { root, .. } => root.get(),
            _ => {
                return Err(Error::Unsupported {
                    what: "this domain kind",
                });
            }
        };
        self.roots[dev.dev.id as usize % 256] = root;
        Ok(())
    }
}

// ---- 3. The core, in a static --------------------------------------------

/// Capacities: 8 domains, 8 devices, no PASID space.
pub type Small = Caps<8, 8>;

/// The core as this program keeps it, at capacities `C`.
pub type CoreWith<C> = Iommu<RootTable, StaticHal, C>;

/// The core as this program keeps it.
pub type Core = CoreWith<Small>;

/// All zero: in `.bss`, built by no code.
pub static CORE: spin::Mutex<Core> = spin::Mutex::new(Iommu::new(RootTable::new(), StaticHal));

// ---- 4. Use it -------------------------------------------------------------

/// A device behind the IOMMU (from the firmware tables).
pub const DEV: DeviceId = DeviceId {
    instance: 0,
    id: 0x08,
};

/// Map a buffer for `DEV` and check what the IOMMU will walk: returns the
/// physical address `0x1000` translates to while attached.
pub fn run() -> Result<u64, Error> {
    let mut core = CORE.lock();
    core.add_instance(0)?;
    core.register_device(DeviceInfo {
        dev: DEV,
        pasid_bits: 0,
        ats: false,
    })?;
    let dom = core.alloc_paging(DEV, PagingFlags::empty())?;
    core.map(
        dom,
        Iova(0x1000),
        PhysAddr(0x8000_0000),
        0x1000,
        Prot::READ | Prot::WRITE,
    )?;
    core.attach(DEV, dom)?;
    let walked = core.iova_to_phys(dom, Iova(0x1000))?;
    if core.driver().roots[DEV.id as usize] == 0 {
        return Err(Error::NotFound {
            what: Object::Domain,
        });
    }
    core.unmap_sync(dom, Iova(0x1000), 0x1000)?;
    core.detach(DEV)?;
    core.free_domain(dom)?;
    core.remove_device(DEV)?;
    walked
        .map(PhysAddr::get)
        .ok_or(Error::NotMapped { iova: 0x1000 })
}
