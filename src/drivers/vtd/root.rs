//! Root-table entries (VT-d specification 9.1 "Root Entry", 9.2 "Scalable-Mode
//! Root Entry"): 256 entries of 128 bits, one per PCI bus, each pointing at
//! the bus's context table(s).

use crate::drivers::bits::Field;

/// Entries in a root table (one per bus).
pub const ENTRIES: usize = 256;
/// 64-bit words per entry.
pub const WORDS: usize = 2;

/// Legacy: present.
pub const P: Field = Field::bit(0, 0);
/// Legacy: context-table pointer, bits 63:12 in place.
pub const CTP: Field = Field::new(0, 63, 12);

/// Scalable: lower context table (devfn 0..128) present.
pub const LP: Field = Field::bit(0, 0);
/// Scalable: lower context-table pointer, bits 63:12 in place.
pub const LCTP: Field = Field::new(0, 63, 12);
/// Scalable: upper context table (devfn 128..256) present.
pub const UP: Field = Field::bit(1, 0);
/// Scalable: upper context-table pointer, bits 63:12 in place.
pub const UCTP: Field = Field::new(1, 63, 12);

/// A legacy root entry pointing at the context table at `table`.
pub fn legacy(table: u64) -> [u64; WORDS] {
    let mut e = [0; WORDS];
    CTP.set_in_place(&mut e, table);
    P.set(&mut e, 1);
    e
}

/// A scalable-mode root entry pointing at the lower and upper context
/// tables (`None`: not present).
pub fn scalable(lower: Option<u64>, upper: Option<u64>) -> [u64; WORDS] {
    let mut e = [0; WORDS];
    if let Some(t) = lower {
        LCTP.set_in_place(&mut e, t);
        LP.set(&mut e, 1);
    }
    if let Some(t) = upper {
        UCTP.set_in_place(&mut e, t);
        UP.set(&mut e, 1);
    }
    e
}
