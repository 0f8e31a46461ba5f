//! AML: `Name(_CRS, Buffer(){...})` in the DSDT and the resource templates it
//! holds (ACPI 6.5 §6.4 resource descriptors, §20 AML encoding).

use heapless::Vec;

use super::{Error, SDT_HEADER_LEN, Signature, rd16, rd32, rd64, validate};
use crate::platform::{PciWindow, WindowKind};

/// AML `NameOp`.
const AML_NAME_OP: u8 = 0x08;
/// AML `BufferOp`.
const AML_BUFFER_OP: u8 = 0x11;

/// Decode an AML PkgLength at `b[0..]`: (value, bytes used). The value counts
/// the PkgLength bytes themselves.
pub(super) fn pkg_length(b: &[u8]) -> Option<(usize, usize)> {
    let lead = *b.first()?;
    let extra = usize::from(lead >> 6);
    if extra == 0 {
        return Some((usize::from(lead & 0x3f), 1));
    }
    // With follow bytes, bits 5:4 of the lead byte are reserved (zero).
    if lead & 0x30 != 0 {
        return None;
    }
    let mut v = usize::from(lead & 0x0f);
    for i in 0..extra {
        v |= usize::from(*b.get(1 + i)?) << (4 + 8 * i);
    }
    Some((v, 1 + extra))
}

/// Decode the `BufferOp` at `b[0]`: the byte list (cut to the declared size).
fn aml_buffer(b: &[u8]) -> Option<&[u8]> {
    if *b.first()? != AML_BUFFER_OP {
        return None;
    }
    let (pkg, used) = pkg_length(b.get(1..)?)?;
    let body = b.get(1 + used..1 + pkg)?;
    // BufferSize: an integer constant.
    let (size, hdr) = match *body.first()? {
        0x00 => (0, 1),                                     // ZeroOp
        0x01 => (1, 1),                                     // OneOp
        0x0a => (usize::from(*body.get(1)?), 2),            // BytePrefix
        0x0b => (usize::from(rd16(body, 1)?), 3),           // WordPrefix
        0x0c => (usize::try_from(rd32(body, 1)?).ok()?, 5), // DWordPrefix
        _ => return None,
    };
    let data = body.get(hdr..)?;
    Some(&data[..size.min(data.len())])
}

/// Iterator over the `Name(_CRS, Buffer)` byte lists of an AML byte stream,
/// with the offset of each `NameOp`. `_CRS` methods (computed at run time) are
/// not seen.
pub struct CrsBuffers<'a> {
    aml: &'a [u8],
    pos: usize,
}

/// The `Name(_CRS, Buffer)` resource templates in `aml`.
pub fn crs_buffers(aml: &[u8]) -> CrsBuffers<'_> {
    CrsBuffers { aml, pos: 0 }
}

impl<'a> Iterator for CrsBuffers<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        const PAT: [u8; 5] = [AML_NAME_OP, b'_', b'C', b'R', b'S'];
        while self.pos + PAT.len() < self.aml.len() {
            let at = self.pos;
            self.pos += 1;
            if self.aml[at..at + PAT.len()] != PAT {
                continue;
            }
            if let Some(buf) = aml_buffer(&self.aml[at + PAT.len()..]) {
                return Some((at, buf));
            }
        }
        None
    }
}

/// Resource type of an address-space descriptor (ACPI 6.4.3.5).
pub mod space {
    /// Memory range.
    pub const MEMORY: u8 = 0;
    /// I/O range.
    pub const IO: u8 = 1;
    /// Bus number range.
    pub const BUS: u8 = 2;
}

/// A Word/DWord/QWord/Extended Address Space descriptor (ACPI 6.4.3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct AddressSpace {
    /// Resource type ([`space`]).
    pub kind: u8,
    /// General flags (bit 0: consumer, 1: subtractive, 2: MIF, 3: MAF).
    pub general_flags: u8,
    /// Type-specific flags (memory: bit 0 RW, bits 2:1 MEM cacheability).
    pub type_flags: u8,
    /// `_MIN`, on the secondary (PCI) side.
    pub min: u64,
    /// `_MAX`.
    pub max: u64,
    /// `_TRA`: primary (CPU) address = secondary address + translation.
    pub translation: u64,
    /// `_LEN`.
    pub len: u64,
}

impl AddressSpace {
    /// Length: `_LEN`, or `_MAX - _MIN + 1` when `_LEN` is zero (saturated
    /// at `u64::MAX` for a range of all 2^64 addresses).
    pub fn size(&self) -> u64 {
        self.checked_size().unwrap_or(u64::MAX)
    }

    /// [`AddressSpace::size`], or `None` for a range of all 2^64 addresses.
    fn checked_size(&self) -> Option<u64> {
        if self.len != 0 {
            Some(self.len)
        } else if self.max >= self.min {
            (self.max - self.min).checked_add(1)
        } else {
            Some(0)
        }
    }

    /// Memory cacheability `MEM` = 3: prefetchable (ACPI table 6.50).
    pub fn prefetchable(&self) -> bool {
        self.kind == space::MEMORY && (self.type_flags >> 1) & 3 == 3
    }
}

/// One descriptor of a resource template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Resource {
    /// An address-space descriptor.
    Address(AddressSpace),
    /// A small item (its type, bits 6:3 of the tag) this parser does not decode.
    Small(u8),
    /// A large item (its name, bits 6:0 of the tag) this parser does not decode.
    Large(u8),
}

/// Iterator over the descriptors of a resource template, stopping at the End
/// Tag. Yields an error (then stops) on a descriptor that does not fit; its
/// offset counts from the template's first byte, not the table's (a caller
/// holding the table adds where the template lies in it).
/// [`host_bridge_windows`] never meets one: a template that does not parse
/// whole is not taken for a host bridge.
pub struct Resources<'a> {
    b: &'a [u8],
    off: usize,
    done: bool,
}

/// The descriptors of the resource template `template`.
pub fn resources(template: &[u8]) -> Resources<'_> {
    Resources {
        b: template,
        off: 0,
        done: false,
    }
}

impl Resources<'_> {
    fn fail(&mut self, truncated: bool) -> Option<Result<Resource, Error>> {
        self.done = true;
        let (table, offset) = (Signature::DSDT, self.off);
        Some(Err(if truncated {
            Error::Truncated { table, offset }
        } else {
            Error::Malformed { table, offset }
        }))
    }
}

/// Large item names of the address-space descriptors.
mod large {
    pub const DWORD_ADDRESS: u8 = 0x07;
    pub const WORD_ADDRESS: u8 = 0x08;
    pub const QWORD_ADDRESS: u8 = 0x0a;
    pub const EXTENDED_ADDRESS: u8 = 0x0b;
}

fn address_space(d: &[u8], name: u8) -> Option<AddressSpace> {
    // d starts at the tag; fields from byte 3.
    let (kind, general_flags, type_flags) = (*d.get(3)?, *d.get(4)?, *d.get(5)?);
    let field = |i: usize, w: usize, base: usize| -> Option<u64> {
        let off = base + i * w;
        match w {
            2 => rd16(d, off).map(u64::from),
            4 => rd32(d, off).map(u64::from),
            _ => rd64(d, off),
        }
    };
    // Granularity, Min, Max, Translation, Length.
    let (w, base) = match name {
        large::WORD_ADDRESS => (2, 6),
        large::DWORD_ADDRESS => (4, 6),
        large::QWORD_ADDRESS => (8, 6),
        large::EXTENDED_ADDRESS => (8, 8),
        _ => return None,
    };
    Some(AddressSpace {
        kind,
        general_flags,
        type_flags,
        min: field(1, w, base)?,
        max: field(2, w, base)?,
        translation: field(3, w, base)?,
        len: field(4, w, base)?,
    })
}

impl Iterator for Resources<'_> {
    type Item = Result<Resource, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some(&tag) = self.b.get(self.off) else {
            // No End Tag: accept the template as ending with the bytes.
            self.done = true;
            return None;
        };
        if tag & 0x80 == 0 {
            let kind = (tag >> 3) & 0xf;
            let len = 1 + usize::from(tag & 7);
            if self.off + len > self.b.len() {
                return self.fail(true);
            }
            self.off += len;
            if kind == 0xf {
                // End Tag.
                self.done = true;
                return None;
            }
            return Some(Ok(Resource::Small(kind)));
        }
        let name = tag & 0x7f;
        let Some(len) = rd16(self.b, self.off + 1) else {
            return self.fail(true);
        };
        let total = 3 + usize::from(len);
        let Some(d) = self.b.get(self.off..self.off + total) else {
            return self.fail(true);
        };
        let item = match name {
            large::WORD_ADDRESS
            | large::DWORD_ADDRESS
            | large::QWORD_ADDRESS
            | large::EXTENDED_ADDRESS => match address_space(d, name) {
                Some(a) => Resource::Address(a),
                None => return self.fail(false),
            },
            n => Resource::Large(n),
        };
        self.off += total;
        Some(Ok(item))
    }
}

/// Smallest memory window kept: the host bridge also forwards small legacy
/// ranges (VGA) that are no place for BARs.
pub const MIN_MEM_WINDOW: u64 = 1 << 20;
const VGA: (u64, u64) = (0xa_0000, 0xb_ffff);

/// A PCI host bridge resource template: well-formed, with its bus range.
fn host_bridge_bus(template: &[u8]) -> Option<(u64, u64)> {
    let mut bus = None;
    for r in resources(template) {
        match r {
            Ok(Resource::Address(a)) if a.kind == space::BUS && bus.is_none() => {
                bus = Some((a.min, a.max))
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    bus
}

/// Append the PCI host bridge's windows from the DSDT to `out`.
///
/// The host bridge is the `Name(_CRS, Buffer)` whose resource template holds a
/// bus-number range; if several do (expander bridges), the one whose bus
/// range starts at 0 wins, else the first. Memory windows smaller than
/// [`MIN_MEM_WINDOW`] or overlapping the VGA hole are skipped; memory windows
/// whose bus addresses end at or below 4 GiB are [`WindowKind::Mem32`].
/// `_SEG` is not evaluated: the windows get `segment`. A memory or I/O
/// descriptor whose window's end (exclusive) is not below 2^64 on the bus
/// or the CPU side is [`Error::Malformed`] at its offset in the table.
pub fn host_bridge_windows<const N: usize>(
    dsdt: &[u8],
    segment: u16,
    out: &mut Vec<PciWindow, N>,
) -> Result<(), Error> {
    let sig = Signature::DSDT;
    let t = validate(dsdt, Some(sig))?;
    let aml = &t[SDT_HEADER_LEN..];
    let mut chosen: Option<&[u8]> = None;
    for (_, buf) in crs_buffers(aml) {
        match host_bridge_bus(buf) {
            Some((0, _)) => {
                chosen = Some(buf);
                break;
            }
            Some(_) if chosen.is_none() => chosen = Some(buf),
            _ => {}
        }
    }
    let template = chosen.ok_or(Error::NoHostBridge)?;
    // Where the template lies in the table (it is a subslice of it), for errors.
    let template_off = (template.as_ptr() as usize).wrapping_sub(t.as_ptr() as usize);
    let mut descriptors = resources(template);
    loop {
        let at = template_off.saturating_add(descriptors.off);
        let Some(r) = descriptors.next() else { break };
        let Resource::Address(a) = r? else { continue };
        if a.kind != space::MEMORY && a.kind != space::IO {
            continue;
        }
        let malformed = Error::Malformed {
            table: sig,
            offset: at,
        };
        let size = a.checked_size().ok_or(malformed)?;
        if size == 0 {
            continue;
        }
        // _TRA is added modulo 2^64 (a translation may be negative, as Linux
        // reads it), but neither side of the window may run past 2^64.
        let cpu_base = a.min.wrapping_add(a.translation);
        if a.min.checked_add(size).is_none() || cpu_base.checked_add(size).is_none() {
            return Err(malformed);
        }
        let kind = match a.kind {
            space::MEMORY => {
                let end = a.min + (size - 1);
                if size < MIN_MEM_WINDOW || (a.min <= VGA.1 && end >= VGA.0) {
                    continue;
                }
                if end < 1 << 32 {
                    WindowKind::Mem32
                } else {
                    WindowKind::Mem64
                }
            }
            space::IO => WindowKind::Io,
            _ => continue,
        };
        out.push(PciWindow {
            kind,
            prefetchable: a.prefetchable(),
            cpu_base,
            pci_base: a.min,
            size,
            segment,
        })
        .map_err(|_| Error::TooMany { table: sig })?;
    }
    Ok(())
}
