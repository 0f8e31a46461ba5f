//! Page-request descriptors (VT-d specification 7.5.1 "Page Request
//! Descriptor"): 256 bits each, written by the unit into the page request
//! queue at PQA, between the head (PQH, software) and the tail (PQT,
//! hardware).

use crate::core::{Access, Fault, FaultKind};
use crate::drivers::bits::Field;

/// 64-bit words of a descriptor.
pub const WORDS: usize = 4;
/// Bytes of a descriptor.
pub const BYTES: u64 = 32;

/// Type (1: page request).
pub const TYPE: Field = Field::new(0, 7, 0);
/// PASID present.
pub const PASID_PRESENT: Field = Field::bit(0, 8);
/// Requester ID.
pub const RID: Field = Field::new(0, 31, 16);
/// PASID.
pub const PASID: Field = Field::new(0, 51, 32);
/// Execute requested.
pub const EXE: Field = Field::bit(0, 52);
/// Privileged mode requested.
pub const PM: Field = Field::bit(0, 53);
/// Read requested.
pub const RD: Field = Field::bit(1, 0);
/// Write requested.
pub const WR: Field = Field::bit(1, 1);
/// Last page in group.
pub const LPIG: Field = Field::bit(1, 2);
/// Page request group index.
pub const PRGI: Field = Field::new(1, 11, 3);
/// Page address, bits 63:12 in place.
pub const ADDR: Field = Field::new(1, 63, 12);

/// The type of a page request.
pub const PAGE_REQUEST: u64 = 1;

/// Decode a page request of unit `instance`; `None` for another type
/// (reserved, or written by a unit the driver does not know).
pub fn decode(instance: u16, words: [u64; WORDS]) -> Option<Fault> {
    if TYPE.get(&words) != PAGE_REQUEST {
        return None;
    }
    let mut access = Access::empty();
    for (f, a) in [
        (RD, Access::READ),
        (WR, Access::WRITE),
        (EXE, Access::EXEC),
        (PM, Access::PRIV),
    ] {
        if f.get(&words) != 0 {
            access |= a;
        }
    }
    Some(Fault {
        instance,
        device: RID.get(&words) as u32,
        pasid: (PASID_PRESENT.get(&words) != 0).then(|| PASID.get(&words) as u32),
        addr: ADDR.get_in_place(&words),
        access,
        group: PRGI.get(&words) as u16,
        last: LPIG.get(&words) != 0,
        kind: FaultKind::PageRequest,
        reason: 0,
    })
}

/// A page request's words, for tests and models (the inverse of
/// [`decode`]).
pub fn encode(f: &Fault) -> [u64; WORDS] {
    let mut w = [0; WORDS];
    TYPE.set(&mut w, PAGE_REQUEST);
    RID.set(&mut w, f.device.into());
    if let Some(p) = f.pasid {
        PASID_PRESENT.set(&mut w, 1);
        PASID.set(&mut w, p.into());
    }
    RD.set(&mut w, f.access.contains(Access::READ).into());
    WR.set(&mut w, f.access.contains(Access::WRITE).into());
    EXE.set(&mut w, f.access.contains(Access::EXEC).into());
    PM.set(&mut w, f.access.contains(Access::PRIV).into());
    LPIG.set(&mut w, f.last.into());
    PRGI.set(&mut w, f.group.into());
    ADDR.set_in_place(&mut w, f.addr);
    w
}
