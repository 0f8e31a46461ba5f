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

/// The node called `name` (checked tree).
fn node<'a>(fdt: &Fdt<'a>, name: &str) -> Node<'a> {
    fdt.nodes()
        .map(Result::unwrap)
        .find(|n| n.name() == name)
        .unwrap()
}

/// Root with the given cells, a bus `bus@0` with its own cells and an
/// identity-offset `ranges` of `ranges`, and `dev@0` under the bus with a
/// `reg` of `reg`.
fn bus_tree(root: [u32; 2], bus: [u32; 2], ranges: &[u32], reg: &[u32]) -> StdVec<u8> {
    let mut w = Writer::default();
    w.begin("")
        .prop("#address-cells", V::Cells(&[root[0]]))
        .prop("#size-cells", V::Cells(&[root[1]]))
        .begin("bus@0")
        .prop("#address-cells", V::Cells(&[bus[0]]))
        .prop("#size-cells", V::Cells(&[bus[1]]))
        .prop("ranges", V::Cells(ranges))
        .begin("dev@0")
        .prop("device_type", V::Str("memory"))
        .prop("reg", V::Cells(reg))
        .end()
        .end()
        .end();
    w.finish()
}

#[test]
fn huge_address_cells_in_reg_is_bad_property() {
    // #address-cells + #size-cells overflowed u32 in Node::reg.
    for root in [[u32::MAX, 1], [1, u32::MAX], [u32::MAX, u32::MAX]] {
        let blob = bus_tree(root, [1, 1], &[], &[0, 0]);
        let fdt = Fdt::new(&blob).unwrap();
        assert!(matches!(
            node(&fdt, "bus@0").reg(),
            Err(Error::BadProperty("reg"))
        ));
        // The bus has no reg, but the walk over it must not fail either.
        assert_eq!(address_limit(&fdt), Ok(0));
    }
    // The memory node under such a root, through platform().
    let mut w = Writer::default();
    w.begin("")
        .prop("#address-cells", V::Cells(&[u32::MAX]))
        .prop("#size-cells", V::Cells(&[1]))
        .begin("memory@0")
        .prop("device_type", V::Str("memory"))
        .prop("reg", V::Cells(&[0, 0x1000]))
        .end()
        .end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::BadProperty("reg"));
}

#[test]
fn huge_parent_address_cells_in_translate_is_untranslatable() {
    // The bus's #address-cells + its parent's overflowed u32 in
    // Node::translate (ca + pa), then with #size-cells ((ca + pa) + sz).
    for root_address in [u32::MAX, u32::MAX - 1] {
        let blob = bus_tree([root_address, 1], [1, 1], &[0, 0, 0x1000], &[0, 0x100]);
        let fdt = Fdt::new(&blob).unwrap();
        let dev = node(&fdt, "dev@0");
        assert_eq!(dev.translate(0), Err(Error::Untranslatable));
        assert_eq!(
            platform(&fdt, "t").unwrap_err(),
            Error::Untranslatable,
            "root #address-cells {root_address:#x}"
        );
    }
}

#[test]
fn huge_cells_in_address_limit_ranges_are_skipped() {
    // address_limit summed a node's #address-cells, its parent's and its
    // #size-cells for the ranges entry size: (ca + pa) and then (+ sz)
    // overflowed. Such ranges are skipped like any it cannot decode.
    for (ca, sz) in [(u32::MAX, 1), (u32::MAX - 2, 1), (1, u32::MAX)] {
        let mut w = Writer::default();
        w.begin("")
            .prop("#address-cells", V::Cells(&[2]))
            .prop("#size-cells", V::Cells(&[2]))
            .begin("bus@0")
            .prop("#address-cells", V::Cells(&[ca]))
            .prop("#size-cells", V::Cells(&[sz]))
            .prop("ranges", V::Cells(&[0, 0, 0x10, 0x1000]))
            .end()
            .begin("memory@0")
            .prop("device_type", V::Str("memory"))
            .prop("reg", V::Cells(&[0, 0x4000_0000, 0, 0x1000]))
            .end()
            .end();
        let blob = w.finish();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(
            address_limit(&fdt),
            Ok(0x4000_1000),
            "cells {ca:#x} {sz:#x}"
        );
    }
}

#[test]
fn cells_beyond_a_u64_address_are_rejected() {
    // Three address cells are accepted only when the value fits in 64 bits.
    let mut w = Writer::default();
    w.begin("")
        .prop("#address-cells", V::Cells(&[3]))
        .prop("#size-cells", V::Cells(&[1]))
        .begin("memory@0")
        .prop("device_type", V::Str("memory"))
        .prop("reg", V::Cells(&[0, 1, 0, 0x1000]))
        .end()
        .begin("memory@1")
        .prop("device_type", V::Str("memory"))
        .prop("reg", V::Cells(&[1, 0, 0, 0x1000]))
        .end()
        .end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    let ok: StdVec<_> = node(&fdt, "memory@0").reg().unwrap().collect();
    assert_eq!(ok, [Ok((0x1_0000_0000, 0x1000))]);
    let big: StdVec<_> = node(&fdt, "memory@1").reg().unwrap().collect();
    assert_eq!(big, [Err(Error::BadProperty("reg"))]);
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::BadProperty("reg"));
    // Five cells are more than the reader decodes at all.
    let blob = bus_tree([5, 1], [1, 1], &[], &[0]);
    let fdt = Fdt::new(&blob).unwrap();
    assert!(matches!(
        node(&fdt, "bus@0").reg(),
        Err(Error::BadProperty("reg"))
    ));
}
