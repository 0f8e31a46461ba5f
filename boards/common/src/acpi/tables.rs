//! RSDP, RSDT/XSDT and the common table header (ACPI 6.5 §5.2.5-§5.2.8).

use super::{Error, PhysMem, SDT_HEADER_LEN, Signature, array, checksum_ok, map, rd32, rd64};

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
    /// non-zero XSDT address, else the RSDT. A root table whose entries do
    /// not fill its length in whole entries is [`Error::Malformed`].
    pub fn new(mem: &'m M, rsdp: &Rsdp) -> Result<Self, Error> {
        let (addr, sig, wide) = if rsdp.revision >= 2 && rsdp.xsdt != 0 {
            (rsdp.xsdt, Signature::XSDT, true)
        } else {
            (u64::from(rsdp.rsdt), Signature::RSDT, false)
        };
        let root = load_table(mem, addr, Some(sig))?;
        let entries = root.get(SDT_HEADER_LEN..).unwrap_or(&[]);
        // A part entry at the end is a bad length, not an entry to drop.
        if !entries.len().is_multiple_of(if wide { 8 } else { 4 }) {
            return Err(Error::Malformed {
                table: sig,
                offset: 4,
            });
        }
        Ok(Self { mem, entries, wide })
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
