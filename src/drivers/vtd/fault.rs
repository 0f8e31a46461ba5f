//! Primary fault records (VT-d specification 11.4.14 "Fault Recording
//! Registers"): 128 bits each, at CAP.FRO, CAP.NFR + 1 of them.

use crate::core::{Access, Fault, FaultKind};
use crate::drivers::bits::Field;

/// Low word: fault information (the faulting page), bits 63:12 in place.
pub const FI: Field = Field::new(0, 63, 12);
/// Source-id.
pub const SID: Field = Field::new(1, 15, 0);
/// Privileged request.
pub const PRIV: Field = Field::bit(1, 29);
/// Execute request.
pub const EXE: Field = Field::bit(1, 30);
/// PASID present.
pub const PP: Field = Field::bit(1, 31);
/// Fault reason.
pub const FR: Field = Field::new(1, 39, 32);
/// PASID value.
pub const PV: Field = Field::new(1, 59, 40);
/// Address type.
pub const AT: Field = Field::new(1, 61, 60);
/// Type: 0 write, 1 read (or atomic).
pub const T1: Field = Field::bit(1, 62);
/// Fault (write 1 to clear).
pub const F: Field = Field::bit(1, 63);

/// Fault reasons the crate names (the VT-d specification's fault-reason
/// table; others are reported by number). Legacy mode uses the codes
/// below 0x30, scalable mode those from 0x30 (an implementation may use a
/// legacy code where the meaning is the same: QEMU reports second-level
/// permission faults as 0x5 / 0x6 in both modes).
pub mod reason {
    /// The root entry is not present.
    pub const ROOT_NOT_PRESENT: u16 = 0x1;
    /// The context entry is not present.
    pub const CONTEXT_NOT_PRESENT: u16 = 0x2;
    /// The context entry is invalid (reserved or unsupported values).
    pub const INVALID_CONTEXT: u16 = 0x3;
    /// The input address is above what the table translates.
    pub const ADDRESS_BEYOND_MGAW: u16 = 0x4;
    /// No write permission (or nothing mapped, for a write).
    pub const WRITE: u16 = 0x5;
    /// No read permission (or nothing mapped, for a read).
    pub const READ: u16 = 0x6;
    /// Scalable mode: the root entry (its half) is not present.
    pub const SM_ROOT_NOT_PRESENT: u16 = 0x39;
    /// Scalable mode: the context entry is not present.
    pub const SM_CONTEXT_NOT_PRESENT: u16 = 0x41;
    /// Scalable mode: the PASID-directory entry is not present.
    pub const PASID_DIR_NOT_PRESENT: u16 = 0x51;
    /// Scalable mode: the PASID-table entry is not present.
    pub const PASID_ENTRY_NOT_PRESENT: u16 = 0x59;
    /// Scalable mode: the PASID-table entry is invalid (an unsupported
    /// PGTT, for instance).
    pub const INVALID_PASID_ENTRY: u16 = 0x5b;
    /// A first-level paging entry is not present.
    pub const FIRST_LEVEL_NOT_PRESENT: u16 = 0x71;
    /// A second-level paging entry denies the access.
    pub const SECOND_LEVEL_PERMISSION: u16 = 0x79;
    /// First level: U/S clear on the way for a user request.
    pub const USER_SUPERVISOR: u16 = 0x81;
    /// Scalable mode: no write permission for a write.
    pub const SM_WRITE: u16 = 0x85;
    /// Scalable mode: no read permission for a read.
    pub const SM_READ: u16 = 0x86;
}

/// Decode a fault record (`words`: low, high) of unit `instance` into the
/// core's fault type; `None` when its F bit is clear.
pub fn decode(instance: u16, words: [u64; 2]) -> Option<Fault> {
    if F.get(&words) == 0 {
        return None;
    }
    let mut access = if T1.get(&words) == 0 {
        Access::WRITE
    } else {
        Access::READ
    };
    if EXE.get(&words) != 0 {
        access |= Access::EXEC;
    }
    if PRIV.get(&words) != 0 {
        access |= Access::PRIV;
    }
    Some(Fault {
        instance,
        device: SID.get(&words) as u32,
        pasid: (PP.get(&words) != 0).then(|| PV.get(&words) as u32),
        addr: FI.get_in_place(&words),
        access,
        group: 0,
        last: true,
        kind: FaultKind::Unrecoverable,
        reason: FR.get(&words) as u16,
    })
}
