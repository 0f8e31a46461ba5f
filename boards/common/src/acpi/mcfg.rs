//! MCFG: the PCIe ECAM windows (PCI Firmware 3.3 §4.1.2).

use heapless::Vec;

use super::{Error, SDT_HEADER_LEN, Signature, rd16, rd64, validate};
use crate::platform::Ecam;

/// Append the MCFG's ECAM windows to `out`.
///
/// The MCFG base address is that of bus 0 of the segment; [`Ecam::base`] is
/// that of `bus_start`, so the two differ when a window starts above bus 0.
/// A window whose end (exclusive) is not below 2^64 is [`Error::Malformed`].
pub fn parse_mcfg<const N: usize>(mcfg: &[u8], out: &mut Vec<Ecam, N>) -> Result<(), Error> {
    let sig = Signature::MCFG;
    let t = validate(mcfg, Some(sig))?;
    const FIRST: usize = SDT_HEADER_LEN + 8;
    const ENTRY: usize = 16;
    if t.len() < FIRST {
        return Err(Error::Truncated {
            table: sig,
            offset: SDT_HEADER_LEN,
        });
    }
    let mut off = FIRST;
    while off < t.len() {
        let truncated = Error::Truncated {
            table: sig,
            offset: off,
        };
        let end = off.checked_add(ENTRY).ok_or(truncated)?;
        let e = t.get(off..end).ok_or(truncated)?;
        let base = rd64(e, 0).unwrap_or(0);
        let segment = rd16(e, 8).unwrap_or(0);
        let (bus_start, bus_end) = (e[10], e[11]);
        let malformed = Error::Malformed {
            table: sig,
            offset: off,
        };
        if bus_end < bus_start || base == 0 {
            return Err(malformed);
        }
        // The window, 1 MiB per bus up to bus_end, must fit the address space.
        base.checked_add((u64::from(bus_end) + 1) << 20)
            .ok_or(malformed)?;
        let base = base
            .checked_add(u64::from(bus_start) << 20)
            .ok_or(malformed)?;
        out.push(Ecam {
            base,
            segment,
            bus_start,
            bus_end,
        })
        .map_err(|_| Error::TooMany { table: sig })?;
        off = end;
    }
    Ok(())
}
