//! `iommu_board::fdt`: the device-tree reader and the virt board's
//! discovery, on an arbitrary blob (a DTB is what the boot loader hands the
//! board; nothing in it is trusted).
//!
//! Asserts: no panic. When the header is accepted: `totalsize` fits the
//! blob; every node's cells equal its `#address-cells`/`#size-cells` read
//! here (2 and 1 when absent); its `reg` entries, regions and the
//! translation of every `reg` address equal a model written here in u128
//! from the devicetree specification and the readers' doc comments (a
//! region or a `ranges` entry reaching 2^64 is `Overflow`, never a wrapped
//! address); `find_phandle` finds a node with that phandle. When discovery
//! succeeds: RAM, SMMUs and PCI windows equal the model's (translated
//! through the ancestors' `ranges` independently), no region or window
//! reaches 2^64 on either side, ECAM windows fit their `reg`, `iommu-map`
//! entries fit 16-bit RIDs and 32-bit StreamIDs and name a listed SMMU; a
//! structure error in the walk makes discovery and `address_limit` fail;
//! `address_limit` is at least the end of every region it covers.

#![no_main]

use iommu_board::fdt::{Error, Fdt, Node, address_limit, platform};
use iommu_board::platform::{IommuKind, PciWindow, Region, WindowKind};
use iommu_fuzz::firmware::fdt as input;
use libfuzzer_sys::fuzz_target;

/// 2^64: the end (exclusive) of every region or window lies below it, so
/// that `base + size` is a `u64`.
const TOP: u128 = 1 << 64;

/// Big-endian cell `i` of `b`.
fn cell(b: &[u8], i: usize) -> Option<u32> {
    let c = b.get(i * 4..i * 4 + 4)?;
    Some(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// Cells `at..at + n` of `b` as one number (`n` at most 4; present).
fn value(b: &[u8], at: usize, n: u32) -> u128 {
    (0..n as usize).fold(0u128, |v, i| {
        (v << 32) | u128::from(cell(b, at + i).unwrap())
    })
}

/// A node's own `#address-cells` and `#size-cells`, read from its properties.
fn own_cells(n: &Node<'_>) -> (u32, u32) {
    let get = |name: &str, default: u32| {
        n.property(name)
            .map(|v| cell(v, 0).expect("a handed-out node's cell counts were checked"))
            .unwrap_or(default)
    };
    (get("#address-cells", 2), get("#size-cells", 1))
}

/// The model of `Node::reg`: entries of (address cells, size cells), each
/// count at most 4 and not both 0; a value of 2^64 or more is
/// `BadProperty("reg")`, an entry whose end reaches 2^64 is `Overflow("reg")`.
type Reg = Result<Vec<Result<(u64, u64), Error>>, Error>;
fn model_reg(n: &Node<'_>, (a, s): (u32, u32)) -> Reg {
    let bad = Error::BadProperty("reg");
    let v = n.property("reg").unwrap_or(&[]);
    if a > 4 || s > 4 || a + s == 0 || !v.len().is_multiple_of(4 * (a + s) as usize) {
        return Err(bad);
    }
    let k = (a + s) as usize;
    Ok((0..v.len() / (4 * k))
        .map(|e| {
            let (addr, size) = (value(v, e * k, a), value(v, e * k + a as usize, s));
            if addr >= TOP || size >= TOP {
                Err(bad)
            } else if addr + size >= TOP {
                Err(Error::Overflow("reg"))
            } else {
                Ok((addr as u64, size as u64))
            }
        })
        .collect())
}

/// The model of `Node::translate` for the last node of `path` (the root
/// first): up through each ancestor bus's `ranges` (absent:
/// `Untranslatable`; empty: identity; entries of the bus's address cells,
/// its parent's address cells and its size cells, each at most 2 and not
/// all 0). The first entry covering the address translates it, and must
/// itself fit below 2^64 on both sides.
fn model_translate(path: &[Node<'_>], addr: u64) -> Result<u64, Error> {
    let mut addr = u128::from(addr);
    for d in (1..path.len().saturating_sub(1)).rev() {
        let bus = &path[d];
        let (ca, sz) = own_cells(bus);
        let pa = own_cells(&path[d - 1]).0;
        let ranges = bus.property("ranges").ok_or(Error::Untranslatable)?;
        if ranges.is_empty() {
            continue;
        }
        if ca > 2 || pa > 2 || sz > 2 || ca + pa + sz == 0 {
            return Err(Error::Untranslatable);
        }
        let k = (ca + pa + sz) as usize;
        if !ranges.len().is_multiple_of(4 * k) {
            return Err(Error::Untranslatable);
        }
        let mut hit = None;
        for e in 0..ranges.len() / (4 * k) {
            let child = value(ranges, e * k, ca);
            let parent = value(ranges, e * k + ca as usize, pa);
            let size = value(ranges, e * k + (ca + pa) as usize, sz);
            if addr >= child && addr < child + size {
                if child + size >= TOP || parent + size >= TOP {
                    return Err(Error::Overflow("ranges"));
                }
                hit = Some(parent + (addr - child));
                break;
            }
        }
        addr = hit.ok_or(Error::Untranslatable)?;
    }
    assert!(addr < TOP);
    Ok(addr as u64)
}

/// The model of `Node::reg_regions`.
fn model_regions(path: &[Node<'_>], reg: &Reg) -> Result<Vec<Result<Region, Error>>, Error> {
    let entries = reg.as_ref().map_err(|e| *e)?;
    Ok(entries
        .iter()
        .map(|r| {
            let (addr, size) = (*r)?;
            let base = model_translate(path, addr)?;
            if u128::from(base) + u128::from(size) >= TOP {
                return Err(Error::Overflow("reg"));
            }
            Ok(Region { base, size })
        })
        .collect())
}

/// The model of a generic host bridge's windows (`None`: discovery must
/// fail on this bridge).
fn model_windows(path: &[Node<'_>], segment: u16) -> Option<Vec<PciWindow>> {
    let n = path.last()?;
    let (ca, sz) = own_cells(n);
    // The root's parent cells are the defaults.
    let pa = match path.len() {
        0 | 1 => 2,
        l => own_cells(&path[l - 2]).0,
    };
    if ca != 3 || sz > 2 || pa > 2 {
        return None;
    }
    let ranges = n.property("ranges").unwrap_or(&[]);
    let k = (3 + pa + sz) as usize;
    if !ranges.len().is_multiple_of(4 * k) {
        return None;
    }
    let mut out = Vec::new();
    for e in 0..ranges.len() / (4 * k) {
        let hi = cell(ranges, e * k).unwrap();
        let pci = value(ranges, e * k + 1, 2);
        let cpu = value(ranges, e * k + 3, pa) as u64;
        let size = value(ranges, e * k + 3 + pa as usize, sz);
        let kind = match (hi >> 24) & 3 {
            1 => WindowKind::Io,
            2 => WindowKind::Mem32,
            3 => WindowKind::Mem64,
            _ => continue,
        };
        // The bridge's `ranges` parent side is in the bridge's parent's space.
        let cpu_base = model_translate(path, cpu).ok()?;
        if pci + size >= TOP || u128::from(cpu_base) + size >= TOP {
            return None;
        }
        out.push(PciWindow {
            kind,
            prefetchable: hi & (1 << 30) != 0,
            cpu_base,
            pci_base: pci as u64,
            size: size as u64,
            segment,
        });
    }
    Some(out)
}

/// What discovery must find, as far as the model goes.
#[derive(Default)]
struct Expected {
    ram: Vec<Region>,
    smmus: Vec<Region>,
    windows: Vec<PciWindow>,
    /// Ends of the regions `address_limit` covers.
    ends: Vec<u128>,
    /// Some node's data makes discovery fail for sure.
    fails: bool,
}

fuzz_target!(|data: &[u8]| {
    let blob = input::decode(data);
    let Ok(fdt) = Fdt::new(&blob) else {
        return;
    };
    let total = Fdt::total_size(&blob).expect("an accepted header has a size");
    assert!(total <= blob.len());

    let mut path: Vec<Node<'_>> = Vec::new();
    let mut exp = Expected::default();
    let mut walk_error = None;
    let mut phandles = Vec::new();
    for n in fdt.nodes() {
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                walk_error = Some(e);
                break;
            }
        };
        assert!(n.depth() <= path.len(), "depth-first order");
        path.truncate(n.depth());
        path.push(n);
        let own = own_cells(&n);
        assert_eq!((n.cells().address, n.cells().size), own);
        let parent = if n.depth() == 0 {
            (2, 1)
        } else {
            own_cells(&path[n.depth() - 1])
        };
        assert_eq!((n.parent_cells().address, n.parent_cells().size), parent);

        let reg = model_reg(&n, parent);
        assert_eq!(n.reg().map(|r| r.collect::<Vec<_>>()), reg);
        let regions = model_regions(&path, &reg);
        assert_eq!(n.reg_regions().map(|r| r.collect::<Vec<_>>()), regions);
        if let Ok(entries) = &reg {
            for (addr, _) in entries.iter().flatten() {
                assert_eq!(n.translate(*addr), model_translate(&path, *addr));
            }
        }
        for a in [0, u64::MAX] {
            assert_eq!(n.translate(a), model_translate(&path, a));
        }
        // address_limit reads the regions of every node but the root whose
        // parent gives sizes.
        if let (true, Ok(rs)) = (n.depth() > 0 && parent.1 != 0, &regions) {
            let ends = rs.iter().flatten();
            exp.ends
                .extend(ends.map(|r| u128::from(r.base) + u128::from(r.size)));
        }
        if let Some(ph) = n.phandle() {
            phandles.push(ph);
        }

        if !n.is_enabled() {
            continue;
        }
        let ok_regions = regions
            .as_ref()
            .ok()
            .and_then(|rs| rs.iter().copied().collect::<Result<Vec<_>, _>>().ok());
        if n.is_device_type("memory") {
            match &ok_regions {
                Some(rs) => exp.ram.extend(rs.iter().filter(|r| r.size != 0)),
                None => exp.fails = true,
            }
        }
        if n.is_compatible("arm,smmu-v3") {
            // Discovery reads the first region only.
            match regions.as_ref().ok().and_then(|rs| rs.first()) {
                Some(Ok(r)) => exp.smmus.push(*r),
                _ => exp.fails = true,
            }
        }
        if n.is_compatible("pci-host-ecam-generic") {
            let segment = match n.property_u32("linux,pci-domain") {
                Ok(None) => Some(0),
                Ok(Some(d)) => u16::try_from(d).ok(),
                Err(_) => None,
            };
            match segment.and_then(|s| model_windows(&path, s)) {
                Some(w) => exp.windows.extend(w),
                None => exp.fails = true,
            }
        }
    }

    if walk_error.is_none() {
        for ph in phandles {
            let found = fdt.find_phandle(ph).expect("the walk succeeded");
            assert_eq!(
                found.expect("a phandle seen in the walk").phandle(),
                Some(ph)
            );
        }
    }

    let limit = address_limit(&fdt);
    match walk_error {
        Some(e) => assert_eq!(limit, Err(e)),
        None => {
            let top = limit.expect("address_limit fails only on structure errors");
            for end in &exp.ends {
                assert!(
                    u128::from(top) >= *end,
                    "address_limit {top:#x} below {end:#x}"
                );
            }
        }
    }

    let Ok(p) = platform(&fdt, "fuzz") else {
        return;
    };
    assert!(
        walk_error.is_none() && !exp.fails,
        "discovery accepted a bad tree"
    );
    assert_eq!(p.ram.as_slice(), exp.ram.as_slice());
    let smmus: Vec<Region> = p
        .iommus
        .iter()
        .map(|u| {
            assert_eq!(u.kind, IommuKind::SmmuV3);
            Region {
                base: u.base,
                size: u.size,
            }
        })
        .collect();
    assert_eq!(smmus, exp.smmus);
    assert_eq!(p.windows.as_slice(), exp.windows.as_slice());
    let top = u128::from(limit.expect("the walk succeeded"));
    for w in &p.windows {
        assert!(u128::from(w.pci_base) + u128::from(w.size) < TOP);
        assert!(u128::from(w.cpu_base) + u128::from(w.size) <= top || w.size == 0);
    }
    for e in &p.ecam {
        assert!(e.bus_start <= e.bus_end);
        let buses = u128::from(e.bus_end - e.bus_start) + 1;
        assert!(u128::from(e.base) + (buses << 20) < TOP);
    }
    for m in &p.rid_maps {
        assert!(u64::from(m.rid_base) + u64::from(m.len) <= 0x1_0000);
        assert!(u64::from(m.sid_base) + u64::from(m.len) <= 1 << 32);
        let unit = p.iommus.get(m.iommu).expect("rid map names a listed SMMU");
        assert_ne!(unit.phandle, 0);
    }
});
