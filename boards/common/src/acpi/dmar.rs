//! DMAR: VT-d remapping units, RMRRs and ATSRs (Intel VT-d 4.1 §8).

use heapless::Vec;

use super::{Error, SDT_HEADER_LEN, Signature, rd8, rd16, rd64, validate};
use crate::platform::{Atsr, DeviceScope, IommuKind, IommuUnit, Platform, Rmrr, ScopeKind};

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
        let truncated = Error::Truncated {
            table: sig,
            offset: off,
        };
        // Type and length must lie inside the enclosing structure.
        if end - off < 2 {
            return Err(truncated);
        }
        let (kind, len) = match (rd8(t, off), rd8(t, off + 1)) {
            (Some(k), Some(l)) => (k, usize::from(l)),
            _ => return Err(truncated),
        };
        // 6 fixed bytes and (device, function) pairs.
        if len < 6 || (len - 6) % 2 != 0 {
            return Err(Error::Malformed {
                table: sig,
                offset: off,
            });
        }
        let scope_end = off.checked_add(len).ok_or(truncated)?;
        if scope_end > end {
            return Err(truncated);
        }
        let s = t.get(off..scope_end).ok_or(truncated)?;
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
        off = scope_end;
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
        let (kind, len) = match (rd16(t, off), off.checked_add(2).and_then(|o| rd16(t, o))) {
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
        let truncated = Error::Truncated {
            table: sig,
            offset: off,
        };
        let end = off.checked_add(len).ok_or(truncated)?;
        if end > t.len() {
            return Err(truncated);
        }
        let malformed = Error::Malformed {
            table: sig,
            offset: off,
        };
        // After this, the fixed fields (and off + min) lie inside the table.
        let too_short = |min: usize| if len < min { Err(malformed) } else { Ok(()) };
        let s = t.get(off..end).ok_or(truncated)?;
        match kind {
            dmar_type::DRHD => {
                too_short(16)?;
                let mut scopes = Vec::new();
                parse_scopes(t, off + 16, end, &mut scopes)?;
                let base = rd64(s, 8).unwrap_or(0);
                // Size: bits 3:0 = N, the register set spans 2^N 4 KiB pages.
                let size = 4096u64 << (s[5] & 0xf);
                // The register set must fit the address space.
                base.checked_add(size).ok_or(malformed)?;
                let unit = IommuUnit {
                    kind: IommuKind::Vtd,
                    base,
                    size,
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
                    return Err(malformed);
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
