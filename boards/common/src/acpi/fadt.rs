//! FADT: the DSDT address and the ACPI PM timer (ACPI 6.5 §5.2.9).

use super::{Error, SDT_HEADER_LEN, Signature, rd8, rd32, rd64, validate};

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
