//! The virt board's discovery: memory, PCI host bridges, SMMUs and
//! `iommu-map` read from a checked tree into a [`Platform`].

use heapless::Vec;

use super::{Error, Fdt, Node, be32, cells_value, entry_len, skip_cells};
use crate::platform::{Ecam, IommuKind, IommuUnit, PciWindow, Platform, RidMap, WindowKind};

fn push<T, const N: usize>(v: &mut Vec<T, N>, item: T, what: &'static str) -> Result<(), Error> {
    v.push(item).map_err(|_| Error::TooMany(what))
}

/// PCI `ranges` space code (phys.hi bits 24-25).
const PCI_SPACE_IO: u32 = 1;
const PCI_SPACE_MEM32: u32 = 2;
const PCI_SPACE_MEM64: u32 = 3;
const PCI_PREFETCHABLE: u32 = 1 << 30;

/// Reads what the shared code needs from the tree:
///
/// - `cmdline` from `/chosen/bootargs` (empty if absent);
/// - `ram` from the `reg` of every `device_type = "memory"` node, as the
///   tree gives it (`/memreserve/` entries and `/reserved-memory` are not
///   subtracted; QEMU virt has neither);
/// - `ecam` and `windows` from every "pci-host-ecam-generic" host bridge
///   (`reg` = ECAM of the first bus of `bus-range`; the bus range is clamped
///   to what the ECAM `reg` covers, as Linux does; segment from
///   `linux,pci-domain`, else 0);
/// - `iommus` from every "arm,smmu-v3" node (its segment is that of the
///   first host bridge whose `iommu-map` names it, else 0);
/// - `rid_maps` from each host bridge's `iommu-map`. An `iommu-map-mask` that
///   keeps all 16 RID bits changes nothing and is accepted; any other mask
///   would make the map non-linear (RIDs that differ only in masked-out bits
///   share a StreamID), which [`RidMap`] cannot express, so it is reported as
///   [`Error::Unsupported`].
///
/// Nodes with `status` other than "okay" are ignored. All addresses are
/// translated to CPU physical addresses through the ancestors' `ranges`.
pub fn platform(fdt: &Fdt<'_>, board: &'static str) -> Result<Platform, Error> {
    let mut p = Platform {
        board,
        ..Platform::default()
    };
    let mut bridges: Vec<(Node<'_>, u16), 4> = Vec::new();

    for node in fdt.nodes() {
        let node = node?;
        if node.depth() == 1 && node.name() == "chosen" {
            if let Some(args) = node.property("bootargs") {
                let args = args.split(|&b| b == 0).next().unwrap_or(&[]);
                let args =
                    core::str::from_utf8(args).map_err(|_| Error::BadProperty("bootargs"))?;
                p.cmdline.clear();
                p.cmdline
                    .push_str(args)
                    .map_err(|_| Error::TooMany("cmdline"))?;
            }
        }
        if !node.is_enabled() {
            continue;
        }
        if node.is_device_type("memory") {
            for r in node.reg_regions()? {
                let r = r?;
                if r.size != 0 {
                    push(&mut p.ram, r, "ram")?;
                }
            }
        }
        if node.is_compatible("arm,smmu-v3") {
            let regs = node
                .reg_regions()?
                .next()
                .ok_or(Error::Missing("smmu reg"))??;
            let unit = IommuUnit {
                kind: IommuKind::SmmuV3,
                base: regs.base,
                size: regs.size,
                segment: 0,
                include_all: false,
                scopes: Vec::new(),
                phandle: node.phandle().unwrap_or(0),
            };
            push(&mut p.iommus, unit, "iommus")?;
        }
        if node.is_compatible("pci-host-ecam-generic") {
            let segment = host_bridge(&node, &mut p)?;
            push(&mut bridges, (node, segment), "ecam")?;
        }
    }

    // iommu-map after the walk: it may name an SMMU that comes later in the tree.
    for (bridge, segment) in &bridges {
        iommu_map(bridge, *segment, &mut p)?;
    }
    Ok(p)
}

/// ECAM and windows of one generic host bridge; returns its segment.
fn host_bridge(node: &Node<'_>, p: &mut Platform) -> Result<u16, Error> {
    let segment = match node.property_u32("linux,pci-domain")? {
        None => 0,
        Some(d) => u16::try_from(d).map_err(|_| Error::BadProperty("linux,pci-domain"))?,
    };
    let ecam = node
        .reg_regions()?
        .next()
        .ok_or(Error::Missing("pci host bridge reg"))??;
    let (bus_start, mut bus_end) = match node.property("bus-range") {
        None => (0u32, 255u32),
        Some(v) if v.len() == 8 => (be32(v, 0).unwrap_or(0), be32(v, 4).unwrap_or(0)),
        Some(_) => return Err(Error::BadProperty("bus-range")),
    };
    if bus_start > bus_end || bus_end > 255 {
        return Err(Error::BadProperty("bus-range"));
    }
    let buses = ecam.size >> 20;
    if buses == 0 {
        return Err(Error::BadProperty("reg"));
    }
    bus_end = bus_end.min(bus_start + (buses.min(256) as u32) - 1);
    push(
        &mut p.ecam,
        Ecam {
            base: ecam.base,
            segment,
            bus_start: bus_start as u8,
            bus_end: bus_end as u8,
        },
        "ecam",
    )?;

    let cells = node.cells();
    let parent = node.parent_cells();
    if cells.address != 3 {
        return Err(Error::BadProperty("#address-cells"));
    }
    if cells.size > 2 || parent.address > 2 {
        return Err(Error::BadProperty("ranges"));
    }
    let ranges = node.property("ranges").unwrap_or(&[]);
    let entry = entry_len(&[(3, 3), (parent.address, 2), (cells.size, 2)])
        .ok_or(Error::BadProperty("ranges"))?;
    if !ranges.len().is_multiple_of(entry) {
        return Err(Error::BadProperty("ranges"));
    }
    for e in ranges.chunks_exact(entry) {
        let hi = be32(e, 0).unwrap_or(0);
        let pci_base = cells_value(skip_cells(e, 1), 2, "ranges")?;
        let cpu_side = skip_cells(e, 3);
        let cpu = cells_value(cpu_side, parent.address, "ranges")?;
        let size = cells_value(skip_cells(cpu_side, parent.address), cells.size, "ranges")?;
        let kind = match (hi >> 24) & 3 {
            PCI_SPACE_IO => WindowKind::Io,
            PCI_SPACE_MEM32 => WindowKind::Mem32,
            PCI_SPACE_MEM64 => WindowKind::Mem64,
            _ => continue, // configuration space: not a window
        };
        let cpu_base = node.translate(cpu)?;
        // The window must fit the address space on the PCI and the CPU side.
        pci_base
            .checked_add(size)
            .and(cpu_base.checked_add(size))
            .ok_or(Error::Overflow("ranges"))?;
        let window = PciWindow {
            kind,
            prefetchable: hi & PCI_PREFETCHABLE != 0,
            cpu_base,
            pci_base,
            size,
            segment,
        };
        push(&mut p.windows, window, "windows")?;
    }
    Ok(segment)
}

/// The `iommu-map` of one host bridge.
fn iommu_map(bridge: &Node<'_>, segment: u16, p: &mut Platform) -> Result<(), Error> {
    let Some(map) = bridge.property("iommu-map") else {
        return Ok(());
    };
    if let Some(mask) = bridge.property_u32("iommu-map-mask")? {
        if mask & 0xffff != 0xffff {
            return Err(Error::Unsupported("iommu-map-mask"));
        }
    }
    if !map.len().is_multiple_of(16) {
        return Err(Error::BadProperty("iommu-map"));
    }
    for e in map.chunks_exact(16) {
        let w = |i: usize| be32(e, i * 4).unwrap_or(0);
        let (rid_base, phandle, sid_base, len) = (w(0), w(1), w(2), w(3));
        // RIDs are 16 bits; the StreamIDs sid_base..sid_base+len must be
        // 32-bit values (a consumer adds the RID offset to sid_base).
        if u64::from(rid_base) + u64::from(len) > 0x1_0000
            || u64::from(sid_base) + u64::from(len) > 0x1_0000_0000
        {
            return Err(Error::BadProperty("iommu-map"));
        }
        let iommu = p
            .iommus
            .iter()
            .position(|u| u.phandle != 0 && u.phandle == phandle)
            .ok_or(Error::UnknownPhandle(phandle))?;
        if p.rid_maps
            .iter()
            .all(|m| p.iommus[m.iommu].phandle != phandle)
        {
            p.iommus[iommu].segment = segment;
        }
        let m = RidMap {
            segment,
            rid_base,
            iommu,
            sid_base,
            len,
        };
        push(&mut p.rid_maps, m, "rid_maps")?;
    }
    Ok(())
}

/// One past the highest CPU physical address the tree describes: every
/// translatable `reg` entry and the parent side of every `ranges` entry
/// (which covers PCI windows). The boards map at least this much.
/// Entries that cannot be decoded or translated (CPU ids, PCI child nodes)
/// are skipped; structure errors are returned.
pub fn address_limit(fdt: &Fdt<'_>) -> Result<u64, Error> {
    let mut top = 0u64;
    for node in fdt.nodes() {
        let node = node?;
        if node.depth() == 0 {
            continue;
        }
        if node.parent_cells().size != 0 {
            if let Ok(regs) = node.reg_regions() {
                for r in regs.flatten() {
                    top = top.max(r.end());
                }
            }
        }
        let Some(ranges) = node.property("ranges") else {
            continue;
        };
        let (ca, pa, sz) = (
            node.cells().address,
            node.parent_cells().address,
            node.cells().size,
        );
        let Some(entry) = entry_len(&[(ca, 4), (pa, 2), (sz, 2)]) else {
            continue;
        };
        if !ranges.len().is_multiple_of(entry) {
            continue;
        }
        for e in ranges.chunks_exact(entry) {
            let parent_side = skip_cells(e, ca);
            let parent = cells_value(parent_side, pa, "ranges");
            let size = cells_value(skip_cells(parent_side, pa), sz, "ranges");
            if let (Ok(parent), Ok(size)) = (parent, size) {
                // An entry that runs past 2^64 is skipped, not saturated.
                if let Some(end) = node
                    .translate(parent)
                    .ok()
                    .and_then(|c| c.checked_add(size))
                {
                    top = top.max(end);
                }
            }
        }
    }
    Ok(top)
}
