//! The blob reader: header, structure-block walk, properties, `reg` and
//! `ranges` translation.

use super::{
    Cells, Error, FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_NOP, FDT_PROP, HEADER_LEN, MAGIC,
    MAX_DEPTH, be32, cells_value, entry_len, round_up4, skip_cells,
};
use crate::platform::Region;

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
            // off_dt_struct past totalsize is caught here (no block there).
            total.checked_sub(off_struct).ok_or(Error::BadHeader)?
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
    /// A property given twice (invalid) counts with its first value, as
    /// [`Node::property`] finds it; the second is still checked.
    fn scan_properties(&self, mut off: usize) -> Result<(usize, Cells), Error> {
        let (mut address, mut size) = (None, None);
        loop {
            match self.token(off)? {
                FDT_NOP => off += 4,
                FDT_PROP => {
                    let (name, value, next) = self.property_at(off + 4)?;
                    let (slot, what) = match name {
                        "#address-cells" => (&mut address, "#address-cells"),
                        "#size-cells" => (&mut size, "#size-cells"),
                        _ => {
                            off = next;
                            continue;
                        }
                    };
                    let v = be32(value, 0).ok_or(Error::BadProperty(what))?;
                    slot.get_or_insert(v);
                    off = next;
                }
                _ => {
                    let d = Cells::default();
                    let cells = Cells {
                        address: address.unwrap_or(d.address),
                        size: size.unwrap_or(d.size),
                    };
                    return Ok((off, cells));
                }
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
        let entry = entry_len(&[(c.address, 4), (c.size, 4)]).ok_or(Error::BadProperty("reg"))?;
        if !value.len().is_multiple_of(entry) {
            return Err(Error::BadProperty("reg"));
        }
        Ok(RegIter {
            value,
            cells: c,
            entry,
        })
    }

    /// The `reg` entries translated to CPU physical addresses. A region
    /// whose end (base + size, exclusive) is not below 2^64 is [`Error::Overflow`].
    pub fn reg_regions(&self) -> Result<impl Iterator<Item = Result<Region, Error>> + 'a, Error> {
        let node = *self;
        Ok(self.reg()?.map(move |r| {
            let (base, size) = r?;
            let base = node.translate(base)?;
            base.checked_add(size).ok_or(Error::Overflow("reg"))?;
            Ok(Region { base, size })
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
            let entry = entry_len(&[(ca, 2), (pa, 2), (sz, 2)]).ok_or(Error::Untranslatable)?;
            if !ranges.len().is_multiple_of(entry) {
                return Err(Error::Untranslatable);
            }
            let mut hit = None;
            for e in ranges.chunks_exact(entry) {
                let child = cells_value(e, ca, "ranges")?;
                let parent_side = skip_cells(e, ca);
                let parent = cells_value(parent_side, pa, "ranges")?;
                let size = cells_value(skip_cells(parent_side, pa), sz, "ranges")?;
                if addr >= child && addr - child < size {
                    // The entry must fit the address space on both sides.
                    let overflow = Error::Overflow("ranges");
                    child.checked_add(size).ok_or(overflow)?;
                    parent.checked_add(size).ok_or(overflow)?;
                    hit = Some(parent.checked_add(addr - child).ok_or(overflow)?);
                    break;
                }
            }
            addr = hit.ok_or(Error::Untranslatable)?;
        }
        Ok(addr)
    }
}

/// Iterator over `reg` entries: (address in the parent bus space, size).
/// An entry whose end (address + size, exclusive) is not below 2^64 is [`Error::Overflow`].
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
            let size = cells_value(skip_cells(e, a), self.cells.size, "reg")?;
            addr.checked_add(size).ok_or(Error::Overflow("reg"))?;
            Ok((addr, size))
        }))
    }
}
