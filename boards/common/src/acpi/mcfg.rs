//! MCFG: the PCIe ECAM windows (PCI Firmware 3.3 §4.1.2).

use heapless::Vec;

use super::{Error, SDT_HEADER_LEN, Signature, rd16, rd64, validate};
use crate::platform::Ecam;

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
