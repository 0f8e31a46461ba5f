//! PCI bring-up over ECAM: enumeration, BAR sizing and assignment from the
//! host-bridge windows firmware described, and which IOMMU covers each device.
//!
//! Both boards identity-map physical memory, so a physical address is used
//! directly as a pointer ([`phys_ptr`]).
//!
//! Bridges are numbered depth first (firmware's numbers are kept where they
//! are valid) and given memory windows that hold their subtree.
//!
//! Limits (documented, not hidden): only buses reachable from each ECAM
//! window's first bus are scanned (extra root buses such as QEMU's pxb are
//! not); I/O BARs are sized but not assigned, and bridges' I/O and
//! prefetchable windows are closed; at most [`MAX_DEVICES`] functions are kept.

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
    /// For bridges: secondary and subordinate bus numbers (found or assigned).
    pub buses: Option<(u8, u8)>,
    /// Index in [`Topology::devices`] of the bridge above, `None` on a root bus.
    pub parent: Option<u8>,
    /// For bridges: the memory window forwarded downstream (bus address, size), if any.
    pub window: Option<(u64, u64)>,
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
    /// No window could hold the memory a bridge's subtree needs.
    NoWindowForBridge {
        /// The bridge.
        bdf: Bdf,
        /// Size needed.
        size: u64,
    },
    /// More bridges than the segment's bus range can number.
    OutOfBusNumbers {
        /// The bridge left unconfigured.
        bdf: Bdf,
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
    pub const IO_BASE_LIMIT: usize = 0x1c;
    pub const MEM_BASE_LIMIT: usize = 0x20;
    pub const PREF_BASE_LIMIT: usize = 0x24;
    pub const PREF_BASE_UPPER: usize = 0x28;
    pub const PREF_LIMIT_UPPER: usize = 0x2c;
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

/// Bus-number state of one segment's depth-first scan.
struct Scan<'a> {
    ecam: &'a crate::platform::Ecam,
    /// Highest bus number in use so far.
    last_bus: u8,
}

/// Scan `bus` and, depth first, every bus behind its bridges. Bridges that
/// firmware numbered keep their numbers; unnumbered ones get the next free bus.
fn scan_bus(scan: &mut Scan, bus: u8, parent: Option<u8>, t: &mut Topology) {
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let bdf = Bdf { bus, dev, func };
            let config = ecam_function(scan.ecam.base, scan.ecam.bus_start, bdf);
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
            let index = t.devices.len();
            let d = PciDevice {
                segment: scan.ecam.segment,
                bdf,
                vendor: id as u16,
                device: (id >> 16) as u16,
                class: cfg.read32(reg::CLASS_REV) >> 8,
                header_type,
                config,
                bars,
                buses: None,
                parent,
                window: None,
            };
            if t.devices.push(d).is_err() {
                let _ = t.errors.push(PciError::TooManyDevices);
                return;
            }
            if header_type == 1 {
                number_bridge(scan, index, t);
            }
            if func == 0 && header & 0x80 == 0 {
                break;
            }
        }
    }
}

fn number_bridge(scan: &mut Scan, index: usize, t: &mut Topology) {
    let (bdf, cfg) = (t.devices[index].bdf, Config::at(t.devices[index].config));
    let found = cfg.read32(reg::BUS_NUMBERS);
    let (sec, sub) = ((found >> 8) as u8, (found >> 16) as u8);
    let firmware_numbered =
        sec > bdf.bus && sub >= sec && sub <= scan.ecam.bus_end && sec > scan.last_bus;
    let keep_upper = found & 0xff00_0000;
    let sec = if firmware_numbered {
        // Buses below are numbered from `sec` on; `sub` is reserved once the subtree is scanned.
        scan.last_bus = sec;
        sec
    } else {
        let Some(sec) = scan
            .last_bus
            .checked_add(1)
            .filter(|&b| b <= scan.ecam.bus_end)
        else {
            let _ = t.errors.push(PciError::OutOfBusNumbers { bdf });
            return;
        };
        // Route every bus up to the end of the segment below the bridge while
        // scanning; the subordinate number is trimmed once the subtree is known.
        cfg.write32(
            reg::BUS_NUMBERS,
            keep_upper | (scan.ecam.bus_end as u32) << 16 | (sec as u32) << 8 | bdf.bus as u32,
        );
        scan.last_bus = sec;
        sec
    };
    scan_bus(scan, sec, Some(index as u8), t);
    let sub = if firmware_numbered {
        scan.last_bus = scan.last_bus.max(sub);
        sub
    } else {
        scan.last_bus
    };
    if !firmware_numbered {
        cfg.write32(
            reg::BUS_NUMBERS,
            keep_upper | (sub as u32) << 16 | (sec as u32) << 8 | bdf.bus as u32,
        );
    }
    t.devices[index].buses = Some((sec, sub));
}

/// Scan every ECAM window from its first bus, through bridges, and size every
/// function's BARs (decode left off).
pub fn enumerate(platform: &Platform) -> Topology {
    let mut t = Topology::default();
    for ecam in &platform.ecam {
        let mut scan = Scan {
            ecam,
            last_bus: ecam.bus_start,
        };
        scan_bus(&mut scan, ecam.bus_start, None, &mut t);
    }
    t
}

/// Bridges forward memory in 1 MiB units.
const BRIDGE_GRANULE: u64 = 1 << 20;

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x & !(a - 1))
}

/// Something that needs an address range: a memory BAR or a bridge window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Bar { dev: usize, bar: usize },
    Window { dev: usize },
}

/// Memory a bridge's subtree needs: (size, alignment). The size is a multiple
/// of the alignment, so items packed in order of decreasing alignment need no
/// padding between them. (0, granule) when nothing below needs memory.
fn window_need(t: &Topology, bridge: usize) -> (u64, u64) {
    let mut total = 0u64;
    let mut align = BRIDGE_GRANULE;
    for item in items_below(t, Some(bridge), t.devices[bridge].segment) {
        let (size, a) = item_need(t, item);
        total = total.saturating_add(size);
        align = align.max(a);
    }
    if total == 0 {
        return (0, BRIDGE_GRANULE);
    }
    (align_up(total, align).unwrap_or(u64::MAX), align)
}

fn item_need(t: &Topology, item: Item) -> (u64, u64) {
    match item {
        Item::Bar { dev, bar } => {
            let s = t.devices[dev].bars[bar].size;
            (s, s)
        }
        Item::Window { dev } => window_need(t, dev),
    }
}

/// The items directly below `parent` (a bridge index, or `None` for the root
/// bus of `segment`), largest alignment first.
fn items_below(t: &Topology, parent: Option<usize>, segment: u16) -> Vec<Item, 128> {
    let mut v: Vec<Item, 128> = Vec::new();
    for (di, d) in t.devices.iter().enumerate() {
        if d.parent.map(usize::from) != parent || d.segment != segment {
            continue;
        }
        for (bi, b) in d.bars.iter().enumerate() {
            if b.kind != BarKind::Io && b.size.is_power_of_two() {
                let _ = v.push(Item::Bar { dev: di, bar: bi });
            }
        }
        if d.header_type == 1 && d.buses.is_some() {
            let _ = v.push(Item::Window { dev: di });
        }
    }
    v.sort_unstable_by_key(|&i| {
        let (size, align) = item_need(t, i);
        core::cmp::Reverse((align, size))
    });
    v
}

/// Give `item` the range at `base` (bus address; `cpu_offset` = cpu - bus) and,
/// for a bridge, lay its subtree out inside the window.
fn place(t: &mut Topology, item: Item, base: u64, cpu_offset: u64) {
    match item {
        Item::Bar { dev, bar } => {
            let b = &mut t.devices[dev].bars[bar];
            b.pci_addr = Some(base);
            b.cpu_addr = Some(base.wrapping_add(cpu_offset));
        }
        Item::Window { dev } => {
            let (size, _) = window_need(t, dev);
            if size == 0 {
                return;
            }
            t.devices[dev].window = Some((base, size));
            let mut next = base;
            for child in items_below(t, Some(dev), t.devices[dev].segment) {
                let (size, _) = item_need(t, child);
                place(t, child, next, cpu_offset);
                next += size;
            }
        }
    }
}

/// Bump allocator over one host-bridge window.
struct WindowAlloc {
    w: PciWindow,
    next: u64,
}

impl WindowAlloc {
    fn alloc(&mut self, size: u64, align: u64, below_4g: bool) -> Option<u64> {
        let start = align_up(self.next, align)?;
        let end = start.checked_add(size)?;
        if end > self.w.pci_base + self.w.size || (below_4g && end > 1 << 32) {
            return None;
        }
        self.next = end;
        Some(start)
    }
}

/// Lay out every memory BAR and bridge window in the host-bridge windows:
/// root-bus items largest alignment first, 32-bit windows first so BARs stay
/// below 4 GiB where possible, each bridge's subtree packed inside its window.
/// Bridge windows are 32-bit, non-prefetchable; 64-bit BARs behind a bridge
/// therefore land below 4 GiB too. Only computes: [`program`] writes the
/// hardware.
pub fn plan(platform: &Platform, t: &mut Topology) {
    let mut allocs: Vec<WindowAlloc, 8> = Vec::new();
    for kind in [WindowKind::Mem32, WindowKind::Mem64] {
        for w in platform.windows.iter().filter(|w| w.kind == kind) {
            let _ = allocs.push(WindowAlloc {
                w: *w,
                next: w.pci_base,
            });
        }
    }
    let mut segments: Vec<u16, 4> = Vec::new();
    for d in &t.devices {
        if !segments.contains(&d.segment) {
            let _ = segments.push(d.segment);
        }
    }
    for seg in segments {
        for item in items_below(t, None, seg) {
            let (size, align) = item_need(t, item);
            if size == 0 {
                continue;
            }
            let below_4g = match item {
                Item::Bar { dev, bar } => t.devices[dev].bars[bar].kind == BarKind::Mem32,
                Item::Window { .. } => true,
            };
            let got = allocs
                .iter_mut()
                .filter(|a| a.w.segment == seg)
                .find_map(|a| {
                    a.alloc(size, align, below_4g)
                        .map(|base| (base, a.w.cpu_base.wrapping_sub(a.w.pci_base)))
                });
            match (got, item) {
                (Some((base, off)), _) => place(t, item, base, off),
                (None, Item::Bar { dev, bar }) => {
                    let d = &t.devices[dev];
                    let _ = t.errors.push(PciError::NoWindowFor {
                        bdf: d.bdf,
                        index: d.bars[bar].index,
                        size,
                    });
                }
                (None, Item::Window { dev }) => {
                    let _ = t.errors.push(PciError::NoWindowForBridge {
                        bdf: t.devices[dev].bdf,
                        size,
                    });
                }
            }
        }
    }
}

/// Write the planned layout: BARs, bridge windows (I/O and prefetchable windows
/// closed), memory decode on functions whose BARs all got an address, and
/// memory decode plus upstream forwarding (bus master) on bridges with a
/// window. Endpoints' bus mastering stays off until a driver asks for it.
pub fn program(t: &Topology) {
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
        if d.header_type == 1 {
            // Closed windows: base above limit.
            cfg.write32(
                reg::IO_BASE_LIMIT,
                cfg.read32(reg::IO_BASE_LIMIT) & 0xffff_0000 | 0x00f0,
            );
            cfg.write32(reg::PREF_BASE_LIMIT, 0x0000_fff0);
            cfg.write32(reg::PREF_BASE_UPPER, 0);
            cfg.write32(reg::PREF_LIMIT_UPPER, 0);
            match d.window {
                Some((base, size)) => {
                    let limit = base + size - 1;
                    cfg.write32(
                        reg::MEM_BASE_LIMIT,
                        ((limit >> 16) as u32 & 0xfff0) << 16 | ((base >> 16) as u32 & 0xfff0),
                    );
                    cfg.set_command(cfg.command() | reg::CMD_MEM | reg::CMD_BUS_MASTER);
                }
                None => cfg.write32(reg::MEM_BASE_LIMIT, 0x0000_fff0),
            }
            continue;
        }
        if any && all {
            cfg.set_command(cfg.command() | reg::CMD_MEM);
        }
    }
}

/// Enumerate, lay out and program.
pub fn bring_up(platform: &Platform) -> Topology {
    let mut t = enumerate(platform);
    plan(platform, &mut t);
    program(&t);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{DeviceScope, IommuUnit, RidMap};

    fn mem32(index: u8, size: u64) -> Bar {
        Bar {
            index,
            kind: BarKind::Mem32,
            prefetchable: false,
            size,
            pci_addr: None,
            cpu_addr: None,
        }
    }

    fn dev(bus: u8, d: u8, header_type: u8, parent: Option<u8>, bars: &[Bar]) -> PciDevice {
        PciDevice {
            segment: 0,
            bdf: Bdf {
                bus,
                dev: d,
                func: 0,
            },
            vendor: 0x1234,
            device: 0x11e8,
            class: if header_type == 1 { 0x060400 } else { 0xff00 },
            header_type,
            config: 0,
            bars: bars.iter().copied().collect(),
            buses: None,
            parent,
            window: None,
        }
    }

    /// Root bus: endpoint A (1 MiB + 4 KiB), bridge B (bus 1) with endpoint C
    /// (2 MiB) and bridge D (bus 2) with endpoint E (16 KiB).
    fn tree() -> Topology {
        let mut t = Topology::default();
        let mut b = dev(0, 2, 1, None, &[mem32(0, 0x1000)]);
        b.buses = Some((1, 2));
        let mut d = dev(1, 1, 1, Some(1), &[]);
        d.buses = Some((2, 2));
        for x in [
            dev(0, 1, 0, None, &[mem32(0, 1 << 20), mem32(1, 0x1000)]),
            b,
            dev(1, 0, 0, Some(1), &[mem32(0, 2 << 20)]),
            d,
            dev(2, 0, 0, Some(3), &[mem32(0, 0x4000)]),
        ] {
            t.devices.push(x).unwrap();
        }
        t
    }

    fn platform_with_window(base: u64, size: u64) -> Platform {
        let mut p = Platform::default();
        p.windows
            .push(PciWindow {
                kind: WindowKind::Mem32,
                prefetchable: false,
                cpu_base: base + 0x1000_0000,
                pci_base: base,
                size,
                segment: 0,
            })
            .unwrap();
        p
    }

    fn bar_range(t: &Topology, d: usize, b: usize) -> (u64, u64) {
        let bar = &t.devices[d].bars[b];
        let a = bar.pci_addr.expect("assigned");
        (a, a + bar.size)
    }

    #[test]
    fn bridge_windows_hold_their_subtree_and_nothing_overlaps() {
        let mut t = tree();
        plan(&platform_with_window(0x4000_0000, 0x1000_0000), &mut t);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        let mut ranges = vec![];
        for (di, d) in t.devices.iter().enumerate() {
            for (bi, b) in d.bars.iter().enumerate() {
                let (s, e) = bar_range(&t, di, bi);
                assert_eq!(s % b.size, 0, "BAR aligned to its size");
                assert_eq!(b.cpu_addr, Some(s + 0x1000_0000), "cpu = bus + offset");
                // Inside every bridge window above it.
                let mut p = d.parent;
                while let Some(pi) = p {
                    let (wb, ws) = t.devices[pi as usize].window.expect("bridge has a window");
                    assert!(
                        s >= wb && e <= wb + ws,
                        "{:?} BAR outside parent window",
                        d.bdf
                    );
                    p = t.devices[pi as usize].parent;
                }
                ranges.push((s, e));
            }
        }
        // Bridge windows: 1 MiB granular, nested, and disjoint from root-bus BARs.
        let (bw, bs) = t.devices[1].window.unwrap();
        let (dw, ds) = t.devices[3].window.unwrap();
        assert_eq!(
            (
                bw % (1 << 20),
                bs % (1 << 20),
                dw % (1 << 20),
                ds % (1 << 20)
            ),
            (0, 0, 0, 0)
        );
        assert!(dw >= bw && dw + ds <= bw + bs);
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlap {:x?}", w);
        }
        // Root-bus BARs stay outside bridge B's window.
        for (bi, _) in t.devices[0].bars.iter().enumerate() {
            let (s, e) = bar_range(&t, 0, bi);
            assert!(e <= bw || s >= bw + bs);
        }
    }

    #[test]
    fn too_small_window_is_a_typed_error_not_an_overlap() {
        let mut t = tree();
        plan(&platform_with_window(0x4000_0000, 0x20_0000), &mut t);
        assert!(t.errors.iter().any(|e| matches!(
            e,
            PciError::NoWindowForBridge { .. } | PciError::NoWindowFor { .. }
        )));
        // Whatever was placed still fits in the window.
        for d in &t.devices {
            for b in &d.bars {
                if let Some(a) = b.pci_addr {
                    assert!(a >= 0x4000_0000 && a + b.size <= 0x4020_0000);
                }
            }
        }
    }

    #[test]
    fn bar_of_64_bits_may_go_above_4g_but_32_bit_ones_may_not() {
        let mut t = Topology::default();
        let mut big = mem32(0, 1 << 30);
        big.kind = BarKind::Mem64;
        t.devices.push(dev(0, 1, 0, None, &[big])).unwrap();
        t.devices
            .push(dev(0, 2, 0, None, &[mem32(0, 1 << 30)]))
            .unwrap();
        let mut p = Platform::default();
        p.windows
            .push(PciWindow {
                kind: WindowKind::Mem64,
                prefetchable: false,
                cpu_base: 1 << 40,
                pci_base: 1 << 40,
                size: 1 << 36,
                segment: 0,
            })
            .unwrap();
        plan(&p, &mut t);
        assert_eq!(t.devices[0].bars[0].pci_addr, Some(1 << 40));
        assert_eq!(t.devices[1].bars[0].pci_addr, None);
        assert!(matches!(
            t.errors[0],
            PciError::NoWindowFor { index: 0, .. }
        ));
    }

    fn vtd_unit(include_all: bool, scopes: &[DeviceScope]) -> IommuUnit {
        IommuUnit {
            kind: IommuKind::Vtd,
            base: 0xfed9_0000,
            size: 0x1000,
            segment: 0,
            include_all,
            scopes: scopes.iter().cloned().collect(),
            phandle: 0,
        }
    }

    fn scope(kind: ScopeKind, start_bus: u8, path: &[(u8, u8)]) -> DeviceScope {
        DeviceScope {
            kind,
            enumeration_id: 0,
            start_bus,
            path: path.iter().copied().collect(),
        }
    }

    #[test]
    fn dmar_scopes_resolve_through_bridges_before_include_all() {
        let t = tree();
        let mut p = Platform::default();
        // Unit 0 covers everything else; unit 1 names endpoint E by a path
        // through bridges B (0:2.0) and D (1:1.0); unit 2 the sub-hierarchy below B.
        p.iommus.push(vtd_unit(true, &[])).unwrap();
        p.iommus
            .push(vtd_unit(
                false,
                &[scope(ScopeKind::Endpoint, 0, &[(2, 0), (1, 0), (0, 0)])],
            ))
            .unwrap();
        p.iommus
            .push(vtd_unit(
                false,
                &[scope(ScopeKind::SubHierarchy, 0, &[(2, 0)])],
            ))
            .unwrap();
        let cov = |i: usize| coverage(&p, &t, &t.devices[i]).map(|c| (c.iommu, c.stream_id));
        assert_eq!(cov(0), Some((0, 0x0008)), "A: include-all unit");
        assert_eq!(cov(4), Some((1, 0x0200)), "E: explicit endpoint path");
        assert_eq!(cov(2), Some((2, 0x0100)), "C: below B's sub-hierarchy");
        assert_eq!(
            cov(1),
            Some((2, 0x0010)),
            "B itself: its sub-hierarchy scope"
        );
    }

    #[test]
    fn no_include_all_and_no_scope_means_uncovered() {
        let t = tree();
        let mut p = Platform::default();
        p.iommus
            .push(vtd_unit(false, &[scope(ScopeKind::Endpoint, 0, &[(1, 0)])]))
            .unwrap();
        assert!(coverage(&p, &t, &t.devices[0]).is_some());
        assert!(coverage(&p, &t, &t.devices[2]).is_none());
        // A path through a function that is not a bridge resolves to nothing.
        let mut p = Platform::default();
        p.iommus
            .push(vtd_unit(
                false,
                &[scope(ScopeKind::Endpoint, 0, &[(1, 0), (0, 0)])],
            ))
            .unwrap();
        assert!(t.devices.iter().all(|d| coverage(&p, &t, d).is_none()));
    }

    #[test]
    fn iommu_map_translates_rids_to_stream_ids() {
        let t = tree();
        let mut p = Platform::default();
        p.iommus
            .push(IommuUnit {
                kind: IommuKind::SmmuV3,
                base: 0x905_0000,
                size: 0x2_0000,
                segment: 0,
                include_all: false,
                scopes: Vec::new(),
                phandle: 5,
            })
            .unwrap();
        // RIDs 0x100..0x300 map to StreamIDs from 0x8000; nothing else is mapped.
        p.rid_maps
            .push(RidMap {
                segment: 0,
                rid_base: 0x100,
                iommu: 0,
                sid_base: 0x8000,
                len: 0x200,
            })
            .unwrap();
        assert_eq!(
            coverage(&p, &t, &t.devices[2]).map(|c| c.stream_id),
            Some(0x8000)
        );
        assert_eq!(
            coverage(&p, &t, &t.devices[4]).map(|c| c.stream_id),
            Some(0x8100)
        );
        assert_eq!(coverage(&p, &t, &t.devices[0]), None);
    }
}
