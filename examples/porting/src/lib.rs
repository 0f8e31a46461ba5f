//! The porting guide's example (`docs/porting.md` shows it whole): the
//! crate's real drivers, from what the firmware says to a device whose DMA
//! translates through a paging domain.
//!
//! x86 reads the ACPI DMAR table (a DRHD's register base, its device scopes
//! or INCLUDE_PCI_ALL, its RMRRs) and drives `Vtd`; Arm reads the device
//! tree (an `arm,smmu-v3` node's `reg`, the host bridge's `iommu-map`) and
//! drives `Smmu`. Both then take the same path through the core. CI builds
//! it for x86_64-unknown-none (`vtd`) and aarch64-unknown-none (`smmuv3`)
//! and `cargo xtask bench size` measures it; the VT-d half runs on the host
//! against the crate's VT-d model (`tests/vtd_model.rs`), and the on-target
//! suites run the same path in QEMU (`boards/common/src/vtd_env.rs`,
//! `smmu_env.rs`).

#![no_std]

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use iommu::core::{
    Capacities, Caps, DeviceId, DeviceInfo, DomainId, Fault, FaultHandler, FaultTarget, Iommu,
    IommuDriver, PagingFlags, Response,
};
use iommu::hal::{Hal, PAGE_SIZE};
use iommu::pgtable::Prot;
use iommu::{Error, Iova, PhysAddr};

// ---- 1. The Hal: table pages, phys <-> virt, the clock, cache cleaning ----

/// Pages in the pool: the drivers' own tables and queues (an SMMU command
/// queue alone can take 16) and the domains' tables.
const PAGES: usize = 64;

/// Aligned to the largest run the crate asks for (16 pages).
#[repr(C, align(65536))]
struct Pages(UnsafeCell<[[u8; 4096]; PAGES]>);

// SAFETY: pages are handed out one owner at a time under `USED`'s lock.
unsafe impl Sync for Pages {}

static MEMORY: Pages = Pages(UnsafeCell::new([[0; 4096]; PAGES]));
/// Bit `i` set: page `i` is handed out.
static USED: spin::Mutex<u64> = spin::Mutex::new(0);

/// Where the CPU sees physical address 0 (0: memory is identity-mapped;
/// a hypervisor with a direct map puts its offset here).
pub const VIRT_OFFSET: u64 = 0;

/// Whether the IOMMUs' table walkers snoop the CPU caches (VT-d ECAP.C,
/// SMMU IDR0.COHACC). Until the embedder says so, every table write is
/// cleaned to memory: always correct, only slower.
pub static WALKER_COHERENT: AtomicBool = AtomicBool::new(false);

/// The embedder's services, zero-sized: every page table keeps a copy.
#[derive(Clone, Copy, Default)]
pub struct PortHal;

// SAFETY: each allocation is a run of pool pages, aligned to its size, that
// no one else holds until it is freed (tracked in `USED`), zeroed (and the
// zeroes cleaned to memory) first; `phys_to_virt` undoes the offset
// `alloc_pages` applied, so it reaches the very bytes the IOMMU reads; and
// `flush_dcache` cleans to the point of coherency unless the walker snoops.
unsafe impl Hal for PortHal {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        if !count.is_power_of_two() || count > 16 {
            return None;
        }
        let mut used = USED.lock();
        let run = (1u64 << count) - 1;
        let first = (0..=PAGES - count)
            .step_by(count)
            .find(|&i| *used & (run << i) == 0)?;
        *used |= run << first;
        let base = MEMORY.0.get() as *mut u8;
        // SAFETY: the run is inside `MEMORY` and now ours alone.
        let page = unsafe { base.add(first * PAGE_SIZE as usize) };
        // SAFETY: as above, `count` whole pages.
        unsafe { core::ptr::write_bytes(page, 0, count * PAGE_SIZE as usize) };
        self.flush_dcache(page, count * PAGE_SIZE as usize);
        Some(PhysAddr(page as u64 - VIRT_OFFSET))
    }

    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        let first = (phys.get() + VIRT_OFFSET - MEMORY.0.get() as u64) / PAGE_SIZE;
        *USED.lock() &= !(((1u64 << count) - 1) << first);
    }

    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        (phys.get() + VIRT_OFFSET) as *mut u8
    }

    fn now_ns(&self) -> u64 {
        clock::now_ns()
    }

    fn flush_dcache(&self, virt: *const u8, len: usize) {
        if !WALKER_COHERENT.load(Ordering::Relaxed) {
            clock::clean_dcache(virt, len);
        }
    }
}

/// The architecture's timer and cache-clean instructions.
mod clock {
    /// Cache line size assumed (read CTR_EL0 / CPUID leaf 1 to be exact:
    /// a smaller value is always safe).
    const LINE: usize = 64;

    /// TSC ticks per microsecond: take it from CPUID leaf 0x15 or calibrate
    /// against the HPET / PM timer. Erring high only lengthens timeouts.
    #[cfg(target_arch = "x86_64")]
    const TSC_MHZ: u64 = 4_000;

    /// Monotonic nanoseconds from the time-stamp counter.
    #[cfg(target_arch = "x86_64")]
    pub fn now_ns() -> u64 {
        // SAFETY: RDTSC only reads the time-stamp counter.
        let ticks = unsafe { core::arch::x86_64::_rdtsc() };
        ticks / TSC_MHZ * 1_000
    }

    /// Write back every line of `[virt, virt + len)`.
    #[cfg(target_arch = "x86_64")]
    pub fn clean_dcache(virt: *const u8, len: usize) {
        for off in (0..len).step_by(LINE) {
            // SAFETY: CLFLUSH of memory the caller owns; it changes no data.
            unsafe { core::arch::asm!("clflush [{}]", in(reg) virt.wrapping_add(off)) };
        }
        // SAFETY: a fence orders the flushes before the doorbell write.
        unsafe { core::arch::asm!("mfence") };
    }

    /// Monotonic nanoseconds from the generic timer's virtual count.
    #[cfg(target_arch = "aarch64")]
    pub fn now_ns() -> u64 {
        let (count, freq): (u64, u64);
        // SAFETY: reads of the generic timer's count and frequency.
        unsafe {
            core::arch::asm!("mrs {}, cntvct_el0", out(reg) count);
            core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq);
        }
        (u128::from(count) * 1_000_000_000 / u128::from(freq.max(1))) as u64
    }

    /// Clean every line of `[virt, virt + len)` to the point of coherency.
    #[cfg(target_arch = "aarch64")]
    pub fn clean_dcache(virt: *const u8, len: usize) {
        for off in (0..len).step_by(LINE) {
            // SAFETY: DC CVAC of memory the caller owns; it changes no data.
            unsafe { core::arch::asm!("dc cvac, {}", in(reg) virt.wrapping_add(off)) };
        }
        // SAFETY: a barrier completes the cleans before the doorbell write.
        unsafe { core::arch::asm!("dsb ish") };
    }

    /// Elsewhere: a counter that keeps advancing, and coherent caches.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn now_ns() -> u64 {
        static T: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
        T.fetch_add(1_000, core::sync::atomic::Ordering::Relaxed)
    }

    /// Elsewhere: nothing to clean.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn clean_dcache(_: *const u8, _: usize) {}
}

// ---- 2. What the firmware says, as the embedder's reader hands it over ----

/// A DMAR DRHD (`boards/common/src/acpi.rs` reads them).
#[derive(Clone, Copy, Debug)]
pub struct Drhd<'a> {
    /// Register Base Address.
    pub base: u64,
    /// Register block size: 4 KiB << the Size field.
    pub size: u64,
    /// PCI segment it serves.
    pub segment: u16,
    /// Flags bit 0: every device of the segment no other DRHD names.
    pub include_pci_all: bool,
    /// Its device scopes, each path resolved through the bridges to a
    /// source-id (`boards/common/src/pci.rs`, `coverage`).
    pub source_ids: &'a [u16],
}

/// A DMAR RMRR: memory the named devices keep reaching one-to-one.
#[derive(Clone, Copy, Debug)]
pub struct Rmrr<'a> {
    /// Index of the DRHD that covers the devices.
    pub drhd: u16,
    /// First byte.
    pub base: u64,
    /// Last byte (inclusive, as in the table).
    pub limit: u64,
    /// Its device scopes, resolved to source-ids.
    pub source_ids: &'a [u16],
}

/// The DMAR facts the VT-d driver needs.
#[derive(Clone, Copy, Debug)]
pub struct Dmar<'a> {
    /// Remapping units, in table order (the index is the core's instance).
    pub drhds: &'a [Drhd<'a>],
    /// Reserved memory regions.
    pub rmrrs: &'a [Rmrr<'a>],
}

impl Dmar<'_> {
    /// The unit translating requester ID `rid` of `segment`: a DRHD whose
    /// scope names it, else the segment's INCLUDE_PCI_ALL unit.
    pub fn device(&self, segment: u16, rid: u16) -> Option<DeviceId> {
        let on = |d: &&Drhd<'_>| d.segment == segment;
        let i = (self
            .drhds
            .iter()
            .position(|d| on(&d) && d.source_ids.contains(&rid)))
        .or_else(|| self.drhds.iter().position(|d| on(&d) && d.include_pci_all))?;
        let instance = u16::try_from(i).ok()?;
        Some(DeviceId {
            instance,
            id: rid.into(),
        })
    }
}

/// An `arm,smmu-v3` node's `reg` (`boards/common/src/fdt.rs` reads them).
#[derive(Clone, Copy, Debug)]
pub struct SmmuNode {
    /// Base of register page 0.
    pub base: u64,
    /// Size (128 KiB: both register pages).
    pub size: u64,
}

/// One `iommu-map` entry of a host bridge: `len` requester IDs from
/// `rid_base` reach SMMU `smmu` as StreamIDs from `sid_base`.
#[derive(Clone, Copy, Debug)]
pub struct IommuMap {
    /// First requester ID.
    pub rid_base: u32,
    /// Index of the SMMU node the entry's phandle names.
    pub smmu: u16,
    /// StreamID of `rid_base`.
    pub sid_base: u32,
    /// Requester IDs covered.
    pub len: u32,
}

/// The device-tree facts the SMMUv3 driver needs.
#[derive(Clone, Copy, Debug)]
pub struct DeviceTree<'a> {
    /// SMMUs (the index is the core's instance).
    pub smmus: &'a [SmmuNode],
    /// The host bridge's `iommu-map`.
    pub iommu_map: &'a [IommuMap],
}

impl DeviceTree<'_> {
    /// The SMMU and StreamID of requester ID `rid`.
    pub fn device(&self, rid: u16) -> Option<DeviceId> {
        let rid = u32::from(rid);
        let m = (self.iommu_map.iter()).find(|m| rid >= m.rid_base && rid - m.rid_base < m.len)?;
        Some(DeviceId {
            instance: m.smmu,
            id: m.sid_base + (rid - m.rid_base),
        })
    }
}

/// QEMU's q35 with `intel-iommu`: one DRHD, INCLUDE_PCI_ALL, no RMRR.
pub const Q35: Dmar<'static> = Dmar {
    drhds: &[Drhd {
        base: 0xfed9_0000,
        size: 0x1000,
        segment: 0,
        include_pci_all: true,
        source_ids: &[],
    }],
    rmrrs: &[],
};

/// QEMU's virt with `iommu=smmuv3`: `iommu-map = <0 &smmu 0 0x10000>`.
pub const VIRT: DeviceTree<'static> = DeviceTree {
    smmus: &[SmmuNode {
        base: 0x0905_0000,
        size: 0x2_0000,
    }],
    iommu_map: &[IommuMap {
        rid_base: 0,
        smmu: 0,
        sid_base: 0,
        len: 0x1_0000,
    }],
};

/// Where a register block is mapped: the boards identity-map MMIO as device
/// memory at boot; a hypervisor maps it uncached (x86 UC, Arm nGnRE) here.
pub fn identity_mmio(base: u64, _size: u64) -> Option<NonNull<u8>> {
    NonNull::new((base + VIRT_OFFSET) as *mut u8)
}

fn unmapped(base: u64) -> Error {
    Error::OutOfRange {
        what: "register block not mapped",
        value: base,
    }
}

// ---- 3. Bring-up: the driver serves every unit, the core enables them ----

/// Capacities: 16 domains, 16 devices, no PASID space (the defaults).
pub type PortCaps = Caps<16, 16>;

/// The VT-d driver over every DRHD, its RMRRs recorded, each unit probed
/// and enabled (translation on, every device blocked).
///
/// # Safety
/// `mmio` returns mappings of whole register blocks as device memory that
/// live as long as the core, and nothing else drives those units.
#[cfg(feature = "vtd")]
pub unsafe fn vtd_bring_up<H: Hal + Clone, C: Capacities>(
    core: &mut Iommu<iommu::drivers::vtd::driver::Vtd<H>, H, C>,
    dmar: &Dmar<'_>,
    mut mmio: impl FnMut(u64, u64) -> Option<NonNull<u8>>,
    ram_top: u64,
) -> Result<(), Error> {
    for (i, d) in dmar.drhds.iter().enumerate() {
        let regs = mmio(d.base, d.size).ok_or(unmapped(d.base))?;
        // SAFETY: the caller's promise about `mmio`.
        unsafe { core.driver_mut().add_unit(i as u16, regs)? };
    }
    for r in dmar.rmrrs {
        (core.driver_mut()).add_rmrr(r.drhd, r.base, r.limit, r.source_ids)?;
    }
    // Identity domains on units without pass-through map [0, ram_top).
    core.driver_mut().set_identity_limit(ram_top);
    for i in 0..dmar.drhds.len() {
        core.add_instance(i as u16)?;
    }
    Ok(())
}

/// The SMMUv3 driver over every SMMU node, each probed and enabled (every
/// StreamID aborting).
///
/// # Safety
/// As [`vtd_bring_up`]: `mmio` maps both register pages of each SMMU.
#[cfg(feature = "smmuv3")]
pub unsafe fn smmu_bring_up<H: Hal + Clone, C: Capacities>(
    core: &mut Iommu<iommu::drivers::smmuv3::driver::Smmu<H>, H, C>,
    dt: &DeviceTree<'_>,
    mut mmio: impl FnMut(u64, u64) -> Option<NonNull<u8>>,
) -> Result<(), Error> {
    for (i, s) in dt.smmus.iter().enumerate() {
        let regs = mmio(s.base, s.size).ok_or(unmapped(s.base))?;
        // SAFETY: the caller's promise about `mmio`.
        unsafe { core.driver_mut().add_unit(i as u16, regs)? };
    }
    for i in 0..dt.smmus.len() {
        core.add_instance(i as u16)?;
    }
    Ok(())
}

// ---- 4. The common path: a device translating through a paging domain ----

/// Register `dev`, give it a paging domain mapping `[iova, iova + len)` to
/// `phys` (its faults to [`on_fault`]) and attach it. Undone on error.
pub fn translate<D: IommuDriver, H: Hal + Clone, C: Capacities>(
    core: &mut Iommu<D, H, C>,
    dev: DeviceId,
    iova: u64,
    phys: u64,
    len: u64,
) -> Result<DomainId, Error> {
    core.register_device(DeviceInfo {
        dev,
        pasid_bits: 0,
        ats: false,
    })?;
    let dom = match core.alloc_paging(dev, PagingFlags::empty()) {
        Ok(dom) => dom,
        Err(e) => return Err(core.remove_device(dev).err().unwrap_or(e)),
    };
    let handler = FaultTarget::Handler(FaultHandler {
        func: on_fault,
        cookie: 0,
    });
    let rw = Prot::READ | Prot::WRITE;
    let r = (core.set_fault_target(dom, handler))
        .and_then(|()| core.map(dom, Iova(iova), PhysAddr(phys), len, rw))
        .and_then(|()| core.attach(dev, dom));
    if let Err(e) = r {
        let _ = core.free_domain(dom);
        let _ = core.remove_device(dev);
        return Err(e);
    }
    Ok(dom)
}

// ---- 5. Faults: the handler queues, the work happens after ----------------

/// Faults the handler saw, waiting for [`service_faults`].
static FAULTED: spin::Mutex<heapless::Vec<(DomainId, Fault), 8>> =
    spin::Mutex::new(heapless::Vec::new());

/// Runs inside `process_faults`, with the core borrowed: it cannot call the
/// core, so it records the fault for later and answers.
fn on_fault(_cookie: usize, dom: DomainId, group: &[Fault]) -> Response {
    let mut q = FAULTED.lock();
    for f in group {
        let _ = q.push((dom, *f));
    }
    Response::Invalid
}

/// Drain the hardware's fault records through the core, then act on what
/// the handler queued: here, a device that faulted is blocked (`detach`
/// leaves it Blocked). Returns the devices blocked.
pub fn service_faults<D: IommuDriver, H: Hal + Clone, C: Capacities>(
    core: &mut Iommu<D, H, C>,
) -> Result<usize, Error> {
    core.process_faults()?;
    let faulted = core::mem::take(&mut *FAULTED.lock());
    let mut blocked = 0;
    for &(dom, f) in &faulted {
        let dev = DeviceId {
            instance: f.instance,
            id: f.device,
        };
        // Still attached to the domain that faulted (not already replaced).
        if core.attached(dev, None)? == Some(dom) {
            core.detach(dev)?;
            blocked += 1;
        }
    }
    Ok(blocked)
}

// ---- 6. The program: the core in a static, built at compile time ---------

/// The VT-d core as an x86 embedder keeps it (all zero: in `.bss`).
#[cfg(feature = "vtd")]
pub type VtdCore = Iommu<iommu::drivers::vtd::driver::Vtd<PortHal>, PortHal, PortCaps>;

/// The VT-d core.
#[cfg(feature = "vtd")]
pub static VTD: spin::Mutex<VtdCore> = spin::Mutex::new(Iommu::new(
    iommu::drivers::vtd::driver::Vtd::new(PortHal),
    PortHal,
));

/// The SMMUv3 core as an Arm embedder keeps it (all zero: in `.bss`).
#[cfg(feature = "smmuv3")]
pub type SmmuCore = Iommu<iommu::drivers::smmuv3::driver::Smmu<PortHal>, PortHal, PortCaps>;

/// The SMMUv3 core.
#[cfg(feature = "smmuv3")]
pub static SMMU: spin::Mutex<SmmuCore> = spin::Mutex::new(Iommu::new(
    iommu::drivers::smmuv3::driver::Smmu::new(PortHal),
    PortHal,
));

/// A DMA buffer for the device, from the same pool.
fn buffer() -> Result<u64, Error> {
    PortHal
        .alloc_pages(1)
        .map(PhysAddr::get)
        .ok_or(Error::NoMemory)
}

/// q35: device 00:02.0 reaches a buffer at IOVA 0x1000_0000.
#[cfg(feature = "vtd")]
pub fn run_vtd() -> Result<DomainId, Error> {
    let mut core = VTD.lock();
    // SAFETY: the DRHD's registers are mapped (identity, device memory) for
    // the program's life and nothing else drives the unit.
    unsafe { vtd_bring_up(&mut core, &Q35, identity_mmio, 4 << 30)? };
    let dev = Q35.device(0, 0x0010).ok_or(unmapped(0x10))?;
    translate(&mut core, dev, 0x1000_0000, buffer()?, 0x1000)
}

/// virt: device 00:02.0 reaches a buffer at IOVA 0x1000_0000.
#[cfg(feature = "smmuv3")]
pub fn run_smmu() -> Result<DomainId, Error> {
    let mut core = SMMU.lock();
    // SAFETY: as in `run_vtd`, for the SMMU's two register pages.
    unsafe { smmu_bring_up(&mut core, &VIRT, identity_mmio)? };
    let dev = VIRT.device(0x0010).ok_or(unmapped(0x10))?;
    translate(&mut core, dev, 0x1000_0000, buffer()?, 0x1000)
}
