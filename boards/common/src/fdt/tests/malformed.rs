//! Malformed trees that once overflowed, panicked or translated wrong: each
//! now gives its typed error (or the right answer).

use super::*;

#[test]
fn v16_struct_offset_past_totalsize_is_bad_header() {
    // Version 16 has no size_dt_struct: with the strings before the
    // structure block, the block ran to totalsize - off_dt_struct, which
    // underflowed when off_dt_struct was past totalsize.
    let mut blob = Writer::default().begin("").end().finish();
    set_header(&mut blob, 5, 16); // version
    set_header(&mut blob, 6, 16); // last_comp_version
    set_header(&mut blob, 2, 0x1000); // off_dt_struct, past totalsize
    assert_eq!(Fdt::new(&blob).unwrap_err(), Error::BadHeader);
}
