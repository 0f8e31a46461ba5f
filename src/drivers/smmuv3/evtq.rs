//! Event records (SMMUv3 architecture, "Event queue records"): four 64-bit
//! words each, written by the SMMU into the event queue; the driver decodes
//! them into the core's [`Fault`].

use crate::core::{Access, Fault, FaultKind};
use crate::drivers::bits::Field;

/// Words in a record.
pub const DWORDS: usize = 4;
/// Bytes in a record.
pub const BYTES: u64 = 32;

/// Event type.
pub const ID: Field = Field::new(0, 7, 0);
/// SubstreamID valid.
pub const SSV: Field = Field::bit(0, 11);
/// SubstreamID.
pub const SSID: Field = Field::new(0, 31, 12);
/// StreamID.
pub const SID: Field = Field::new(0, 63, 32);
/// Stall tag (stalled faults).
pub const STAG: Field = Field::new(1, 15, 0);
/// The transaction is stalled and waits for a RESUME.
pub const STALL: Field = Field::bit(1, 31);
/// Privileged (1) or unprivileged.
pub const PNU: Field = Field::bit(1, 33);
/// Instruction (1) or data.
pub const IND: Field = Field::bit(1, 34);
/// Read (1) or write.
pub const RNW: Field = Field::bit(1, 35);
/// The fault came from stage 2.
pub const S2: Field = Field::bit(1, 39);
/// Class: what the access was (0 CD fetch, 1 translation table walk, 2
/// input address).
pub const CLASS: Field = Field::new(1, 41, 40);
/// Input address of the transaction.
pub const ADDR: Field = Field::new(2, 63, 0);
/// Intermediate physical address (stage-2 faults), bits 51:12 in place.
pub const IPA: Field = Field::new(3, 51, 12);

/// Event types the crate names (others are reported by number).
pub mod id {
    /// Unsupported upstream transaction.
    pub const F_UUT: u16 = 0x01;
    /// The StreamID is beyond the stream table.
    pub const C_BAD_STREAMID: u16 = 0x02;
    /// Fetching the STE failed.
    pub const F_STE_FETCH: u16 = 0x03;
    /// The STE is invalid (V = 0 or reserved values).
    pub const C_BAD_STE: u16 = 0x04;
    /// An ATS translation request was refused.
    pub const F_BAD_ATS_TREQ: u16 = 0x05;
    /// The stream is disabled (substreams without SubstreamID).
    pub const F_STREAM_DISABLED: u16 = 0x06;
    /// A translated transaction where the STE forbids it.
    pub const F_TRANSL_FORBIDDEN: u16 = 0x07;
    /// The SubstreamID is beyond the CD table.
    pub const C_BAD_SUBSTREAMID: u16 = 0x08;
    /// Fetching the CD failed.
    pub const F_CD_FETCH: u16 = 0x09;
    /// The CD is invalid.
    pub const C_BAD_CD: u16 = 0x0a;
    /// A table walk hit an external abort.
    pub const F_WALK_EABT: u16 = 0x0b;
    /// No translation for the address.
    pub const F_TRANSLATION: u16 = 0x10;
    /// The address is beyond the table's input or output size.
    pub const F_ADDR_SIZE: u16 = 0x11;
    /// The access flag is clear.
    pub const F_ACCESS: u16 = 0x12;
    /// The mapping does not allow the access.
    pub const F_PERMISSION: u16 = 0x13;
    /// Conflicting TLB entries.
    pub const F_TLB_CONFLICT: u16 = 0x20;
    /// Conflicting configuration cache entries.
    pub const F_CFG_CONFLICT: u16 = 0x21;
    /// A page request (PRI) the SMMU could not queue.
    pub const E_PAGE_REQUEST: u16 = 0x24;
    /// Fetching the VMS failed.
    pub const F_VMS_FETCH: u16 = 0x25;
}

/// Decode a record of SMMU `instance`: a stalled fault is recoverable (its
/// group is the stall tag, answered with RESUME), everything else an
/// unrecoverable event carrying its event type as the reason. `None` for
/// an all-zero record (nothing was written there).
pub fn decode(instance: u16, words: [u64; DWORDS]) -> Option<Fault> {
    if words == [0; DWORDS] {
        return None;
    }
    let mut access = if RNW.get(&words) != 0 {
        Access::READ
    } else {
        Access::WRITE
    };
    if IND.get(&words) != 0 {
        access |= Access::EXEC;
    }
    if PNU.get(&words) != 0 {
        access |= Access::PRIV;
    }
    let stalled = STALL.get(&words) != 0;
    Some(Fault {
        instance,
        device: SID.get(&words) as u32,
        pasid: (SSV.get(&words) != 0).then(|| SSID.get(&words) as u32),
        addr: ADDR.get(&words),
        access,
        group: if stalled { STAG.get(&words) as u16 } else { 0 },
        last: true,
        kind: if stalled {
            FaultKind::Stall
        } else {
            FaultKind::Unrecoverable
        },
        reason: ID.get(&words) as u16,
    })
}

/// A record's words, for tests and models (the inverse of [`decode`] for
/// the fields it reads).
pub fn encode(f: &Fault) -> [u64; DWORDS] {
    let mut w = [0; DWORDS];
    ID.set(&mut w, f.reason.into());
    SID.set(&mut w, f.device.into());
    if let Some(p) = f.pasid {
        SSV.set(&mut w, 1);
        SSID.set(&mut w, p.into());
    }
    RNW.set(&mut w, f.access.contains(Access::READ).into());
    IND.set(&mut w, f.access.contains(Access::EXEC).into());
    PNU.set(&mut w, f.access.contains(Access::PRIV).into());
    if f.kind == FaultKind::Stall {
        STALL.set(&mut w, 1);
        STAG.set(&mut w, f.group.into());
    }
    ADDR.set(&mut w, f.addr);
    w
}
