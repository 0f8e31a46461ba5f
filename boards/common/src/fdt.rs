//! Flattened device tree (DTB, devicetree specification v0.4 ch. 5) reader and
//! the virt board's discovery: [`platform`] turns a DTB into a [`Platform`].
//!
//! Plain `no_std` code over a byte slice, no allocation. Every multi-byte
//! value is read byte by byte (big-endian), so the reader also works on
//! memory the CPU sees as Device memory (the virt board parses the tree
//! before it turns its MMU on, and the target has strict alignment).
//!
//! Structure errors are found by the node walker ([`Fdt::nodes`]): a node is
//! handed out only after its properties were checked, so property lookups on
//! a [`Node`] cannot fail afterwards.

use crate::platform::{
    Ecam, IommuKind, IommuUnit, PciWindow, Platform, Region, RidMap, WindowKind,
};
use heapless::Vec;

/// The magic number every DTB starts with.
pub const MAGIC: u32 = 0xd00d_feed;
/// Deepest node nesting the walker accepts (the root is depth 0).
pub const MAX_DEPTH: usize = 16;

const HEADER_LEN: usize = 40;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Why a device tree could not be read or did not describe what we need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Error {
    /// The blob does not start with [`MAGIC`] (the value found).
    BadMagic(u32),
    /// The blob is shorter than its header (or a block the header names) says.
    Truncated,
    /// A header format version this reader does not understand (version, last compatible version).
    UnsupportedVersion(u32, u32),
    /// The header's block offsets or sizes are inconsistent.
    BadHeader,
    /// The structure block is malformed at this byte offset into it.
    BadStructure(u32),
    /// A property name offset points outside the strings block or at an unterminated string.
    BadString(u32),
    /// Nodes nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A property has a length or value that does not fit its binding (property name).
    BadProperty(&'static str),
    /// A required node or property is missing (what).
    Missing(&'static str),
    /// More entries than a [`Platform`] table holds (which table).
    TooMany(&'static str),
    /// An `iommu-map` names a phandle that is no enabled "arm,smmu-v3" node.
    UnknownPhandle(u32),
    /// An address cannot be translated to a CPU physical address (an
    /// ancestor bus has no `ranges`, or no entry of it covers the address).
    Untranslatable,
    /// Valid device tree that this reader does not support (property name).
    Unsupported(&'static str),
}

/// Big-endian `u32` at `off`, read byte by byte.
fn be32(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads `cells` big-endian cells as one number (0 cells = 0).
fn cells_value(bytes: &[u8], cells: u32, what: &'static str) -> Result<u64, Error> {
    let mut v: u64 = 0;
    for i in 0..cells as usize {
        let c = be32(bytes, i * 4).ok_or(Error::BadProperty(what))?;
        if v >> 32 != 0 {
            return Err(Error::BadProperty(what));
        }
        v = (v << 32) | u64::from(c);
    }
    Ok(v)
}

fn round_up4(n: usize) -> usize {
    (n + 3) & !3
}

/// `#address-cells` / `#size-cells` of a node: how its children's `reg` and
/// the child side of its `ranges` are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    /// `#address-cells` (2 if absent, as the specification says).
    pub address: u32,
    /// `#size-cells` (1 if absent).
    pub size: u32,
}

impl Default for Cells {
    fn default() -> Self {
        Cells {
            address: 2,
            size: 1,
        }
    }
}

/// A checked device tree blob.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    structs: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Fdt<'a> {
    /// Total size of the blob that starts with `header` (at least the first 8
    /// bytes), so a caller that only has a pointer can build the slice.
    pub fn total_size(header: &[u8]) -> Result<usize, Error> {
        let magic = be32(header, 0).ok_or(Error::Truncated)?;
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let total = be32(header, 4).ok_or(Error::Truncated)? as usize;
        if total < HEADER_LEN {
            return Err(Error::BadHeader);
        }
        Ok(total)
    }

    /// Checks the header and locates the structure and strings blocks.
    /// `blob` may be longer than the tree.
    pub fn new(blob: &'a [u8]) -> Result<Self, Error> {
        let total = Self::total_size(blob)?;
        if blob.len() < HEADER_LEN || blob.len() < total {
            return Err(Error::Truncated);
        }
        let blob = &blob[..total];
        let h = |i: usize| be32(blob, i * 4).unwrap_or(0);
        let (off_struct, off_strings, off_rsvmap) = (h(2) as usize, h(3) as usize, h(4) as usize);
        let (version, last_comp) = (h(5), h(6));
        if version < 16 || last_comp > 17 {
            return Err(Error::UnsupportedVersion(version, last_comp));
        }
        let size_strings = h(8) as usize;
        // Version 16 has no size_dt_struct: the block runs to the strings (or the end).
        let size_struct = if version >= 17 {
            h(9) as usize
        } else if off_strings > off_struct {
            off_strings - off_struct
        } else {
            total - off_struct
        };
        let block = |off: usize, len: usize| -> Result<&'a [u8], Error> {
            let end = off.checked_add(len).ok_or(Error::BadHeader)?;
            if off < HEADER_LEN || end > total {
                return Err(Error::BadHeader);
            }
            Ok(&blob[off..end])
        };
        if !off_struct.is_multiple_of(4) || !off_rsvmap.is_multiple_of(8) || off_rsvmap < HEADER_LEN
        {
            return Err(Error::BadHeader);
        }
        Ok(Fdt {
            structs: block(off_struct, size_struct)?,
            strings: block(off_strings, size_strings)?,
        })
    }

    /// Every node, depth first, starting with the root. Yields an error (and
    /// then stops) where the structure block is malformed.
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes {
            fdt: *self,
            off: 0,
            depth: 0,
            stack: [Ancestor::default(); MAX_DEPTH],
            started: false,
            done: false,
        }
    }

    /// The root node.
    pub fn root(&self) -> Result<Node<'a>, Error> {
        self.nodes().next().unwrap_or(Err(Error::BadStructure(0)))
    }

    /// The node whose `phandle` (or legacy `linux,phandle`) is `phandle`.
    pub fn find_phandle(&self, phandle: u32) -> Result<Option<Node<'a>>, Error> {
        for node in self.nodes() {
            let node = node?;
            if node.phandle() == Some(phandle) {
                return Ok(Some(node));
            }
        }
        Ok(None)
    }

    fn token(&self, off: usize) -> Result<u32, Error> {
        be32(self.structs, off).ok_or(Error::BadStructure(off as u32))
    }

    fn string(&self, nameoff: u32) -> Result<&'a str, Error> {
        let s = self
            .strings
            .get(nameoff as usize..)
            .ok_or(Error::BadString(nameoff))?;
        let len = s
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::BadString(nameoff))?;
        core::str::from_utf8(&s[..len]).map_err(|_| Error::BadString(nameoff))
    }

    /// Reads the property at `off` (just past its FDT_PROP token): (name, value, next offset).
    fn property_at(&self, off: usize) -> Result<(&'a str, &'a [u8], usize), Error> {
        let bad = Error::BadStructure(off as u32);
        let len = be32(self.structs, off).ok_or(bad)? as usize;
        let nameoff = be32(self.structs, off + 4).ok_or(bad)?;
        let start = off + 8;
        let end = start.checked_add(len).ok_or(bad)?;
        let value = self.structs.get(start..end).ok_or(bad)?;
        Ok((self.string(nameoff)?, value, round_up4(end)))
    }

    /// Checks the properties starting at `off` and returns the offset of the
    /// first token after them (a node begin or end), plus the node's cells.
    fn scan_properties(&self, mut off: usize) -> Result<(usize, Cells), Error> {
        let mut cells = Cells::default();
        loop {
            match self.token(off)? {
                FDT_NOP => off += 4,
                FDT_PROP => {
                    let (name, value, next) = self.property_at(off + 4)?;
                    match name {
                        "#address-cells" => {
                            cells.address =
                                be32(value, 0).ok_or(Error::BadProperty("#address-cells"))?
                        }
                        "#size-cells" => {
                            cells.size = be32(value, 0).ok_or(Error::BadProperty("#size-cells"))?
                        }
                        _ => {}
                    }
                    off = next;
                }
                _ => return Ok((off, cells)),
            }
        }
    }

    /// Finds a property of the node whose properties start at `off`.
    fn find_property(&self, mut off: usize, wanted: &str) -> Option<&'a [u8]> {
        loop {
            match self.token(off).ok()? {
                FDT_NOP => off += 4,
                FDT_PROP => {
                    let (name, value, next) = self.property_at(off + 4).ok()?;
                    if name == wanted {
                        return Some(value);
                    }
                    off = next;
                }
                _ => return None,
            }
        }
    }
}

/// What a node keeps of each of its ancestors (to translate addresses).
#[derive(Clone, Copy, Debug, Default)]
struct Ancestor {
    /// Offset of the ancestor's first property in the structure block.
    props: u32,
    /// The ancestor's own cells.
    cells: Cells,
}

/// Depth-first iterator over the nodes of an [`Fdt`].
pub struct Nodes<'a> {
    fdt: Fdt<'a>,
    off: usize,
    depth: usize,
    stack: [Ancestor; MAX_DEPTH],
    started: bool,
    done: bool,
}

impl<'a> Nodes<'a> {
    fn step(&mut self) -> Result<Option<Node<'a>>, Error> {
        loop {
            let at = self.off;
            let bad = Error::BadStructure(at as u32);
            match self.fdt.token(at)? {
                FDT_NOP => self.off += 4,
                FDT_BEGIN_NODE => {
                    // A second root, or nodes after the root closed.
                    if self.started && self.depth == 0 {
                        return Err(bad);
                    }
                    if self.depth >= MAX_DEPTH {
                        return Err(Error::TooDeep);
                    }
                    self.started = true;
                    let rest = self.fdt.structs.get(at + 4..).ok_or(bad)?;
                    let len = rest.iter().position(|&b| b == 0).ok_or(bad)?;
                    let name = core::str::from_utf8(&rest[..len]).map_err(|_| bad)?;
                    let props = round_up4(at + 4 + len + 1);
                    let (after, cells) = self.fdt.scan_properties(props)?;
                    let node = Node {
                        fdt: self.fdt,
                        name,
                        props,
                        depth: self.depth,
                        cells,
                        ancestors: self.stack,
                    };
                    self.stack[self.depth] = Ancestor {
                        props: props as u32,
                        cells,
                    };
                    self.depth += 1;
                    self.off = after;
                    return Ok(Some(node));
                }
                FDT_END_NODE => {
                    if self.depth == 0 {
                        return Err(bad);
                    }
                    self.depth -= 1;
                    self.off += 4;
                }
                FDT_END => {
                    if !self.started || self.depth != 0 {
                        return Err(bad);
                    }
                    return Ok(None);
                }
                // A property here follows a subnode (properties must come
                // first), or the token is unknown.
                _ => return Err(bad),
            }
        }
    }
}

impl<'a> Iterator for Nodes<'a> {
    type Item = Result<Node<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(node)) => Some(Ok(node)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One node of the tree, with what is needed to decode its addresses.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    name: &'a str,
    props: usize,
    depth: usize,
    cells: Cells,
    ancestors: [Ancestor; MAX_DEPTH],
}

impl<'a> Node<'a> {
    /// Full name, with unit address ("memory@40000000"); "" for the root.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Name without the unit address ("memory").
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    /// Nesting depth: 0 for the root.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// This node's own `#address-cells` / `#size-cells` (for its children).
    pub fn cells(&self) -> Cells {
        self.cells
    }

    /// The parent's cells: how this node's `reg` is encoded.
    pub fn parent_cells(&self) -> Cells {
        if self.depth == 0 {
            Cells::default()
        } else {
            self.ancestors[self.depth - 1].cells
        }
    }

    /// Value of property `name`.
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        self.fdt.find_property(self.props, name)
    }

    /// A property holding exactly one cell.
    pub fn property_u32(&self, name: &'static str) -> Result<Option<u32>, Error> {
        match self.property(name) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(be32(v, 0)),
            Some(_) => Err(Error::BadProperty(name)),
        }
    }

    /// A property holding one NUL-terminated string (None if absent or not a string).
    pub fn property_str(&self, name: &str) -> Option<&'a str> {
        let v = self.property(name)?;
        let (last, s) = v.split_last()?;
        if *last != 0 {
            return None;
        }
        core::str::from_utf8(s).ok()
    }

    /// The node's phandle, if it has one.
    pub fn phandle(&self) -> Option<u32> {
        let v = self
            .property("phandle")
            .or_else(|| self.property("linux,phandle"))?;
        if v.len() == 4 { be32(v, 0) } else { None }
    }

    /// Whether `compatible` lists `what`.
    pub fn is_compatible(&self, what: &str) -> bool {
        self.property("compatible").is_some_and(|v| {
            v.split(|&b| b == 0)
                .any(|s| !s.is_empty() && s == what.as_bytes())
        })
    }

    /// `status` absent, "okay" or "ok".
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.property_str("status"),
            None | Some("okay") | Some("ok")
        )
    }

    /// `device_type` is `what`.
    pub fn is_device_type(&self, what: &str) -> bool {
        self.property_str("device_type") == Some(what)
    }

    /// The `reg` entries as (address, size), addresses still in the parent's
    /// bus space (see [`Node::translate`]).
    pub fn reg(&self) -> Result<RegIter<'a>, Error> {
        let c = self.parent_cells();
        let value = self.property("reg").unwrap_or(&[]);
        let entry = ((c.address + c.size) as usize) * 4;
        if c.address > 4 || c.size > 4 || entry == 0 || !value.len().is_multiple_of(entry) {
            return Err(Error::BadProperty("reg"));
        }
        Ok(RegIter {
            value,
            cells: c,
            entry,
        })
    }

    /// The `reg` entries translated to CPU physical addresses.
    pub fn reg_regions(&self) -> Result<impl Iterator<Item = Result<Region, Error>> + 'a, Error> {
        let node = *self;
        Ok(self.reg()?.map(move |r| {
            let (base, size) = r?;
            Ok(Region {
                base: node.translate(base)?,
                size,
            })
        }))
    }

    /// Translates `addr`, an address in this node's parent's bus space (a
    /// `reg` address, or the parent side of this node's `ranges`), through
    /// the `ranges` of every ancestor bus up to the root's (CPU) space.
    pub fn translate(&self, mut addr: u64) -> Result<u64, Error> {
        // Bus at depth d maps its children's space into the space of depth d-1.
        for d in (1..self.depth).rev() {
            let bus = self.ancestors[d];
            let up = self.ancestors[d - 1].cells;
            let ranges = self
                .fdt
                .find_property(bus.props as usize, "ranges")
                .ok_or(Error::Untranslatable)?;
            if ranges.is_empty() {
                continue; // identity
            }
            let (ca, pa, sz) = (bus.cells.address, up.address, bus.cells.size);
            let entry = ((ca + pa + sz) as usize) * 4;
            if ca > 2 || pa > 2 || sz > 2 || entry == 0 || !ranges.len().is_multiple_of(entry) {
                return Err(Error::Untranslatable);
            }
            let mut hit = None;
            for e in ranges.chunks_exact(entry) {
                let child = cells_value(e, ca, "ranges")?;
                let parent = cells_value(&e[ca as usize * 4..], pa, "ranges")?;
                let size = cells_value(&e[(ca + pa) as usize * 4..], sz, "ranges")?;
                if addr >= child && addr - child < size {
                    hit = Some(parent + (addr - child));
                    break;
                }
            }
            addr = hit.ok_or(Error::Untranslatable)?;
        }
        Ok(addr)
    }
}

/// Iterator over `reg` entries: (address in the parent bus space, size).
pub struct RegIter<'a> {
    value: &'a [u8],
    cells: Cells,
    entry: usize,
}

impl Iterator for RegIter<'_> {
    type Item = Result<(u64, u64), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.value.len() < self.entry {
            return None;
        }
        let (e, rest) = self.value.split_at(self.entry);
        self.value = rest;
        let a = self.cells.address;
        Some(cells_value(e, a, "reg").and_then(|addr| {
            Ok((
                addr,
                cells_value(&e[a as usize * 4..], self.cells.size, "reg")?,
            ))
        }))
    }
}

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
    let entry = ((3 + parent.address + cells.size) as usize) * 4;
    if !ranges.len().is_multiple_of(entry) {
        return Err(Error::BadProperty("ranges"));
    }
    for e in ranges.chunks_exact(entry) {
        let hi = be32(e, 0).unwrap_or(0);
        let pci_base = cells_value(&e[4..], 2, "ranges")?;
        let cpu = cells_value(&e[12..], parent.address, "ranges")?;
        let size = cells_value(&e[12 + parent.address as usize * 4..], cells.size, "ranges")?;
        let kind = match (hi >> 24) & 3 {
            PCI_SPACE_IO => WindowKind::Io,
            PCI_SPACE_MEM32 => WindowKind::Mem32,
            PCI_SPACE_MEM64 => WindowKind::Mem64,
            _ => continue, // configuration space: not a window
        };
        let window = PciWindow {
            kind,
            prefetchable: hi & PCI_PREFETCHABLE != 0,
            cpu_base: node.translate(cpu)?,
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
        if u64::from(rid_base) + u64::from(len) > 0x1_0000 {
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
        let entry = ((ca + pa + sz) as usize) * 4;
        if ca > 4 || pa > 2 || sz > 2 || entry == 0 || !ranges.len().is_multiple_of(entry) {
            continue;
        }
        for e in ranges.chunks_exact(entry) {
            let parent = cells_value(&e[ca as usize * 4..], pa, "ranges");
            let size = cells_value(&e[(ca + pa) as usize * 4..], sz, "ranges");
            if let (Ok(parent), Ok(size)) = (parent, size) {
                if let Ok(cpu) = node.translate(parent) {
                    top = top.max(cpu.saturating_add(size));
                }
            }
        }
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec as StdVec;

    const VIRT: &[u8] = include_bytes!("testdata/virt-smmuv3.dtb");
    const VIRT_LOW_ECAM_3G: &[u8] = include_bytes!("testdata/virt-smmuv3-lowecam-3g.dtb");

    fn windows(segment: u16) -> [PciWindow; 3] {
        [
            PciWindow {
                kind: WindowKind::Io,
                prefetchable: false,
                cpu_base: 0x3eff_0000,
                pci_base: 0,
                size: 0x1_0000,
                segment,
            },
            PciWindow {
                kind: WindowKind::Mem32,
                prefetchable: false,
                cpu_base: 0x1000_0000,
                pci_base: 0x1000_0000,
                size: 0x2eff_0000,
                segment,
            },
            PciWindow {
                kind: WindowKind::Mem64,
                prefetchable: false,
                cpu_base: 0x80_0000_0000,
                pci_base: 0x80_0000_0000,
                size: 0x80_0000_0000,
                segment,
            },
        ]
    }

    #[test]
    fn qemu_virt_smmuv3() {
        let fdt = Fdt::new(VIRT).unwrap();
        let p = platform(&fdt, "virt").unwrap();
        assert_eq!(p.board, "virt");
        assert_eq!(p.cmdline.as_str(), "iommu.profile=virt-nested");
        assert_eq!(
            p.ram.as_slice(),
            &[Region {
                base: 0x4000_0000,
                size: 0x1000_0000
            }]
        );
        assert_eq!(
            p.ecam.as_slice(),
            &[Ecam {
                base: 0x40_1000_0000,
                segment: 0,
                bus_start: 0,
                bus_end: 255
            }]
        );
        assert_eq!(p.windows.as_slice(), &windows(0));
        assert_eq!(p.iommus.len(), 1);
        let smmu = &p.iommus[0];
        assert_eq!(smmu.kind, IommuKind::SmmuV3);
        assert_eq!((smmu.base, smmu.size), (0x905_0000, 0x2_0000));
        assert_eq!((smmu.segment, smmu.include_all), (0, false));
        assert!(smmu.scopes.is_empty());
        assert_ne!(smmu.phandle, 0);
        assert_eq!(
            p.rid_maps.as_slice(),
            &[RidMap {
                segment: 0,
                rid_base: 0,
                iommu: 0,
                sid_base: 0,
                len: 0x1_0000
            }]
        );
        assert!(p.rmrrs.is_empty() && p.atsrs.is_empty());
        assert_eq!(p.dmar_haw, 0);
        // The high PCIe MMIO window ends the address space.
        assert_eq!(address_limit(&fdt).unwrap(), 0x100_0000_0000);
        let node = fdt.find_phandle(smmu.phandle).unwrap().unwrap();
        assert_eq!(node.name(), "smmuv3@9050000");
        assert_eq!(node.base_name(), "smmuv3");
    }

    #[test]
    fn qemu_virt_low_ecam_3g() {
        let fdt = Fdt::new(VIRT_LOW_ECAM_3G).unwrap();
        let p = platform(&fdt, "virt").unwrap();
        assert_eq!(p.cmdline.as_str(), "iommu.profile=virt-s1 quiet");
        assert_eq!(
            p.ram.as_slice(),
            &[Region {
                base: 0x4000_0000,
                size: 0xc000_0000
            }]
        );
        assert_eq!(
            p.ecam.as_slice(),
            &[Ecam {
                base: 0x3f00_0000,
                segment: 0,
                bus_start: 0,
                bus_end: 15
            }]
        );
        assert_eq!(p.windows.as_slice(), &windows(0));
        assert_eq!(p.rid_maps.len(), 1);
    }

    #[test]
    fn header_errors() {
        assert_eq!(Fdt::new(&[]).unwrap_err(), Error::Truncated);
        let mut bad = VIRT.to_vec();
        bad[0] = 0;
        assert_eq!(Fdt::new(&bad).unwrap_err(), Error::BadMagic(0x000d_feed));
        assert_eq!(
            Fdt::new(&VIRT[..VIRT.len() - 1]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(Fdt::total_size(VIRT).unwrap(), VIRT.len());
        let mut old = VIRT.to_vec();
        old[20..24].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            Fdt::new(&old).unwrap_err(),
            Error::UnsupportedVersion(2, 16)
        );
        let mut off = VIRT.to_vec();
        off[8..12].copy_from_slice(&0x10_0000u32.to_be_bytes());
        assert_eq!(Fdt::new(&off).unwrap_err(), Error::BadHeader);
        // A longer buffer than the tree is fine.
        let mut long = VIRT.to_vec();
        long.extend_from_slice(&[0xff; 64]);
        assert!(platform(&Fdt::new(&long).unwrap(), "virt").is_ok());
    }

    #[test]
    fn corrupt_structure_is_an_error_not_a_panic() {
        // Flip every byte of the structure block in turn: parsing must
        // return (Ok or Err), never panic or loop.
        let fdt_off = u32::from_be_bytes(VIRT[8..12].try_into().unwrap()) as usize;
        for i in (fdt_off..fdt_off + 2048).step_by(3) {
            let mut b = VIRT.to_vec();
            b[i] ^= 0xa5;
            if let Ok(fdt) = Fdt::new(&b) {
                let _ = platform(&fdt, "virt");
                let _ = address_limit(&fdt);
            }
        }
        // Truncating the structure block is reported.
        let mut b = VIRT.to_vec();
        let size_struct = u32::from_be_bytes(b[36..40].try_into().unwrap());
        b[36..40].copy_from_slice(&(size_struct - 8).to_be_bytes());
        let fdt = Fdt::new(&b).unwrap();
        assert!(matches!(
            platform(&fdt, "virt"),
            Err(Error::BadStructure(_))
        ));
    }

    /// A tiny DTB writer for hand-made trees.
    #[derive(Default)]
    struct Writer {
        structs: StdVec<u8>,
        strings: StdVec<u8>,
    }

    enum V<'a> {
        Cells(&'a [u32]),
        Str(&'a str),
        Raw(&'a [u8]),
    }

    impl Writer {
        fn word(&mut self, w: u32) {
            self.structs.extend_from_slice(&w.to_be_bytes());
        }
        fn begin(&mut self, name: &str) -> &mut Self {
            self.word(FDT_BEGIN_NODE);
            self.structs.extend_from_slice(name.as_bytes());
            self.structs.push(0);
            while !self.structs.len().is_multiple_of(4) {
                self.structs.push(0);
            }
            self
        }
        fn end(&mut self) -> &mut Self {
            self.word(FDT_END_NODE);
            self
        }
        fn prop(&mut self, name: &str, v: V<'_>) -> &mut Self {
            let mut value = StdVec::new();
            match v {
                V::Cells(c) => c
                    .iter()
                    .for_each(|w| value.extend_from_slice(&w.to_be_bytes())),
                V::Str(s) => {
                    value.extend_from_slice(s.as_bytes());
                    value.push(0);
                }
                V::Raw(r) => value.extend_from_slice(r),
            }
            let nameoff = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.word(FDT_PROP);
            self.word(value.len() as u32);
            self.word(nameoff);
            self.structs.extend_from_slice(&value);
            while !self.structs.len().is_multiple_of(4) {
                self.structs.push(0);
            }
            self
        }
        fn finish(&mut self) -> StdVec<u8> {
            self.word(FDT_END);
            let rsv = 40;
            let off_struct = rsv + 16;
            let off_strings = off_struct + self.structs.len();
            let total = off_strings + self.strings.len();
            let mut out = StdVec::new();
            for w in [
                MAGIC,
                total as u32,
                off_struct as u32,
                off_strings as u32,
                rsv as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structs.len() as u32,
            ] {
                out.extend_from_slice(&w.to_be_bytes());
            }
            out.extend_from_slice(&[0; 16]);
            out.extend_from_slice(&self.structs);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A tree with a host bridge and two SMMUs behind a translating bus, a
    /// disabled memory node and a second memory node with 1-cell sizes.
    fn synthetic(extra_bridge_props: impl Fn(&mut Writer)) -> StdVec<u8> {
        let mut w = Writer::default();
        w.begin("")
            .prop("#address-cells", V::Cells(&[2]))
            .prop("#size-cells", V::Cells(&[2]))
            .begin("chosen")
            .prop("bootargs", V::Str("a=b c"))
            .end()
            .begin("memory@80000000")
            .prop("device_type", V::Str("memory"))
            .prop(
                "reg",
                V::Cells(&[0, 0x8000_0000, 0, 0x4000_0000, 0x8, 0, 0, 0x1000_0000]),
            )
            .end()
            .begin("memory@c0000000")
            .prop("device_type", V::Str("memory"))
            .prop("status", V::Str("disabled"))
            .prop("reg", V::Cells(&[0, 0xc000_0000, 0, 0x1000]))
            .end()
            .begin("bus@1000000")
            .prop("compatible", V::Str("simple-bus"))
            .prop("#address-cells", V::Cells(&[1]))
            .prop("#size-cells", V::Cells(&[1]))
            .prop("ranges", V::Cells(&[0, 0x1, 0x0, 0x1000_0000]))
            .begin("iommu@200000")
            .prop("compatible", V::Raw(b"vendor,thing\0arm,smmu-v3\0"))
            .prop("reg", V::Cells(&[0x20_0000, 0x2_0000]))
            .prop("phandle", V::Cells(&[7]))
            .end()
            .begin("iommu@400000")
            .prop("compatible", V::Str("arm,smmu-v3"))
            .prop("reg", V::Cells(&[0x40_0000, 0x2_0000]))
            .prop("linux,phandle", V::Cells(&[9]))
            .end()
            .end()
            .begin("pcie@40000000");
        // First occurrence of a property wins: the extras override the defaults below.
        extra_bridge_props(&mut w);
        w.prop("compatible", V::Str("pci-host-ecam-generic"))
            .prop("device_type", V::Str("pci"))
            .prop("#address-cells", V::Cells(&[3]))
            .prop("#size-cells", V::Cells(&[1]))
            .prop("reg", V::Cells(&[0, 0x4000_0000, 0, 0x0080_0000]))
            .prop("bus-range", V::Cells(&[0x10, 0x3f]))
            .prop("linux,pci-domain", V::Cells(&[3]))
            .prop(
                "ranges",
                V::Cells(&[
                    0x0000_0000,
                    0,
                    0,
                    0,
                    0x3000_0000,
                    0x1000, // config: skipped
                    0x4200_0000,
                    0,
                    0x2000_0000,
                    0,
                    0x2000_0000,
                    0x1000_0000, // prefetch mem32
                    0x4300_0000,
                    0x2,
                    0,
                    0x10,
                    0,
                    0x4000_0000, // prefetch mem64
                ]),
            );
        w.end().end().finish()
    }

    #[test]
    fn synthetic_tree() {
        let blob = synthetic(|w| {
            w.prop(
                "iommu-map",
                V::Cells(&[0x1000, 9, 0x100, 0x800, 0x1800, 7, 0, 0x800]),
            )
            .prop("iommu-map-mask", V::Cells(&[0xffff]));
        });
        let fdt = Fdt::new(&blob).unwrap();
        let p = platform(&fdt, "test").unwrap();
        assert_eq!(p.cmdline.as_str(), "a=b c");
        assert_eq!(
            p.ram.as_slice(),
            &[
                Region {
                    base: 0x8000_0000,
                    size: 0x4000_0000
                },
                Region {
                    base: 0x8_0000_0000,
                    size: 0x1000_0000
                }
            ]
        );
        // The SMMUs sit behind bus ranges 0 -> 0x1_0000_0000.
        let bases: StdVec<_> = p
            .iommus
            .iter()
            .map(|u| (u.base, u.size, u.phandle))
            .collect();
        assert_eq!(
            bases,
            [(0x1_0020_0000, 0x2_0000, 7), (0x1_0040_0000, 0x2_0000, 9)]
        );
        assert!(p.iommus.iter().all(|u| u.segment == 3));
        // 8 MiB of ECAM covers 8 buses: 0x10..=0x17.
        assert_eq!(
            p.ecam.as_slice(),
            &[Ecam {
                base: 0x4000_0000,
                segment: 3,
                bus_start: 0x10,
                bus_end: 0x17
            }]
        );
        assert_eq!(
            p.windows.as_slice(),
            &[
                PciWindow {
                    kind: WindowKind::Mem32,
                    prefetchable: true,
                    cpu_base: 0x2000_0000,
                    pci_base: 0x2000_0000,
                    size: 0x1000_0000,
                    segment: 3
                },
                PciWindow {
                    kind: WindowKind::Mem64,
                    prefetchable: true,
                    cpu_base: 0x10_0000_0000,
                    pci_base: 0x2_0000_0000,
                    size: 0x4000_0000,
                    segment: 3
                }
            ]
        );
        assert_eq!(
            p.rid_maps.as_slice(),
            &[
                RidMap {
                    segment: 3,
                    rid_base: 0x1000,
                    iommu: 1,
                    sid_base: 0x100,
                    len: 0x800
                },
                RidMap {
                    segment: 3,
                    rid_base: 0x1800,
                    iommu: 0,
                    sid_base: 0,
                    len: 0x800
                }
            ]
        );
        assert_eq!(address_limit(&fdt).unwrap(), 0x10_4000_0000);
    }

    #[test]
    fn discovery_errors() {
        let err =
            |f: &dyn Fn(&mut Writer)| platform(&Fdt::new(&synthetic(f)).unwrap(), "t").unwrap_err();
        assert_eq!(
            err(&|w| {
                w.prop("iommu-map", V::Cells(&[0, 8, 0, 0x100]));
            }),
            Error::UnknownPhandle(8)
        );
        assert_eq!(
            err(&|w| {
                w.prop("iommu-map", V::Cells(&[0, 7, 0, 0x100]))
                    .prop("iommu-map-mask", V::Cells(&[0xff00]));
            }),
            Error::Unsupported("iommu-map-mask")
        );
        assert_eq!(
            err(&|w| {
                w.prop("iommu-map", V::Cells(&[0, 7, 0]));
            }),
            Error::BadProperty("iommu-map")
        );
        assert_eq!(
            err(&|w| {
                w.prop("bus-range", V::Cells(&[5]));
            }),
            Error::BadProperty("bus-range")
        );
        // A property after a subnode is a structure error.
        assert!(matches!(
            err(&|w| {
                w.begin("child").end().prop("late", V::Cells(&[1]));
            }),
            Error::BadStructure(_)
        ));
    }

    #[test]
    fn structure_errors() {
        // Unbalanced: the root is never closed.
        let mut w = Writer::default();
        w.begin("").begin("a").end();
        let blob = w.finish();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(matches!(
            fdt.nodes().last(),
            Some(Err(Error::BadStructure(_)))
        ));

        // Too deep.
        let mut w = Writer::default();
        for _ in 0..=MAX_DEPTH {
            w.begin("n");
        }
        for _ in 0..=MAX_DEPTH {
            w.end();
        }
        let blob = w.finish();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.nodes().last().unwrap().unwrap_err(), Error::TooDeep);

        // A property name outside the strings block.
        let mut w = Writer::default();
        w.begin("").prop("x", V::Cells(&[1])).end();
        let mut blob = w.finish();
        let off_struct = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
        // begin token + "\0" padded (4) + prop token + len => nameoff at +16
        blob[off_struct + 16..off_struct + 20].copy_from_slice(&0x1000u32.to_be_bytes());
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.root().unwrap_err(), Error::BadString(0x1000));

        // An empty tree has no root.
        let blob = Writer::default().finish();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(matches!(fdt.root(), Err(Error::BadStructure(0))));

        // A cmdline longer than Platform holds.
        let long = "x".repeat(300);
        let mut w = Writer::default();
        w.begin("")
            .begin("chosen")
            .prop("bootargs", V::Str(&long))
            .end()
            .end();
        let blob = w.finish();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(platform(&fdt, "t").unwrap_err(), Error::TooMany("cmdline"));
    }
}
