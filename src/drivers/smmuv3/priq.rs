//! PRI queue records (SMMUv3 architecture, "PRI queue entries"): two
//! 64-bit words each, one PCIe page request, written by the SMMU into the
//! PRI queue.

use crate::core::{Access, Fault, FaultKind};
use crate::drivers::bits::Field;

/// Words in a record.
pub const DWORDS: usize = 2;
/// Bytes in a record.
pub const BYTES: u64 = 16;

/// StreamID.
pub const SID: Field = Field::new(0, 31, 0);
/// SubstreamID (PASID).
pub const SSID: Field = Field::new(0, 51, 32);
/// Privileged access requested.
pub const PRIV: Field = Field::bit(0, 58);
/// Execute requested.
pub const EXEC: Field = Field::bit(0, 59);
/// Read requested.
pub const READ: Field = Field::bit(0, 60);
/// Write requested.
pub const WRITE: Field = Field::bit(0, 61);
/// Last request of its group.
pub const LAST: Field = Field::bit(0, 62);
/// SubstreamID valid.
pub const SSV: Field = Field::bit(0, 63);
/// Page request group index.
pub const GRPID: Field = Field::new(1, 8, 0);
/// Page address, bits 63:12 in place.
pub const ADDR: Field = Field::new(1, 63, 12);

/// Decode a record of SMMU `instance` into a page request. Every record
/// between CONS and PROD is one, even with every field zero (StreamID 0,
/// group 0, address 0 is a request that must be answered), so there is no
/// "nothing written" value.
pub fn decode(instance: u16, words: [u64; DWORDS]) -> Fault {
    let mut access = Access::empty();
    for (f, a) in [
        (READ, Access::READ),
        (WRITE, Access::WRITE),
        (EXEC, Access::EXEC),
        (PRIV, Access::PRIV),
    ] {
        if f.get(&words) != 0 {
            access |= a;
        }
    }
    Fault {
        instance,
        device: SID.get(&words) as u32,
        pasid: (SSV.get(&words) != 0).then(|| SSID.get(&words) as u32),
        addr: ADDR.get_in_place(&words),
        access,
        group: GRPID.get(&words) as u16,
        last: LAST.get(&words) != 0,
        kind: FaultKind::PageRequest,
        reason: 0,
    }
}

/// A record's words, for tests and models (the inverse of [`decode`]).
pub fn encode(f: &Fault) -> [u64; DWORDS] {
    let mut w = [0; DWORDS];
    SID.set(&mut w, f.device.into());
    if let Some(p) = f.pasid {
        SSV.set(&mut w, 1);
        SSID.set(&mut w, p.into());
    }
    READ.set(&mut w, f.access.contains(Access::READ).into());
    WRITE.set(&mut w, f.access.contains(Access::WRITE).into());
    EXEC.set(&mut w, f.access.contains(Access::EXEC).into());
    PRIV.set(&mut w, f.access.contains(Access::PRIV).into());
    LAST.set(&mut w, f.last.into());
    GRPID.set(&mut w, f.group.into());
    ADDR.set_in_place(&mut w, f.addr);
    w
}
