//! Flattened device tree (DTB, devicetree specification v0.4 ch. 5) reader and
//! the virt board's discovery: [`platform`] turns a DTB into a [`Platform`](crate::platform::Platform).
//!
//! Plain `no_std` code over a byte slice, no allocation. Every multi-byte
//! value is read byte by byte (big-endian), so the reader also works on
//! memory the CPU sees as Device memory (the virt board parses the tree
//! before it turns its MMU on, and the target has strict alignment).
//!
//! Structure errors are found by the node walker ([`Fdt::nodes`]): a node is
//! handed out only after its properties were checked, so property lookups on
//! a [`Node`] cannot fail afterwards.

mod discover;
mod reader;
#[cfg(test)]
mod tests;

pub use discover::{address_limit, platform};
pub use reader::{Fdt, Node, Nodes, RegIter};

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
    /// More entries than a [`Platform`](crate::platform::Platform) table holds (which table).
    TooMany(&'static str),
    /// An `iommu-map` names a phandle that is no enabled "arm,smmu-v3" node.
    UnknownPhandle(u32),
    /// An address cannot be translated to a CPU physical address (an
    /// ancestor bus has no `ranges`, no entry of it covers the address, or
    /// its cell counts are more than this reader translates).
    Untranslatable,
    /// An address plus a size, or an address translated through `ranges`,
    /// runs past the end of the 64-bit address space: the end (exclusive)
    /// of the region or `ranges` entry is not below 2^64 (property name).
    Overflow(&'static str),
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
        let c = i
            .checked_mul(4)
            .and_then(|off| be32(bytes, off))
            .ok_or(Error::BadProperty(what))?;
        if v >> 32 != 0 {
            return Err(Error::BadProperty(what));
        }
        v = (v << 32) | u64::from(c);
    }
    Ok(v)
}

/// Bytes of one entry made of groups of cells, given as (count, most
/// accepted): `None` if a count is over its limit (checked before any
/// arithmetic, so a huge `#address-cells` cannot overflow the sum) or the
/// entry would be empty.
fn entry_len(groups: &[(u32, u32)]) -> Option<usize> {
    let mut cells = 0usize;
    for &(count, max) in groups {
        if count > max {
            return None;
        }
        cells = cells.checked_add(usize::try_from(count).ok()?)?;
    }
    if cells == 0 {
        return None;
    }
    cells.checked_mul(4)
}

/// What follows the first `cells` cells of `bytes` (empty if `bytes` is shorter).
fn skip_cells(bytes: &[u8], cells: u32) -> &[u8] {
    usize::try_from(cells)
        .ok()
        .and_then(|c| c.checked_mul(4))
        .and_then(|off| bytes.get(off..))
        .unwrap_or(&[])
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
