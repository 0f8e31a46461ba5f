//! ACPI firmware tables: RSDP → RSDT/XSDT, MCFG, DMAR, FADT, and the PCI host
//! bridge `_CRS` resource template in the DSDT.
//!
//! Everything works on byte slices. Physical memory is reached through
//! [`PhysMem`], which the board implements (an identity mapping on q35) and
//! the host tests implement over vectors. Nothing here panics on bad input:
//! every offset and length is checked and reported as an [`Error`].
//!
//! References: ACPI 6.5 §5.2 (tables), §6.4 (resource descriptors), §20
//! (AML encoding); PCI Firmware 3.3 §4.1.2 (MCFG); Intel VT-d 4.1 §8 (DMAR).

use core::fmt;

use crate::platform::Platform;

mod aml;
mod dmar;
mod fadt;
mod mcfg;
mod tables;
#[cfg(test)]
mod tests;

pub use aml::{
    AddressSpace, CrsBuffers, MIN_MEM_WINDOW, Resource, Resources, crs_buffers,
    host_bridge_windows, resources, space,
};
pub use dmar::parse_dmar;
pub use fadt::{Fadt, PmTimer, parse_fadt};
pub use mcfg::parse_mcfg;
pub use tables::{Rsdp, Tables, load_table, validate};

/// Length of the common System Description Table header.
pub const SDT_HEADER_LEN: usize = 36;

/// A table signature such as `DMAR` (the RSDP is named `RSDP` here).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// Root System Description Pointer (really `"RSD PTR "`).
    pub const RSDP: Self = Self(*b"RSDP");
    /// Root System Description Table (32-bit entries).
    pub const RSDT: Self = Self(*b"RSDT");
    /// Extended System Description Table (64-bit entries).
    pub const XSDT: Self = Self(*b"XSDT");
    /// PCI Express memory-mapped configuration space.
    pub const MCFG: Self = Self(*b"MCFG");
    /// DMA remapping (VT-d).
    pub const DMAR: Self = Self(*b"DMAR");
    /// Fixed ACPI Description Table.
    pub const FADT: Self = Self(*b"FACP");
    /// Differentiated System Description Table.
    pub const DSDT: Self = Self(*b"DSDT");
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            let c = if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl defmt::Format for Signature {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=[u8]:a}", &self.0[..]);
    }
}

/// Why a table could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Error {
    /// `len` bytes at physical `addr` are not reachable through [`PhysMem`].
    Unmapped {
        /// Physical address.
        addr: u64,
        /// Bytes wanted.
        len: u64,
    },
    /// The bytes do not start with the signature they should.
    BadSignature {
        /// What was looked for.
        expected: Signature,
        /// First four bytes found.
        found: Signature,
    },
    /// The table's bytes do not sum to zero.
    BadChecksum {
        /// Table.
        table: Signature,
    },
    /// The table (or a structure inside it) ends before its fields do.
    Truncated {
        /// Table.
        table: Signature,
        /// Offset in the table of the structure that does not fit.
        offset: usize,
    },
    /// A length, range or encoding inside the table is impossible.
    Malformed {
        /// Table.
        table: Signature,
        /// Offset in the table of the bad structure.
        offset: usize,
    },
    /// A table the caller needs is not listed in the RSDT/XSDT.
    Missing {
        /// Table.
        table: Signature,
    },
    /// More entries than the output can hold.
    TooMany {
        /// Table.
        table: Signature,
    },
    /// No `Name(_CRS, Buffer)` in the DSDT declares a bus-number range.
    NoHostBridge,
}

/// Access to physical memory for the parsers.
pub trait PhysMem {
    /// The `len` bytes at physical address `addr`, or `None` if they are not
    /// reachable.
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]>;
}

fn map<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: usize) -> Result<&[u8], Error> {
    match mem.bytes(addr, len) {
        Some(b) if b.len() >= len => Ok(&b[..len]),
        _ => Err(Error::Unmapped {
            addr,
            len: len as u64,
        }),
    }
}

fn array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}
fn rd8(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}
fn rd16(b: &[u8], off: usize) -> Option<u16> {
    array(b, off).map(u16::from_le_bytes)
}
fn rd32(b: &[u8], off: usize) -> Option<u32> {
    array(b, off).map(u32::from_le_bytes)
}
fn rd64(b: &[u8], off: usize) -> Option<u64> {
    array(b, off).map(u64::from_le_bytes)
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x)) == 0
}

/// Fill `platform.ecam` (MCFG), the VT-d fields (DMAR, if present) and
/// `platform.windows` (DSDT host bridge, segment 0) from the tables the RSDP
/// at `rsdp_addr` leads to. Returns the FADT, whose PM timer the board uses
/// as its clock.
pub fn discover<M: PhysMem + ?Sized>(
    mem: &M,
    rsdp_addr: u64,
    platform: &mut Platform,
) -> Result<Fadt, Error> {
    let rsdp = Rsdp::read(mem, rsdp_addr)?;
    let tables = Tables::new(mem, &rsdp)?;
    let mcfg = tables.find(Signature::MCFG)?.ok_or(Error::Missing {
        table: Signature::MCFG,
    })?;
    parse_mcfg(mcfg, &mut platform.ecam)?;
    if let Some(dmar) = tables.find(Signature::DMAR)? {
        parse_dmar(dmar, platform)?;
    }
    let fadt = tables.find(Signature::FADT)?.ok_or(Error::Missing {
        table: Signature::FADT,
    })?;
    let fadt = parse_fadt(fadt)?;
    let dsdt = load_table(mem, fadt.dsdt, Some(Signature::DSDT))?;
    host_bridge_windows(dsdt, 0, &mut platform.windows)?;
    Ok(fadt)
}
