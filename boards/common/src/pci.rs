//! PCI bring-up over ECAM: enumeration, BAR sizing and assignment from the
//! host-bridge windows firmware described, and which IOMMU covers each device.
//!
//! Both boards identity-map physical memory, so a physical address is used
//! directly as a pointer ([`phys_ptr`]).
//!
//! Limits (documented, not hidden): bridges are reported but not configured
//! (no bus numbers or bridge windows are assigned, so devices behind a bridge
//! that firmware left unconfigured are not found); I/O BARs are sized but not
//! assigned; at most [`MAX_DEVICES`] functions are kept.

use heapless::Vec;

use crate::platform::{IommuKind, PciWindow, Platform, ScopeKind, WindowKind};

/// Functions kept in a [`Topology`].
pub const MAX_DEVICES: usize = 64;

/// A physical address as a pointer (the boards identity-map memory).
pub fn phys_ptr(addr: u64) -> *mut u8 {
    addr as usize as *mut u8
}

/// Bus/device/function of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Bdf {
    /// Bus.
    pub bus: u8,
    /// Device (0-31).
    pub dev: u8,
    /// Function (0-7).
    pub func: u8,
}

impl Bdf {
    /// 16-bit requester ID: bus << 8 | dev << 3 | func.
    pub fn rid(&self) -> u16 {
        (self.bus as u16) << 8 | (self.dev as u16) << 3 | self.func as u16
    }
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum BarKind {
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory (takes two BAR slots).
    Mem64,
    /// Port I/O.
    Io,
}

/// One base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Bar {
    /// BAR slot (0-5).
    pub index: u8,
    /// Kind.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Size in bytes.
    pub size: u64,
    /// Address programmed (bus address), if assigned.
    pub pci_addr: Option<u64>,
    /// Address the CPU uses, if assigned.
    pub cpu_addr: Option<u64>,
}

/// One PCI function.
#[derive(Clone, Debug, defmt::Format)]
pub struct PciDevice {
    /// Segment.
    pub segment: u16,
    /// Location.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code (base, sub, prog-if) in bits 23:0.
    pub class: u32,
    /// Header type (0 endpoint, 1 PCI-PCI bridge), without the multi-function bit.
    pub header_type: u8,
    /// Physical address of its 4 KiB configuration space.
    pub config: u64,
    /// Memory and I/O BARs.
    pub bars: Vec<Bar, 6>,
    /// For bridges: secondary and subordinate bus numbers as found.
    pub buses: Option<(u8, u8)>,
}

/// Why part of bring-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum PciError {
    /// More functions than [`MAX_DEVICES`].
    TooManyDevices,
    /// No host-bridge window could hold this BAR.
    NoWindowFor {
        /// Device.
        bdf: Bdf,
        /// BAR slot.
        index: u8,
        /// Size asked for.
        size: u64,
    },
    /// A 64-bit BAR in the last slot (malformed device).
    BadBar {
        /// Device.
        bdf: Bdf,
        /// BAR slot.
        index: u8,
    },
}

/// Everything PCI bring-up found.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Functions, in scan order.
    pub devices: Vec<PciDevice, MAX_DEVICES>,
    /// Problems met on the way.
    pub errors: Vec<PciError, 8>,
}

impl Topology {
    /// Functions matching vendor and device id.
    pub fn find(&self, vendor: u16, device: u16) -> impl Iterator<Item = &PciDevice> {
        self.devices
            .iter()
            .filter(move |d| d.vendor == vendor && d.device == device)
    }

    /// The function at `segment:bdf`.
    pub fn get(&self, segment: u16, bdf: Bdf) -> Option<&PciDevice> {
        self.devices
            .iter()
            .find(|d| d.segment == segment && d.bdf == bdf)
    }
}

/// Config-space offsets used here.
mod reg {
    pub const VENDOR: usize = 0x00;
    pub const COMMAND: usize = 0x04;
    pub const CLASS_REV: usize = 0x08;
    pub const HEADER: usize = 0x0c;
    pub const BAR0: usize = 0x10;
    pub const BUS_NUMBERS: usize = 0x18;
    pub const CMD_IO: u16 = 1 << 0;
    pub const CMD_MEM: u16 = 1 << 1;
    pub const CMD_BUS_MASTER: u16 = 1 << 2;
}

/// Configuration space of one function (ECAM, 4 KiB).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    base: u64,
}

impl Config {
    /// Config space at physical `base`.
    pub fn at(base: u64) -> Self {
        Config { base }
    }

    /// Read a dword at `off` (4-byte aligned, < 4096).
    pub fn read32(&self, off: usize) -> u32 {
        debug_assert!(off.is_multiple_of(4) && off < 4096);
        // SAFETY: `base` is an ECAM function window from firmware, identity-mapped
        // as device memory by the board; `off` is aligned and inside the 4 KiB window.
        unsafe { core::ptr::read_volatile(phys_ptr(self.base + off as u64) as *const u32) }
    }

    /// Write a dword at `off` (4-byte aligned, < 4096).
    pub fn write32(&self, off: usize, v: u32) {
        debug_assert!(off.is_multiple_of(4) && off < 4096);
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(phys_ptr(self.base + off as u64) as *mut u32, v) }
    }

    /// Command register.
    pub fn command(&self) -> u16 {
        self.read32(reg::COMMAND) as u16
    }

    /// Write the command register (the status half is written as zero: its bits are RW1C).
    pub fn set_command(&self, cmd: u16) {
        self.write32(reg::COMMAND, cmd as u32);
    }

    /// Turn bus mastering on or off.
    pub fn set_bus_master(&self, on: bool) {
        let c = self.command();
        self.set_command(if on {
            c | reg::CMD_BUS_MASTER
        } else {
            c & !reg::CMD_BUS_MASTER
        });
    }
}

fn ecam_function(base: u64, bus_start: u8, bdf: Bdf) -> u64 {
    base + (((bdf.bus - bus_start) as u64) << 20 | (bdf.dev as u64) << 15 | (bdf.func as u64) << 12)
}

/// Size the BARs of a function whose decode is disabled.
fn size_bars(cfg: &Config, bdf: Bdf, slots: usize, errors: &mut Vec<PciError, 8>) -> Vec<Bar, 6> {
    let mut bars = Vec::new();
    let mut i = 0;
    while i < slots {
        let off = reg::BAR0 + 4 * i;
        let orig = cfg.read32(off);
        cfg.write32(off, 0xffff_ffff);
        let probe = cfg.read32(off);
        cfg.write32(off, orig);
        if orig & 1 == 1 {
            let mask = probe & !0x3;
            if mask != 0 {
                let size = (!(mask | 0xffff_0000)).wrapping_add(1) as u64;
                let _ = bars.push(Bar {
                    index: i as u8,
                    kind: BarKind::Io,
                    prefetchable: false,
                    size,
                    pci_addr: None,
                    cpu_addr: None,
                });
            }
            i += 1;
            continue;
        }
        let prefetchable = orig & 0x8 != 0;
        let is64 = (orig >> 1) & 0x3 == 2;
        if is64 {
            if i + 1 >= slots {
                let _ = errors.push(PciError::BadBar {
                    bdf,
                    index: i as u8,
                });
                break;
            }
            let hi_off = off + 4;
            let orig_hi = cfg.read32(hi_off);
            cfg.write32(hi_off, 0xffff_ffff);
            let probe_hi = cfg.read32(hi_off);
            cfg.write32(hi_off, orig_hi);
            let mask = ((probe_hi as u64) << 32) | (probe & !0xf) as u64;
            if mask != 0 {
                let _ = bars.push(Bar {
                    index: i as u8,
                    kind: BarKind::Mem64,
                    prefetchable,
                    size: (!mask).wrapping_add(1),
                    pci_addr: None,
                    cpu_addr: None,
                });
            }
            i += 2;
        } else {
            let mask = probe & !0xf;
            if mask != 0 {
                let _ = bars.push(Bar {
                    index: i as u8,
                    kind: BarKind::Mem32,
                    prefetchable,
                    size: (!mask).wrapping_add(1) as u64,
                    pci_addr: None,
                    cpu_addr: None,
                });
            }
            i += 1;
        }
    }
    bars
}

/// Scan every ECAM window and size every function's BARs (decode left off).
pub fn enumerate(platform: &Platform) -> Topology {
    let mut t = Topology::default();
    for ecam in &platform.ecam {
        for bus in ecam.bus_start..=ecam.bus_end {
            for dev in 0..32u8 {
                for func in 0..8u8 {
                    let bdf = Bdf { bus, dev, func };
                    let config = ecam_function(ecam.base, ecam.bus_start, bdf);
                    let cfg = Config::at(config);
                    let id = cfg.read32(reg::VENDOR);
                    if id & 0xffff == 0xffff {
                        if func == 0 {
                            break;
                        }
                        continue;
                    }
                    let header = (cfg.read32(reg::HEADER) >> 16) as u8;
                    let header_type = header & 0x7f;
                    let slots = match header_type {
                        0 => 6,
                        1 => 2,
                        _ => 0,
                    };
                    let cmd = cfg.command();
                    cfg.set_command(cmd & !(reg::CMD_MEM | reg::CMD_IO));
                    let bars = size_bars(&cfg, bdf, slots, &mut t.errors);
                    cfg.set_command(cmd & !(reg::CMD_MEM | reg::CMD_IO));
                    let buses = (header_type == 1).then(|| {
                        let b = cfg.read32(reg::BUS_NUMBERS);
                        ((b >> 8) as u8, (b >> 16) as u8)
                    });
                    let d = PciDevice {
                        segment: ecam.segment,
                        bdf,
                        vendor: id as u16,
                        device: (id >> 16) as u16,
                        class: cfg.read32(reg::CLASS_REV) >> 8,
                        header_type,
                        config,
                        bars,
                        buses,
                    };
                    if t.devices.push(d).is_err() {
                        let _ = t.errors.push(PciError::TooManyDevices);
                        return t;
                    }
                    if func == 0 && header & 0x80 == 0 {
                        break;
                    }
                }
            }
        }
    }
    t
}

/// Bump allocator over one host-bridge window.
struct WindowAlloc {
    w: PciWindow,
    next: u64,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x & !(a - 1))
}

impl WindowAlloc {
    fn alloc(&mut self, size: u64, below_4g: bool) -> Option<(u64, u64)> {
        let start = align_up(self.next, size)?;
        let end = start.checked_add(size)?;
        if end > self.w.pci_base + self.w.size || (below_4g && end > 1 << 32) {
            return None;
        }
        self.next = end;
        Some((start, start - self.w.pci_base + self.w.cpu_base))
    }
}

/// Assign every memory BAR from the host-bridge windows (largest first, natural
/// alignment; 32-bit windows first so BARs stay below 4 GiB where possible),
/// program the BARs and enable memory decode on functions whose BARs all fit.
/// Bus mastering stays off until a driver asks for it.
pub fn assign_bars(platform: &Platform, t: &mut Topology) {
    let mut allocs: Vec<WindowAlloc, 8> = Vec::new();
    for kind in [WindowKind::Mem32, WindowKind::Mem64] {
        for w in platform.windows.iter().filter(|w| w.kind == kind) {
            let _ = allocs.push(WindowAlloc {
                w: *w,
                next: w.pci_base,
            });
        }
    }
    // (device index, bar index) sorted by size, largest first.
    let mut order: Vec<(usize, usize), { MAX_DEVICES * 3 }> = Vec::new();
    for (di, d) in t.devices.iter().enumerate() {
        for (bi, b) in d.bars.iter().enumerate() {
            if b.kind != BarKind::Io {
                let _ = order.push((di, bi));
            }
        }
    }
    order.sort_unstable_by_key(|&(di, bi)| core::cmp::Reverse(t.devices[di].bars[bi].size));
    for (di, bi) in order {
        let d = &mut t.devices[di];
        let seg = d.segment;
        let bar = &mut d.bars[bi];
        let below_4g = bar.kind == BarKind::Mem32;
        let got = allocs
            .iter_mut()
            .filter(|a| a.w.segment == seg)
            .find_map(|a| a.alloc(bar.size, below_4g));
        match got {
            Some((pci, cpu)) => {
                bar.pci_addr = Some(pci);
                bar.cpu_addr = Some(cpu);
            }
            None => {
                let _ = t.errors.push(PciError::NoWindowFor {
                    bdf: d.bdf,
                    index: bar.index,
                    size: bar.size,
                });
            }
        }
    }
    for d in t.devices.iter() {
        let cfg = Config::at(d.config);
        let mut all = true;
        let mut any = false;
        for b in d.bars.iter().filter(|b| b.kind != BarKind::Io) {
            let off = reg::BAR0 + 4 * b.index as usize;
            match b.pci_addr {
                Some(a) => {
                    any = true;
                    let low_flags = cfg.read32(off) & 0xf;
                    cfg.write32(off, (a as u32 & !0xf) | low_flags);
                    if b.kind == BarKind::Mem64 {
                        cfg.write32(off + 4, (a >> 32) as u32);
                    }
                }
                None => all = false,
            }
        }
        if any && all {
            cfg.set_command(cfg.command() | reg::CMD_MEM);
        }
    }
}

/// Enumerate and assign BARs.
pub fn bring_up(platform: &Platform) -> Topology {
    let mut t = enumerate(platform);
    assign_bars(platform, &mut t);
    t
}

/// Which IOMMU translates a device's DMA, and under which ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Coverage {
    /// Index into [`Platform::iommus`].
    pub iommu: usize,
    /// VT-d source-id (the RID) or SMMU StreamID.
    pub stream_id: u32,
}

/// Resolve a DMAR device-scope path to the BDF it names, following bridges.
fn resolve_path(t: &Topology, segment: u16, start_bus: u8, path: &[(u8, u8)]) -> Option<Bdf> {
    let mut bus = start_bus;
    let (last, hops) = path.split_last()?;
    for &(dev, func) in hops {
        let bridge = t.get(segment, Bdf { bus, dev, func })?;
        bus = bridge.buses?.0;
    }
    Some(Bdf {
        bus,
        dev: last.0,
        func: last.1,
    })
}

/// The IOMMU covering `dev`, from the firmware's description.
///
/// VT-d: an explicit endpoint or sub-hierarchy scope wins; otherwise the
/// INCLUDE_PCI_ALL unit of the segment. SMMUv3: the `iommu-map` entry whose RID
/// range holds the device's RID.
pub fn coverage(platform: &Platform, t: &Topology, dev: &PciDevice) -> Option<Coverage> {
    let rid = dev.bdf.rid() as u32;
    for (i, u) in platform.iommus.iter().enumerate() {
        if u.kind != IommuKind::Vtd || u.segment != dev.segment {
            continue;
        }
        for s in &u.scopes {
            let Some(target) = resolve_path(t, u.segment, s.start_bus, &s.path) else {
                continue;
            };
            let hit = match s.kind {
                ScopeKind::Endpoint => target == dev.bdf,
                ScopeKind::SubHierarchy => {
                    target == dev.bdf
                        || t.get(u.segment, target)
                            .and_then(|b| b.buses)
                            .is_some_and(|(sec, sub)| dev.bdf.bus >= sec && dev.bdf.bus <= sub)
                }
                _ => false,
            };
            if hit {
                return Some(Coverage {
                    iommu: i,
                    stream_id: rid,
                });
            }
        }
    }
    if let Some(i) = platform
        .iommus
        .iter()
        .position(|u| u.kind == IommuKind::Vtd && u.include_all && u.segment == dev.segment)
    {
        return Some(Coverage {
            iommu: i,
            stream_id: rid,
        });
    }
    platform
        .rid_maps
        .iter()
        .find(|m| m.segment == dev.segment && rid >= m.rid_base && rid - m.rid_base < m.len)
        .map(|m| Coverage {
            iommu: m.iommu,
            stream_id: m.sid_base + (rid - m.rid_base),
        })
}
