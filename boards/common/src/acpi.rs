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

use heapless::Vec;

use crate::platform::{
    Atsr, DeviceScope, Ecam, IommuKind, IommuUnit, PciWindow, Platform, Rmrr, ScopeKind, WindowKind,
};

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

/// The Root System Description Pointer (ACPI 5.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Rsdp {
    /// 0 for ACPI 1.0 (RSDT only), 2 or more when the XSDT address is valid.
    pub revision: u8,
    /// Physical address of the RSDT.
    pub rsdt: u32,
    /// Physical address of the XSDT (0 when `revision < 2`).
    pub xsdt: u64,
}

impl Rsdp {
    /// Bytes covered by the ACPI 1.0 checksum.
    pub const V1_LEN: usize = 20;
    /// Length of the ACPI 2.0+ structure.
    pub const V2_LEN: usize = 36;

    /// Parse and check an RSDP from its bytes (20 for revision 0, at least the
    /// `Length` field's worth for revision 2+).
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        let truncated = Error::Truncated {
            table: Signature::RSDP,
            offset: 0,
        };
        let head = b.get(..Self::V1_LEN).ok_or(truncated)?;
        if &head[..8] != b"RSD PTR " {
            return Err(Error::BadSignature {
                expected: Signature::RSDP,
                found: Signature([head[0], head[1], head[2], head[3]]),
            });
        }
        if !checksum_ok(head) {
            return Err(Error::BadChecksum {
                table: Signature::RSDP,
            });
        }
        let revision = head[15];
        let rsdt = rd32(head, 16).ok_or(truncated)?;
        let mut xsdt = 0;
        if revision >= 2 {
            let len = rd32(b, 20).ok_or(truncated)? as usize;
            if len < Self::V2_LEN {
                return Err(Error::Malformed {
                    table: Signature::RSDP,
                    offset: 20,
                });
            }
            let all = b.get(..len).ok_or(truncated)?;
            if !checksum_ok(all) {
                return Err(Error::BadChecksum {
                    table: Signature::RSDP,
                });
            }
            xsdt = rd64(all, 24).ok_or(truncated)?;
        }
        Ok(Self {
            revision,
            rsdt,
            xsdt,
        })
    }

    /// Read and check the RSDP at physical `addr`.
    pub fn read<M: PhysMem + ?Sized>(mem: &M, addr: u64) -> Result<Self, Error> {
        let head = map(mem, addr, Self::V1_LEN)?;
        if head[15] < 2 {
            return Self::parse(head);
        }
        let ext = map(mem, addr, Self::V2_LEN)?;
        let len = (rd32(ext, 20).unwrap_or(0) as usize).max(Self::V2_LEN);
        Self::parse(map(mem, addr, len)?)
    }
}

/// Check a table's header, length and checksum; return exactly its bytes.
///
/// `bytes` may extend past the table; `expected` is the signature it must carry.
pub fn validate(bytes: &[u8], expected: Option<Signature>) -> Result<&[u8], Error> {
    let sig = array::<4>(bytes, 0)
        .map(Signature)
        .ok_or(Error::Truncated {
            table: expected.unwrap_or(Signature(*b"????")),
            offset: 0,
        })?;
    if let Some(e) = expected {
        if e != sig {
            return Err(Error::BadSignature {
                expected: e,
                found: sig,
            });
        }
    }
    let len = rd32(bytes, 4).ok_or(Error::Truncated {
        table: sig,
        offset: 0,
    })? as usize;
    if len < SDT_HEADER_LEN {
        return Err(Error::Malformed {
            table: sig,
            offset: 4,
        });
    }
    let t = bytes.get(..len).ok_or(Error::Truncated {
        table: sig,
        offset: bytes.len(),
    })?;
    if !checksum_ok(t) {
        return Err(Error::BadChecksum { table: sig });
    }
    Ok(t)
}

/// Map the table at physical `addr` and [`validate`] it.
pub fn load_table<M: PhysMem + ?Sized>(
    mem: &M,
    addr: u64,
    expected: Option<Signature>,
) -> Result<&[u8], Error> {
    let head = map(mem, addr, SDT_HEADER_LEN)?;
    if let Some(e) = expected {
        if head[..4] != e.0 {
            return Err(Error::BadSignature {
                expected: e,
                found: Signature([head[0], head[1], head[2], head[3]]),
            });
        }
    }
    let len = rd32(head, 4).unwrap_or(0) as usize;
    let sig = Signature([head[0], head[1], head[2], head[3]]);
    if len < SDT_HEADER_LEN {
        return Err(Error::Malformed {
            table: sig,
            offset: 4,
        });
    }
    validate(map(mem, addr, len)?, Some(sig))
}

/// The tables listed by the RSDT (32-bit entries) or XSDT (64-bit entries).
pub struct Tables<'m, M: PhysMem + ?Sized> {
    mem: &'m M,
    entries: &'m [u8],
    wide: bool,
}

impl<'m, M: PhysMem + ?Sized> Tables<'m, M> {
    /// Load the root table the RSDP names: the XSDT for revision ≥ 2 with a
    /// non-zero XSDT address, else the RSDT.
    pub fn new(mem: &'m M, rsdp: &Rsdp) -> Result<Self, Error> {
        let (addr, sig, wide) = if rsdp.revision >= 2 && rsdp.xsdt != 0 {
            (rsdp.xsdt, Signature::XSDT, true)
        } else {
            (u64::from(rsdp.rsdt), Signature::RSDT, false)
        };
        let root = load_table(mem, addr, Some(sig))?;
        Ok(Self {
            mem,
            entries: &root[SDT_HEADER_LEN..],
            wide,
        })
    }

    /// Physical addresses of the listed tables, in order.
    pub fn addresses(&self) -> impl Iterator<Item = u64> + '_ {
        let size = if self.wide { 8 } else { 4 };
        self.entries.chunks_exact(size).map(move |c| {
            if self.wide {
                rd64(c, 0).unwrap_or(0)
            } else {
                u64::from(rd32(c, 0).unwrap_or(0))
            }
        })
    }

    /// The `n`th table (0-based) carrying `sig`, validated. Tables with other
    /// signatures are not checked.
    pub fn find_nth(&self, sig: Signature, n: usize) -> Result<Option<&'m [u8]>, Error> {
        let mut seen = 0;
        for addr in self.addresses() {
            if addr == 0 {
                continue;
            }
            let head = map(self.mem, addr, 4)?;
            if head != sig.0 {
                continue;
            }
            if seen == n {
                return load_table(self.mem, addr, Some(sig)).map(Some);
            }
            seen += 1;
        }
        Ok(None)
    }

    /// The first table carrying `sig`, validated.
    pub fn find(&self, sig: Signature) -> Result<Option<&'m [u8]>, Error> {
        self.find_nth(sig, 0)
    }
}

// ---------------------------------------------------------------------------
// MCFG

/// Append the MCFG's ECAM windows to `out`.
///
/// The MCFG base address is that of bus 0 of the segment; [`Ecam::base`] is
/// that of `bus_start`, so the two differ when a window starts above bus 0.
pub fn parse_mcfg<const N: usize>(mcfg: &[u8], out: &mut Vec<Ecam, N>) -> Result<(), Error> {
    let sig = Signature::MCFG;
    let t = validate(mcfg, Some(sig))?;
    const FIRST: usize = SDT_HEADER_LEN + 8;
    if t.len() < FIRST {
        return Err(Error::Truncated {
            table: sig,
            offset: SDT_HEADER_LEN,
        });
    }
    let mut off = FIRST;
    while off < t.len() {
        let e = t.get(off..off + 16).ok_or(Error::Truncated {
            table: sig,
            offset: off,
        })?;
        let base = rd64(e, 0).unwrap_or(0);
        let segment = rd16(e, 8).unwrap_or(0);
        let (bus_start, bus_end) = (e[10], e[11]);
        if bus_end < bus_start || base == 0 {
            return Err(Error::Malformed {
                table: sig,
                offset: off,
            });
        }
        let base = base
            .checked_add(u64::from(bus_start) << 20)
            .ok_or(Error::Malformed {
                table: sig,
                offset: off,
            })?;
        out.push(Ecam {
            base,
            segment,
            bus_start,
            bus_end,
        })
        .map_err(|_| Error::TooMany { table: sig })?;
        off += 16;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// DMAR

/// DMAR remapping structure types (VT-d 8.2).
mod dmar_type {
    pub const DRHD: u16 = 0;
    pub const RMRR: u16 = 1;
    pub const ATSR: u16 = 2;
}

/// Offset of the first remapping structure in the DMAR.
const DMAR_STRUCTS: usize = 48;

fn parse_scopes<const N: usize>(
    t: &[u8],
    start: usize,
    end: usize,
    out: &mut Vec<DeviceScope, N>,
) -> Result<(), Error> {
    let sig = Signature::DMAR;
    let mut off = start;
    while off < end {
        let kind = rd8(t, off);
        let len = rd8(t, off + 1);
        let (kind, len) = match (kind, len) {
            (Some(k), Some(l)) if off + 2 <= end => (k, usize::from(l)),
            _ => {
                return Err(Error::Truncated {
                    table: sig,
                    offset: off,
                });
            }
        };
        if len < 6 || (len - 6) % 2 != 0 {
            return Err(Error::Malformed {
                table: sig,
                offset: off,
            });
        }
        if off + len > end {
            return Err(Error::Truncated {
                table: sig,
                offset: off,
            });
        }
        let s = &t[off..off + len];
        let mut path = Vec::new();
        for hop in s[6..].chunks_exact(2) {
            path.push((hop[0], hop[1]))
                .map_err(|_| Error::TooMany { table: sig })?;
        }
        let kind = match kind {
            1 => ScopeKind::Endpoint,
            2 => ScopeKind::SubHierarchy,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::Hpet,
            5 => ScopeKind::Namespace,
            k => ScopeKind::Other(k),
        };
        out.push(DeviceScope {
            kind,
            enumeration_id: s[4],
            start_bus: s[5],
            path,
        })
        .map_err(|_| Error::TooMany { table: sig })?;
        off += len;
    }
    Ok(())
}

/// Fill `platform.dmar_haw`, `iommus` (one [`IommuKind::Vtd`] unit per DRHD),
/// `rmrrs` and `atsrs` from the DMAR. Other structure types are skipped.
pub fn parse_dmar(dmar: &[u8], platform: &mut Platform) -> Result<(), Error> {
    let sig = Signature::DMAR;
    let t = validate(dmar, Some(sig))?;
    if t.len() < DMAR_STRUCTS {
        return Err(Error::Truncated {
            table: sig,
            offset: SDT_HEADER_LEN,
        });
    }
    // Host Address Width is stored as N - 1.
    platform.dmar_haw = t[SDT_HEADER_LEN].saturating_add(1);
    let mut off = DMAR_STRUCTS;
    while off < t.len() {
        let (kind, len) = match (rd16(t, off), rd16(t, off + 2)) {
            (Some(k), Some(l)) => (k, usize::from(l)),
            _ => {
                return Err(Error::Truncated {
                    table: sig,
                    offset: off,
                });
            }
        };
        if len < 4 {
            return Err(Error::Malformed {
                table: sig,
                offset: off,
            });
        }
        let end = off + len;
        if end > t.len() {
            return Err(Error::Truncated {
                table: sig,
                offset: off,
            });
        }
        let too_short = |min: usize| {
            if len < min {
                Err(Error::Malformed {
                    table: sig,
                    offset: off,
                })
            } else {
                Ok(())
            }
        };
        let s = &t[off..end];
        match kind {
            dmar_type::DRHD => {
                too_short(16)?;
                let mut scopes = Vec::new();
                parse_scopes(t, off + 16, end, &mut scopes)?;
                let unit = IommuUnit {
                    kind: IommuKind::Vtd,
                    base: rd64(s, 8).unwrap_or(0),
                    // Size: bits 3:0 = N, the register set spans 2^N 4 KiB pages.
                    size: 4096u64 << (s[5] & 0xf),
                    segment: rd16(s, 6).unwrap_or(0),
                    include_all: s[4] & 1 != 0,
                    scopes,
                    phandle: 0,
                };
                platform
                    .iommus
                    .push(unit)
                    .map_err(|_| Error::TooMany { table: sig })?;
            }
            dmar_type::RMRR => {
                too_short(24)?;
                let mut scopes = Vec::new();
                parse_scopes(t, off + 24, end, &mut scopes)?;
                let rmrr = Rmrr {
                    segment: rd16(s, 6).unwrap_or(0),
                    base: rd64(s, 8).unwrap_or(0),
                    limit: rd64(s, 16).unwrap_or(0),
                    scopes,
                };
                if rmrr.limit < rmrr.base {
                    return Err(Error::Malformed {
                        table: sig,
                        offset: off,
                    });
                }
                platform
                    .rmrrs
                    .push(rmrr)
                    .map_err(|_| Error::TooMany { table: sig })?;
            }
            dmar_type::ATSR => {
                too_short(8)?;
                let mut scopes = Vec::new();
                parse_scopes(t, off + 8, end, &mut scopes)?;
                let atsr = Atsr {
                    segment: rd16(s, 6).unwrap_or(0),
                    all_ports: s[4] & 1 != 0,
                    scopes,
                };
                platform
                    .atsrs
                    .push(atsr)
                    .map_err(|_| Error::TooMany { table: sig })?;
            }
            _ => {}
        }
        off = end;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// FADT

/// The ACPI power-management timer (a free-running counter at [`PmTimer::HZ`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct PmTimer {
    /// I/O port of the 32-bit `PM_TMR` register.
    pub port: u16,
    /// Counter width: 24, or 32 with the FADT flag `TMR_VAL_EXT`.
    pub bits: u8,
}

impl PmTimer {
    /// Counting frequency.
    pub const HZ: u64 = 3_579_545;

    /// Mask of the valid counter bits.
    pub fn mask(&self) -> u32 {
        if self.bits >= 32 {
            u32::MAX
        } else {
            (1u32 << self.bits) - 1
        }
    }
}

/// What the board needs from the FADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Fadt {
    /// Physical address of the DSDT (`X_DSDT` if non-zero, else `DSDT`).
    pub dsdt: u64,
    /// The PM timer, if the FADT declares one in I/O space.
    pub pm_timer: Option<PmTimer>,
}

/// FADT field offsets (ACPI 6.5 table 5.9).
mod fadt_off {
    pub const DSDT: usize = 40;
    pub const PM_TMR_BLK: usize = 76;
    pub const PM_TMR_LEN: usize = 91;
    pub const FLAGS: usize = 112;
    /// End of the ACPI 1.0 FADT: everything above is optional.
    pub const V1_END: usize = 116;
    pub const X_DSDT: usize = 140;
    pub const X_PM_TMR_BLK: usize = 208;
}

/// `TMR_VAL_EXT`: the PM timer is 32 bits wide.
const FADT_TMR_VAL_EXT: u32 = 1 << 8;
/// Generic Address Structure address space: system I/O.
const GAS_SYSTEM_IO: u8 = 1;

/// Parse the FADT (`FACP`).
pub fn parse_fadt(fadt: &[u8]) -> Result<Fadt, Error> {
    use fadt_off as o;
    let sig = Signature::FADT;
    let t = validate(fadt, Some(sig))?;
    if t.len() < o::V1_END {
        return Err(Error::Truncated {
            table: sig,
            offset: SDT_HEADER_LEN,
        });
    }
    let dsdt32 = u64::from(rd32(t, o::DSDT).unwrap_or(0));
    let dsdt = match rd64(t, o::X_DSDT) {
        Some(x) if x != 0 => x,
        _ => dsdt32,
    };
    let flags = rd32(t, o::FLAGS).unwrap_or(0);
    let bits = if flags & FADT_TMR_VAL_EXT != 0 {
        32
    } else {
        24
    };

    let mut port = None;
    // X_PM_TMR_BLK: space id, bit width, bit offset, access size, address.
    if let (Some(space), Some(addr)) = (rd8(t, o::X_PM_TMR_BLK), rd64(t, o::X_PM_TMR_BLK + 4)) {
        if space == GAS_SYSTEM_IO && addr != 0 {
            port = Some(u16::try_from(addr).map_err(|_| Error::Malformed {
                table: sig,
                offset: o::X_PM_TMR_BLK,
            })?);
        }
    }
    if port.is_none() {
        let blk = rd32(t, o::PM_TMR_BLK).unwrap_or(0);
        let len = rd8(t, o::PM_TMR_LEN).unwrap_or(0);
        if blk != 0 && len >= 4 {
            port = Some(u16::try_from(blk).map_err(|_| Error::Malformed {
                table: sig,
                offset: o::PM_TMR_BLK,
            })?);
        }
    }
    Ok(Fadt {
        dsdt,
        pm_timer: port.map(|port| PmTimer { port, bits }),
    })
}

// ---------------------------------------------------------------------------
// AML: `Name(_CRS, Buffer(){...})` and resource templates

/// AML `NameOp`.
const AML_NAME_OP: u8 = 0x08;
/// AML `BufferOp`.
const AML_BUFFER_OP: u8 = 0x11;

/// Decode an AML PkgLength at `b[0..]`: (value, bytes used). The value counts
/// the PkgLength bytes themselves.
fn pkg_length(b: &[u8]) -> Option<(usize, usize)> {
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
    /// Length: `_LEN`, or `_MAX - _MIN + 1` when `_LEN` is zero.
    pub fn size(&self) -> u64 {
        if self.len != 0 {
            self.len
        } else if self.max >= self.min {
            (self.max - self.min).saturating_add(1)
        } else {
            0
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
/// Tag. Yields an error (then stops) on a descriptor that does not fit.
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
/// `_SEG` is not evaluated: the windows get `segment`.
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
    for r in resources(template) {
        let Resource::Address(a) = r? else { continue };
        let size = a.size();
        if size == 0 {
            continue;
        }
        let cpu_base = a.min.wrapping_add(a.translation);
        let kind = match a.kind {
            space::MEMORY => {
                let end = a.min.saturating_add(size - 1);
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

// ---------------------------------------------------------------------------
// Everything at once

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

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec as StdVec;

    use super::*;

    /// A table: header + body, checksum fixed.
    fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> StdVec<u8> {
        let mut t = StdVec::new();
        t.extend_from_slice(sig);
        t.extend_from_slice(&((SDT_HEADER_LEN + body.len()) as u32).to_le_bytes());
        t.push(revision);
        t.push(0); // checksum
        t.extend_from_slice(b"TESTID"); // OEM ID
        t.extend_from_slice(b"TESTTBL "); // OEM table ID
        t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
        t.extend_from_slice(b"TEST"); // creator ID
        t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
        assert_eq!(t.len(), SDT_HEADER_LEN);
        t.extend_from_slice(body);
        fix_checksum(&mut t, 9);
        t
    }

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn rsdp_v0(rsdt: u32) -> StdVec<u8> {
        let mut r = StdVec::new();
        r.extend_from_slice(b"RSD PTR ");
        r.push(0); // checksum
        r.extend_from_slice(b"BOCHS ");
        r.push(0); // revision
        r.extend_from_slice(&rsdt.to_le_bytes());
        fix_checksum(&mut r, 8);
        r
    }

    fn rsdp_v2(rsdt: u32, xsdt: u64) -> StdVec<u8> {
        let mut r = rsdp_v0(rsdt);
        r[15] = 2;
        fix_checksum(&mut r, 8);
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&xsdt.to_le_bytes());
        r.push(0); // extended checksum
        r.extend_from_slice(&[0; 3]);
        fix_checksum(&mut r, 32);
        r
    }

    /// Physical memory made of chunks at fixed addresses.
    #[derive(Default)]
    struct Mem(StdVec<(u64, StdVec<u8>)>);

    impl Mem {
        fn put(&mut self, addr: u64, bytes: StdVec<u8>) {
            self.0.push((addr, bytes));
        }
    }

    impl PhysMem for Mem {
        fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
            self.0.iter().find_map(|(base, b)| {
                let off = usize::try_from(addr.checked_sub(*base)?).ok()?;
                b.get(off..off.checked_add(len)?)
            })
        }
    }

    fn mcfg_body(entries: &[(u64, u16, u8, u8)]) -> StdVec<u8> {
        let mut b = vec![0u8; 8];
        for &(base, seg, s, e) in entries {
            b.extend_from_slice(&base.to_le_bytes());
            b.extend_from_slice(&seg.to_le_bytes());
            b.push(s);
            b.push(e);
            b.extend_from_slice(&[0; 4]);
        }
        b
    }

    fn scope(kind: u8, id: u8, bus: u8, path: &[(u8, u8)]) -> StdVec<u8> {
        let mut s = vec![kind, (6 + 2 * path.len()) as u8, 0, 0, id, bus];
        for &(d, f) in path {
            s.push(d);
            s.push(f);
        }
        s
    }

    fn dmar_struct(kind: u16, fixed: &[u8], scopes: &[StdVec<u8>]) -> StdVec<u8> {
        let len = 4 + fixed.len() + scopes.iter().map(|s| s.len()).sum::<usize>();
        let mut s = StdVec::new();
        s.extend_from_slice(&kind.to_le_bytes());
        s.extend_from_slice(&(len as u16).to_le_bytes());
        s.extend_from_slice(fixed);
        for sc in scopes {
            s.extend_from_slice(sc);
        }
        s
    }

    fn drhd(flags: u8, size: u8, seg: u16, base: u64, scopes: &[StdVec<u8>]) -> StdVec<u8> {
        let mut f = vec![flags, size];
        f.extend_from_slice(&seg.to_le_bytes());
        f.extend_from_slice(&base.to_le_bytes());
        dmar_struct(0, &f, scopes)
    }

    fn dmar_body(haw: u8, structs: &[StdVec<u8>]) -> StdVec<u8> {
        let mut b = vec![haw - 1, 1];
        b.extend_from_slice(&[0; 10]);
        for s in structs {
            b.extend_from_slice(s);
        }
        b
    }

    /// A FADT of `len` bytes (116 = ACPI 1.0, 244 = ACPI 2.0+ with X_ fields).
    fn fadt(
        len: usize,
        dsdt: u32,
        x_dsdt: u64,
        pm: u32,
        x_pm: Option<(u8, u64)>,
        ext: bool,
    ) -> StdVec<u8> {
        let mut b = vec![0u8; len - SDT_HEADER_LEN];
        let at = |o: usize| o - SDT_HEADER_LEN;
        b[at(40)..at(44)].copy_from_slice(&dsdt.to_le_bytes());
        b[at(76)..at(80)].copy_from_slice(&pm.to_le_bytes());
        b[at(91)] = 4;
        let flags: u32 = if ext { 1 << 8 } else { 0 };
        b[at(112)..at(116)].copy_from_slice(&flags.to_le_bytes());
        if len >= 244 {
            b[at(140)..at(148)].copy_from_slice(&x_dsdt.to_le_bytes());
            if let Some((space, addr)) = x_pm {
                b[at(208)] = space;
                b[at(209)] = 32;
                b[at(211)] = 3;
                b[at(212)..at(220)].copy_from_slice(&addr.to_le_bytes());
            }
        }
        sdt(b"FACP", if len >= 244 { 3 } else { 1 }, &b)
    }

    // Resource descriptors.
    fn word_as(kind: u8, tflags: u8, min: u16, max: u16, tra: u16) -> StdVec<u8> {
        let mut d = vec![0x88, 13, 0, kind, 0x0c, tflags];
        for v in [0, min, max, tra, max - min + 1] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d
    }
    fn dword_as(kind: u8, tflags: u8, min: u32, max: u32, tra: u32) -> StdVec<u8> {
        let mut d = vec![0x87, 23, 0, kind, 0x0c, tflags];
        for v in [0, min, max, tra, max - min + 1] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d
    }
    fn qword_as(kind: u8, tflags: u8, min: u64, max: u64, tra: u64) -> StdVec<u8> {
        let mut d = vec![0x8a, 43, 0, kind, 0x0c, tflags];
        for v in [0, min, max, tra, max - min + 1] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d
    }
    const IO_CF8: [u8; 8] = [0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08];
    const END_TAG: [u8; 2] = [0x79, 0x00];

    /// `Name(_CRS, Buffer(n){template})` with a PkgLength of the natural size.
    fn name_crs_buffer(template: &[u8]) -> StdVec<u8> {
        let mut size = vec![0x0b];
        size.extend_from_slice(&(template.len() as u16).to_le_bytes());
        let inner = size.len() + template.len();
        let mut out = vec![0x08, b'_', b'C', b'R', b'S', 0x11];
        // 1-byte PkgLength up to 63, else 2 bytes.
        if inner < 63 {
            out.push((inner + 1) as u8);
        } else {
            let v = inner + 2;
            assert!(v < 4096);
            out.push(0x40 | (v & 0xf) as u8);
            out.push((v >> 4) as u8);
        }
        out.extend_from_slice(&size);
        out.extend_from_slice(template);
        out
    }

    fn host_bridge_template() -> StdVec<u8> {
        let mut t = StdVec::new();
        t.extend(word_as(2, 0, 0x00, 0xff, 0)); // WordBusNumber 0..ff
        t.extend(IO_CF8);
        t.extend(word_as(1, 3, 0x0000, 0x0cf7, 0)); // WordIO
        t.extend(word_as(1, 3, 0x0d00, 0xffff, 0));
        t.extend(dword_as(0, 0x03, 0x000a_0000, 0x000b_ffff, 0)); // VGA
        t.extend(dword_as(0, 0x03, 0x8000_0000, 0xafff_ffff, 0)); // 32-bit hole
        t.extend(dword_as(0, 0x03, 0xfeda_0000, 0xfeda_ffff, 0)); // too small
        // 64-bit prefetchable (MEM = 3), with a translation offset.
        t.extend(qword_as(
            0,
            0x07,
            0x1_0000_0000,
            0x8_ffff_ffff,
            0x10_0000_0000,
        ));
        t.extend(END_TAG);
        t
    }

    fn dsdt_aml() -> StdVec<u8> {
        let mut aml = StdVec::new();
        // Some leading noise and a decoy device `_CRS` (no bus range):
        // Name(_CRS, ResourceTemplate(){Memory32Fixed(RW, 0xfed00000, 0x400)}).
        aml.extend_from_slice(&[0x10, 0x05, b'_', b'S', b'B', b'_']);
        let mut hpet = vec![0x86, 9, 0, 1];
        hpet.extend_from_slice(&0xfed0_0000u32.to_le_bytes());
        hpet.extend_from_slice(&0x400u32.to_le_bytes());
        hpet.extend(END_TAG);
        aml.extend(name_crs_buffer(&hpet));
        // A false match: `_CRS` declared as a method, not a buffer.
        aml.extend_from_slice(&[0x14, 0x08, b'_', b'C', b'R', b'S', 0x00, 0xa4, 0x00]);
        // An expander bridge (bus 0x80..0x8f) before the root bridge.
        let mut pxb = word_as(2, 0, 0x80, 0x8f, 0);
        pxb.extend(dword_as(0, 0x03, 0xc000_0000, 0xc0ff_ffff, 0));
        pxb.extend(END_TAG);
        aml.extend(name_crs_buffer(&pxb));
        aml.extend(name_crs_buffer(&host_bridge_template()));
        aml
    }

    #[test]
    fn rsdp_v0_and_v2() {
        let r = Rsdp::parse(&rsdp_v0(0x7fe_1234)).unwrap();
        assert_eq!(
            r,
            Rsdp {
                revision: 0,
                rsdt: 0x7fe_1234,
                xsdt: 0
            }
        );
        let r = Rsdp::parse(&rsdp_v2(0x1000, 0x2000)).unwrap();
        assert_eq!(
            r,
            Rsdp {
                revision: 2,
                rsdt: 0x1000,
                xsdt: 0x2000
            }
        );

        let mut bad = rsdp_v0(1);
        bad[0] = b'X';
        assert!(matches!(Rsdp::parse(&bad), Err(Error::BadSignature { .. })));
        let mut bad = rsdp_v0(1);
        bad[16] ^= 1;
        assert_eq!(
            Rsdp::parse(&bad),
            Err(Error::BadChecksum {
                table: Signature::RSDP
            })
        );
        let mut bad = rsdp_v2(1, 2);
        bad[24] ^= 1; // only the extended checksum covers the XSDT address
        assert_eq!(
            Rsdp::parse(&bad),
            Err(Error::BadChecksum {
                table: Signature::RSDP
            })
        );
        assert!(matches!(
            Rsdp::parse(&rsdp_v0(1)[..19]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Rsdp::parse(&rsdp_v2(1, 2)[..30]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn validate_checks_header_length_checksum() {
        let t = sdt(b"TEST", 1, &[1, 2, 3]);
        assert_eq!(validate(&t, None).unwrap().len(), 39);
        // Extra bytes after the table are not part of it.
        let mut longer = t.clone();
        longer.extend_from_slice(&[0xff; 5]);
        assert_eq!(
            validate(&longer, Some(Signature(*b"TEST"))).unwrap(),
            &t[..]
        );
        assert!(matches!(
            validate(&t, Some(Signature::DMAR)),
            Err(Error::BadSignature { .. })
        ));
        assert!(matches!(
            validate(&t[..38], None),
            Err(Error::Truncated { .. })
        ));
        let mut bad = t.clone();
        bad[37] ^= 0x40;
        assert!(matches!(
            validate(&bad, None),
            Err(Error::BadChecksum { .. })
        ));
        let mut short = t.clone();
        short[4] = 10;
        assert!(matches!(
            validate(&short, None),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn mcfg_entries() {
        let t = sdt(
            b"MCFG",
            1,
            &mcfg_body(&[(0xb000_0000, 0, 0, 0xff), (0x4_0000_0000, 1, 2, 3)]),
        );
        let mut out: Vec<Ecam, 4> = Vec::new();
        parse_mcfg(&t, &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[
                Ecam {
                    base: 0xb000_0000,
                    segment: 0,
                    bus_start: 0,
                    bus_end: 0xff
                },
                Ecam {
                    base: 0x4_0020_0000,
                    segment: 1,
                    bus_start: 2,
                    bus_end: 3
                },
            ]
        );
        let mut one: Vec<Ecam, 1> = Vec::new();
        assert_eq!(
            parse_mcfg(&t, &mut one),
            Err(Error::TooMany {
                table: Signature::MCFG
            })
        );
        // A cut entry.
        let mut body = mcfg_body(&[(0xb000_0000, 0, 0, 0xff)]);
        body.truncate(body.len() - 1);
        let t = sdt(b"MCFG", 1, &body);
        assert!(matches!(
            parse_mcfg(&t, &mut out),
            Err(Error::Truncated { .. })
        ));
        let t = sdt(b"MCFG", 1, &mcfg_body(&[(0xb000_0000, 0, 5, 4)]));
        assert!(matches!(
            parse_mcfg(&t, &mut out),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn dmar_units_rmrr_atsr() {
        let mut rmrr = vec![0, 0, 0, 0];
        rmrr.extend_from_slice(&0x000e_0000u64.to_le_bytes());
        rmrr.extend_from_slice(&0x000e_ffffu64.to_le_bytes());
        let mut atsr = vec![1, 0];
        atsr.extend_from_slice(&0u16.to_le_bytes());
        let body = dmar_body(
            39,
            &[
                drhd(
                    0,
                    2,
                    0,
                    0xfed9_1000,
                    &[
                        scope(1, 0, 0, &[(3, 0)]),
                        scope(2, 0, 0, &[(0x1c, 0), (0, 1)]),
                    ],
                ),
                drhd(1, 0, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)])]),
                dmar_struct(3, &[0; 12], &[]), // RHSA: skipped
                dmar_struct(1, &rmrr, &[scope(1, 0, 0, &[(0x14, 0)])]),
                dmar_struct(2, &atsr, &[]),
            ],
        );
        let t = sdt(b"DMAR", 1, &body);
        let mut p = Platform::default();
        parse_dmar(&t, &mut p).unwrap();
        assert_eq!(p.dmar_haw, 39);
        assert_eq!(p.iommus.len(), 2);
        let a = &p.iommus[0];
        assert_eq!(
            (a.kind, a.base, a.size, a.segment, a.include_all),
            (IommuKind::Vtd, 0xfed9_1000, 0x4000, 0, false)
        );
        assert_eq!(a.scopes.len(), 2);
        assert_eq!(a.scopes[0].kind, ScopeKind::Endpoint);
        assert_eq!(&a.scopes[0].path[..], &[(3, 0)]);
        assert_eq!(a.scopes[1].kind, ScopeKind::SubHierarchy);
        assert_eq!(&a.scopes[1].path[..], &[(0x1c, 0), (0, 1)]);
        let b = &p.iommus[1];
        assert_eq!((b.base, b.size, b.include_all), (0xfed9_0000, 0x1000, true));
        assert_eq!(b.scopes[0].kind, ScopeKind::IoApic);
        assert_eq!(
            (b.scopes[0].start_bus, b.scopes[0].enumeration_id),
            (0xff, 0)
        );
        assert_eq!(p.rmrrs.len(), 1);
        assert_eq!((p.rmrrs[0].base, p.rmrrs[0].limit), (0xe_0000, 0xe_ffff));
        assert_eq!(p.rmrrs[0].scopes[0].path[0], (0x14, 0));
        assert_eq!(p.atsrs.len(), 1);
        assert!(p.atsrs[0].all_ports);
        assert!(p.atsrs[0].scopes.is_empty());
    }

    #[test]
    fn dmar_rejects_bad_structures() {
        let mut p = Platform::default();
        // Structure length running past the table.
        let mut s = drhd(1, 0, 0, 0xfed9_0000, &[]);
        s[2] = 40;
        let t = sdt(b"DMAR", 1, &dmar_body(39, &[s]));
        assert!(matches!(
            parse_dmar(&t, &mut p),
            Err(Error::Truncated { .. })
        ));
        // Zero-length structure (would loop forever).
        let t = sdt(b"DMAR", 1, &dmar_body(39, &[vec![0, 0, 0, 0]]));
        assert!(matches!(
            parse_dmar(&t, &mut p),
            Err(Error::Malformed { .. })
        ));
        // Device scope with an odd path length.
        let mut sc = scope(1, 0, 0, &[(1, 0)]);
        sc[1] = 7;
        sc.push(0);
        let t = sdt(b"DMAR", 1, &dmar_body(39, &[drhd(0, 0, 0, 0x1000, &[sc])]));
        assert!(matches!(
            parse_dmar(&t, &mut p),
            Err(Error::Malformed { .. })
        ));
        // Scope overrunning its DRHD.
        let mut sc = scope(1, 0, 0, &[(1, 0)]);
        sc[1] = 10;
        let t = sdt(b"DMAR", 1, &dmar_body(39, &[drhd(0, 0, 0, 0x1000, &[sc])]));
        assert!(matches!(
            parse_dmar(&t, &mut p),
            Err(Error::Truncated { .. })
        ));
        // Header only (no HAW).
        let t = sdt(b"DMAR", 1, &[]);
        assert!(matches!(
            parse_dmar(&t, &mut p),
            Err(Error::Truncated { .. })
        ));
        // Too many path hops for the Platform.
        let hops = [(1u8, 0u8); 9];
        let t = sdt(
            b"DMAR",
            1,
            &dmar_body(39, &[drhd(0, 0, 0, 0x1000, &[scope(1, 0, 0, &hops)])]),
        );
        assert_eq!(
            parse_dmar(&t, &mut p),
            Err(Error::TooMany {
                table: Signature::DMAR
            })
        );
    }

    #[test]
    fn fadt_timer_and_dsdt() {
        // ACPI 2.0+: X_ fields win.
        let f = parse_fadt(&fadt(244, 0x1000, 0x2000, 0x608, Some((1, 0x1608)), true)).unwrap();
        assert_eq!(
            f,
            Fadt {
                dsdt: 0x2000,
                pm_timer: Some(PmTimer {
                    port: 0x1608,
                    bits: 32
                })
            }
        );
        // X_ fields zero: fall back to the 32-bit ones.
        let f = parse_fadt(&fadt(244, 0x1000, 0, 0x608, None, false)).unwrap();
        assert_eq!(
            f,
            Fadt {
                dsdt: 0x1000,
                pm_timer: Some(PmTimer {
                    port: 0x608,
                    bits: 24
                })
            }
        );
        // X_PM_TMR_BLK in memory space: not usable, fall back.
        let f = parse_fadt(&fadt(244, 0x1000, 0, 0x608, Some((0, 0xfee0_0000)), true)).unwrap();
        assert_eq!(
            f.pm_timer,
            Some(PmTimer {
                port: 0x608,
                bits: 32
            })
        );
        // ACPI 1.0 FADT.
        let f = parse_fadt(&fadt(116, 0x3000, 0, 0xb008, None, false)).unwrap();
        assert_eq!(
            f,
            Fadt {
                dsdt: 0x3000,
                pm_timer: Some(PmTimer {
                    port: 0xb008,
                    bits: 24
                })
            }
        );
        // No timer.
        let f = parse_fadt(&fadt(116, 0x3000, 0, 0, None, false)).unwrap();
        assert_eq!(f.pm_timer, None);
        // I/O port out of range.
        assert!(matches!(
            parse_fadt(&fadt(244, 0, 0, 0, Some((1, 0x1_0000)), false)),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            parse_fadt(&sdt(b"FACP", 1, &[0; 40])),
            Err(Error::Truncated { .. })
        ));
        assert_eq!(PmTimer { port: 0, bits: 24 }.mask(), 0xff_ffff);
        assert_eq!(PmTimer { port: 0, bits: 32 }.mask(), u32::MAX);
    }

    #[test]
    fn pkg_length_encodings() {
        assert_eq!(pkg_length(&[0x3f]), Some((63, 1)));
        assert_eq!(pkg_length(&[0x45, 0x12]), Some((0x125, 2)));
        assert_eq!(pkg_length(&[0x81, 0x23, 0x01]), Some((0x1231, 3)));
        assert_eq!(pkg_length(&[0xc2, 0x01, 0x02, 0x03]), Some((0x302012, 4)));
        assert_eq!(pkg_length(&[0x50, 0x12]), None); // reserved bits set
        assert_eq!(pkg_length(&[0x81, 0x23]), None); // cut
        assert_eq!(pkg_length(&[]), None);
    }

    #[test]
    fn resource_template_decoding() {
        let t = host_bridge_template();
        let rs: StdVec<_> = resources(&t).collect::<Result<_, _>>().unwrap();
        assert_eq!(rs.len(), 8);
        assert_eq!(rs[1], Resource::Small(8)); // I/O port descriptor
        let Resource::Address(q) = rs[7] else {
            panic!()
        };
        assert_eq!(
            (q.kind, q.min, q.max, q.translation, q.size()),
            (0, 1 << 32, 0x8_ffff_ffff, 1 << 36, 0x8_0000_0000)
        );
        assert!(q.prefetchable());
        // Cut inside a large item.
        let cut = &t[..t.len() - 10];
        assert!(resources(cut).any(|r| matches!(r, Err(Error::Truncated { .. }))));
        // Extended address space descriptor.
        let mut e = vec![0x8b, 53, 0, 0, 0x0c, 0x06, 1, 0];
        for v in [0u64, 0x2000_0000, 0x2fff_ffff, 0, 0x1000_0000, 0] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        let Some(Ok(Resource::Address(a))) = resources(&e).next() else {
            panic!()
        };
        assert_eq!(
            (a.min, a.max, a.len),
            (0x2000_0000, 0x2fff_ffff, 0x1000_0000)
        );
        assert!(a.prefetchable()); // type flags 0x06: MEM = 3
    }

    #[test]
    fn host_bridge_from_dsdt() {
        let dsdt = sdt(b"DSDT", 1, &dsdt_aml());
        let mut w: Vec<PciWindow, 8> = Vec::new();
        host_bridge_windows(&dsdt, 0, &mut w).unwrap();
        let io = |b: u64, s: u64| PciWindow {
            kind: WindowKind::Io,
            prefetchable: false,
            cpu_base: b,
            pci_base: b,
            size: s,
            segment: 0,
        };
        assert_eq!(
            &w[..],
            &[
                io(0, 0xcf8),
                io(0xd00, 0xf300),
                PciWindow {
                    kind: WindowKind::Mem32,
                    prefetchable: false,
                    cpu_base: 0x8000_0000,
                    pci_base: 0x8000_0000,
                    size: 0x3000_0000,
                    segment: 0
                },
                PciWindow {
                    kind: WindowKind::Mem64,
                    prefetchable: true,
                    cpu_base: 0x11_0000_0000,
                    pci_base: 0x1_0000_0000,
                    size: 0x8_0000_0000,
                    segment: 0
                },
            ]
        );
        // Only the expander bridge: it is taken.
        let mut pxb = word_as(2, 0, 0x80, 0x8f, 0);
        pxb.extend(dword_as(0, 0x03, 0xc000_0000, 0xc0ff_ffff, 0));
        pxb.extend(END_TAG);
        let dsdt = sdt(b"DSDT", 1, &name_crs_buffer(&pxb));
        let mut w: Vec<PciWindow, 8> = Vec::new();
        host_bridge_windows(&dsdt, 0, &mut w).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].kind, w[0].cpu_base, w[0].size),
            (WindowKind::Mem32, 0xc000_0000, 0x100_0000)
        );
        // No host bridge at all.
        let dsdt = sdt(b"DSDT", 1, &[0x10, 0x05, b'_', b'S', b'B', b'_']);
        assert_eq!(
            host_bridge_windows(&dsdt, 0, &mut w),
            Err(Error::NoHostBridge)
        );
        // Too many windows for the output.
        let dsdt = sdt(b"DSDT", 1, &dsdt_aml());
        let mut small: Vec<PciWindow, 2> = Vec::new();
        assert_eq!(
            host_bridge_windows(&dsdt, 0, &mut small),
            Err(Error::TooMany {
                table: Signature::DSDT
            })
        );
    }

    #[test]
    fn crs_buffer_scan_survives_garbage() {
        // A `_CRS` NameOp at the very end, with a cut PkgLength, and random bytes.
        let mut aml = vec![0x08, b'_', b'C', b'R', b'S', 0x11, 0x45];
        aml.extend_from_slice(&[0x08, b'_', b'C', b'R', b'S', 0x11, 0x04, 0x0a, 0x10, 0x79]);
        aml.extend_from_slice(&[0x08, b'_', b'C', b'R', b'S', 0x11]);
        let found: StdVec<_> = crs_buffers(&aml).collect();
        assert_eq!(found.len(), 1);
        // Declared size larger than the byte list: cut to the list.
        assert_eq!(found[0].1, &[0x79][..]);
    }

    fn machine(rsdp: StdVec<u8>, with_dmar: bool) -> Mem {
        let mut m = Mem::default();
        m.put(0xf_5000, rsdp);
        let mut entries: StdVec<u64> = vec![0x7fe_1000, 0x7fe_2000];
        if with_dmar {
            entries.push(0x7fe_3000);
        }
        m.put(
            0x7fe_1000,
            fadt(244, 0x7fe_4000, 0, 0x608, Some((1, 0x608)), true),
        );
        m.put(
            0x7fe_2000,
            sdt(b"MCFG", 1, &mcfg_body(&[(0xb000_0000, 0, 0, 0xff)])),
        );
        m.put(
            0x7fe_3000,
            sdt(
                b"DMAR",
                1,
                &dmar_body(
                    39,
                    &[drhd(1, 0, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)])])],
                ),
            ),
        );
        m.put(0x7fe_4000, sdt(b"DSDT", 1, &dsdt_aml()));
        let rsdt_body: StdVec<u8> = entries
            .iter()
            .flat_map(|&a| (a as u32).to_le_bytes())
            .collect();
        m.put(0x7fe_0000, sdt(b"RSDT", 1, &rsdt_body));
        let xsdt_body: StdVec<u8> = entries.iter().flat_map(|&a| a.to_le_bytes()).collect();
        m.put(0x7fe_5000, sdt(b"XSDT", 1, &xsdt_body));
        m
    }

    #[test]
    fn discover_through_rsdt_and_xsdt() {
        for (rsdp, dmar) in [
            (rsdp_v0(0x7fe_0000), true),
            (rsdp_v2(0, 0x7fe_5000), true),
            (rsdp_v0(0x7fe_0000), false),
        ] {
            let m = machine(rsdp, dmar);
            let mut p = Platform::default();
            let fadt = discover(&m, 0xf_5000, &mut p).unwrap();
            assert_eq!(
                fadt.pm_timer,
                Some(PmTimer {
                    port: 0x608,
                    bits: 32
                })
            );
            assert_eq!(p.ecam[0].base, 0xb000_0000);
            assert_eq!(p.windows.len(), 4);
            if dmar {
                assert_eq!(p.dmar_haw, 39);
                assert_eq!(p.iommus[0].base, 0xfed9_0000);
                assert!(p.iommus[0].include_all);
            } else {
                assert_eq!(p.dmar_haw, 0);
                assert!(p.iommus.is_empty());
            }
        }
    }

    #[test]
    fn discover_reports_missing_and_unmapped() {
        let mut m = machine(rsdp_v0(0x7fe_0000), true);
        // Drop the MCFG.
        m.0.retain(|(a, _)| *a != 0x7fe_2000);
        let mut p = Platform::default();
        assert!(matches!(
            discover(&m, 0xf_5000, &mut p),
            Err(Error::Unmapped {
                addr: 0x7fe_2000,
                ..
            })
        ));
        let m = machine(rsdp_v0(0x7fe_0000), true);
        assert!(matches!(
            discover(&m, 0x1234, &mut p),
            Err(Error::Unmapped { .. })
        ));
        // RSDT without MCFG.
        let mut m = Mem::default();
        m.put(0xf_5000, rsdp_v0(0x1000));
        m.put(0x1000, sdt(b"RSDT", 1, &[]));
        assert_eq!(
            discover(&m, 0xf_5000, &mut p),
            Err(Error::Missing {
                table: Signature::MCFG
            })
        );
        // Corrupt DSDT.
        let mut m = machine(rsdp_v0(0x7fe_0000), false);
        for (a, b) in m.0.iter_mut() {
            if *a == 0x7fe_4000 {
                b[40] ^= 1;
            }
        }
        let mut p = Platform::default();
        assert_eq!(
            discover(&m, 0xf_5000, &mut p),
            Err(Error::BadChecksum {
                table: Signature::DSDT
            })
        );
    }

    /// ACPI tables QEMU 10.0.2 + SeaBIOS build for `-machine q35 -device
    /// intel-iommu` and two edu devices, dumped from the guest.
    mod qemu10 {
        use super::*;

        macro_rules! tables {
            ($dir:literal) => {
                [
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/RSDT.bin"))[..],
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/FACP.bin"))[..],
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/APIC.bin"))[..],
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/HPET.bin"))[..],
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/MCFG.bin"))[..],
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/DMAR.bin"))[..],
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/WAET.bin"))[..],
                    &include_bytes!(concat!("../../q35/testdata/", $dir, "/DSDT.bin"))[..],
                ]
            };
        }
        fn m256() -> [&'static [u8]; 8] {
            tables!("qemu10-256m")
        }
        fn g3() -> [&'static [u8]; 8] {
            tables!("qemu10-3g")
        }
        const RSDP_256M: &[u8] = include_bytes!("../../q35/testdata/qemu10-256m/RSDP.bin");
        const RSDP_3G: &[u8] = include_bytes!("../../q35/testdata/qemu10-3g/RSDP.bin");
        const RSDP_ADDR: u64 = 0xf_5240;

        /// Place every table where the RSDP, RSDT and FADT say it is.
        fn machine(rsdp: &[u8], tables: &[&[u8]]) -> Mem {
            let mut m = Mem::default();
            m.put(RSDP_ADDR, rsdp.to_vec());
            let r = Rsdp::parse(rsdp).unwrap();
            let find = |sig: &[u8]| *tables.iter().find(|t| &t[..4] == sig).unwrap();
            let rsdt = find(b"RSDT");
            m.put(u64::from(r.rsdt), rsdt.to_vec());
            // The RSDT lists tables in the order QEMU builds them; so does the fixture list.
            let listed: StdVec<&[u8]> = tables
                .iter()
                .copied()
                .filter(|t| !matches!(&t[..4], b"RSDT" | b"DSDT"))
                .collect();
            let addrs: StdVec<u64> = rsdt[SDT_HEADER_LEN..]
                .chunks_exact(4)
                .map(|e| u64::from(u32::from_le_bytes(e.try_into().unwrap())))
                .collect();
            assert_eq!(addrs.len(), listed.len());
            for (a, t) in addrs.iter().zip(listed) {
                m.put(*a, t.to_vec());
            }
            let fadt = parse_fadt(find(b"FACP")).unwrap();
            m.put(fadt.dsdt, find(b"DSDT").to_vec());
            m
        }

        fn discover_fixture(rsdp: &[u8], tables: &[&[u8]]) -> (Platform, Fadt) {
            let m = machine(rsdp, tables);
            let mut p = Platform::default();
            let f = discover(&m, RSDP_ADDR, &mut p).unwrap();
            (p, f)
        }

        fn win(kind: WindowKind, base: u64, size: u64) -> PciWindow {
            PciWindow {
                kind,
                prefetchable: false,
                cpu_base: base,
                pci_base: base,
                size,
                segment: 0,
            }
        }

        #[test]
        fn q35_256m() {
            let (p, f) = discover_fixture(RSDP_256M, &m256());
            assert_eq!(
                f.pm_timer,
                Some(PmTimer {
                    port: 0x608,
                    bits: 24
                })
            );
            assert_eq!(
                &p.ecam[..],
                &[Ecam {
                    base: 0xb000_0000,
                    segment: 0,
                    bus_start: 0,
                    bus_end: 0xff
                }]
            );
            assert_eq!(
                &p.windows[..],
                &[
                    win(WindowKind::Io, 0, 0xcf8),
                    win(WindowKind::Io, 0xd00, 0xf300),
                    win(WindowKind::Mem32, 0x1000_0000, 0xa000_0000),
                    win(WindowKind::Mem32, 0xc000_0000, 0x3ec0_0000),
                    win(WindowKind::Mem64, 0x1_0000_0000, 0x8_0000_0000),
                ]
            );
            assert_eq!(p.dmar_haw, 48);
            assert_eq!(p.iommus.len(), 1);
            let u = &p.iommus[0];
            assert_eq!(
                (u.kind, u.base, u.size, u.segment),
                (IommuKind::Vtd, 0xfed9_0000, 0x1000, 0)
            );
            // QEMU lists every device of bus 0 instead of setting INCLUDE_PCI_ALL.
            assert!(!u.include_all);
            let paths: StdVec<_> = u
                .scopes
                .iter()
                .map(|s| (s.kind, s.start_bus, s.path[0]))
                .collect();
            assert_eq!(
                paths,
                [
                    (ScopeKind::IoApic, 0xff, (0, 0)),
                    (ScopeKind::Endpoint, 0, (0, 0)),
                    (ScopeKind::Endpoint, 0, (1, 0)),
                    (ScopeKind::Endpoint, 0, (2, 0)),
                    (ScopeKind::Endpoint, 0, (31, 0)),
                    (ScopeKind::Endpoint, 0, (31, 2)),
                    (ScopeKind::Endpoint, 0, (31, 3)),
                ]
            );
            assert!(p.rmrrs.is_empty() && p.atsrs.is_empty());
        }

        #[test]
        fn q35_3g() {
            let (p, _) = discover_fixture(RSDP_3G, &g3());
            assert_eq!(
                &p.windows[..],
                &[
                    win(WindowKind::Io, 0, 0xcf8),
                    win(WindowKind::Io, 0xd00, 0xf300),
                    win(WindowKind::Mem32, 0x8000_0000, 0x3000_0000),
                    win(WindowKind::Mem32, 0xc000_0000, 0x3ec0_0000),
                    win(WindowKind::Mem64, 0x1_4000_0000, 0x8_0000_0000),
                ]
            );
        }

        #[test]
        fn corrupted_tables_give_errors_not_panics() {
            // Flip every byte (keeping the checksum valid) of the DMAR, MCFG,
            // FADT and DSDT: each parse must return, whatever it returns.
            let t = m256();
            for table in [t[1], t[4], t[5], t[7]] {
                for i in 0..table.len() {
                    if i == 9 {
                        continue;
                    }
                    let mut b = table.to_vec();
                    b[i] ^= 0xa5;
                    fix_checksum(&mut b, 9);
                    let mut p = Platform::default();
                    let _ = parse_dmar(&b, &mut p);
                    let _ = parse_mcfg(&b, &mut p.ecam);
                    let _ = parse_fadt(&b);
                    let _ = host_bridge_windows(&b, 0, &mut p.windows);
                }
            }
        }

        #[test]
        fn every_prefix_of_the_dsdt_is_handled() {
            // Cutting the AML anywhere must give an error or fewer windows, never a panic.
            let dsdt = m256()[7];
            for cut in SDT_HEADER_LEN..dsdt.len() {
                let mut t = dsdt[..cut].to_vec();
                t[4..8].copy_from_slice(&(cut as u32).to_le_bytes());
                fix_checksum(&mut t, 9);
                let mut w: Vec<PciWindow, 8> = Vec::new();
                let _ = host_bridge_windows(&t, 0, &mut w);
            }
        }
    }
}
