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
fn huge_cells_in_reg_are_bad_property() {
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

/// `dev@0` under a bus of one address and one size cell, whose parent (the
/// root) has `root_address` address cells: translating its address must be
/// Untranslatable, in Node::translate and through platform().
fn assert_untranslatable_under_root_cells(root_address: u32) {
    let blob = bus_tree([root_address, 1], [1, 1], &[0, 0, 0x1000], &[0, 0x100]);
    let fdt = Fdt::new(&blob).unwrap();
    let dev = node(&fdt, "dev@0");
    assert_eq!(dev.translate(0), Err(Error::Untranslatable));
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::Untranslatable);
}

#[test]
fn huge_cells_in_translate_address_sum_are_untranslatable() {
    // The bus's #address-cells + its parent's (ca + pa) overflowed u32 in
    // Node::translate: 1 + u32::MAX.
    assert_untranslatable_under_root_cells(u32::MAX);
}

#[test]
fn huge_cells_in_translate_size_sum_are_untranslatable() {
    // (ca + pa) fitted (1 + u32::MAX - 1) but adding the bus's #size-cells
    // ((ca + pa) + sz) overflowed u32 in Node::translate.
    assert_untranslatable_under_root_cells(u32::MAX - 1);
}

/// A bus with cells (`ca`, `sz`) and a `ranges` under a root of two and two
/// cells, beside a memory node: address_limit skips the bus's ranges like
/// any it cannot decode and still sees the memory.
fn assert_address_limit_skips_bus_cells(ca: u32, sz: u32) {
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

#[test]
fn huge_cells_in_address_limit_address_sum_are_skipped() {
    // address_limit summed a node's #address-cells and its parent's for the
    // ranges entry size: u32::MAX + 2 overflowed (ca + pa).
    assert_address_limit_skips_bus_cells(u32::MAX, 1);
}

#[test]
fn huge_cells_in_address_limit_size_sum_are_skipped() {
    // (ca + pa) fitted, adding #size-cells overflowed ((ca + pa) + sz).
    assert_address_limit_skips_bus_cells(u32::MAX - 2, 1);
    assert_address_limit_skips_bus_cells(1, u32::MAX);
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

#[test]
fn ranges_parent_near_2_64_is_overflow_not_a_wrapped_address() {
    // Bus addresses 0..0x10000 map to 0xffff_ffff_ffff_f000..: the entry runs
    // past 2^64. Translating 0x2000 computed parent + 0x2000, which wrapped
    // to 0x1000 in release builds (and panicked in debug builds). The check
    // is checked arithmetic, not an overflow check: `cargo test --release`
    // (no overflow checks) runs this same test.
    let blob = bus_tree(
        [2, 2],
        [1, 1],
        &[0, 0xffff_ffff, 0xffff_f000, 0x1_0000],
        &[0x2000, 0x1000],
    );
    let fdt = Fdt::new(&blob).unwrap();
    let dev = node(&fdt, "dev@0");
    assert_eq!(dev.translate(0x2000), Err(Error::Overflow("ranges")));
    // The entry itself is bad: even an address whose translation fits is refused.
    assert_eq!(dev.translate(0x800), Err(Error::Overflow("ranges")));
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::Overflow("ranges"));
    // address_limit skips what it cannot translate instead of saturating.
    assert_eq!(address_limit(&fdt), Ok(0));

    // The same bus one page lower fits and translates.
    let blob = bus_tree(
        [2, 2],
        [1, 1],
        &[0, 0xffff_ffff, 0xfffe_f000, 0x1_0000],
        &[0x2000, 0x1000],
    );
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        node(&fdt, "dev@0").translate(0x2000),
        Ok(0xffff_ffff_ffff_1000)
    );
    let p = platform(&fdt, "t").unwrap();
    assert_eq!(
        p.ram.as_slice(),
        &[Region {
            base: 0xffff_ffff_ffff_1000,
            size: 0x1000
        }]
    );
}

#[test]
fn ranges_child_side_past_2_64_is_overflow() {
    let blob = bus_tree(
        [2, 2],
        [2, 1],
        &[0xffff_ffff, 0xffff_0000, 0, 0, 0x2_0000],
        &[0xffff_ffff, 0xffff_1000, 0x100],
    );
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        node(&fdt, "dev@0").translate(0xffff_ffff_ffff_1000),
        Err(Error::Overflow("ranges"))
    );
}

#[test]
fn reg_past_2_64_is_overflow() {
    // A region whose end runs past 2^64 (Region::end saturated it).
    let mut w = Writer::default();
    w.begin("")
        .prop("#address-cells", V::Cells(&[2]))
        .prop("#size-cells", V::Cells(&[2]))
        .begin("memory@0")
        .prop("device_type", V::Str("memory"))
        .prop("reg", V::Cells(&[0xffff_ffff, 0xffff_f000, 0, 0x2000]))
        .end()
        .end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    let regs: StdVec<_> = node(&fdt, "memory@0").reg().unwrap().collect();
    assert_eq!(regs, [Err(Error::Overflow("reg"))]);
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::Overflow("reg"));
    assert_eq!(address_limit(&fdt), Ok(0));

    // Its base in a ranges entry that fits, but its end past 2^64 once translated.
    let blob = bus_tree(
        [2, 2],
        [1, 1],
        &[0, 0xffff_ffff, 0xfffe_0000, 0x1_0000],
        &[0xf000, 0x2_0000],
    );
    let fdt = Fdt::new(&blob).unwrap();
    let regions: StdVec<_> = node(&fdt, "dev@0").reg_regions().unwrap().collect();
    assert_eq!(regions, [Err(Error::Overflow("reg"))]);
}

#[test]
fn pci_window_past_2_64_is_overflow() {
    // CPU side: 0xffff_ffff_ffff_0000 + 1 MiB.
    let blob = synthetic(|w| {
        w.prop(
            "ranges",
            V::Cells(&[0x4300_0000, 0, 0, 0xffff_ffff, 0xffff_0000, 0x10_0000]),
        );
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::Overflow("ranges"));
    // PCI side: 0xffff_ffff_ffff_0000 + 1 MiB.
    let blob = synthetic(|w| {
        w.prop(
            "ranges",
            V::Cells(&[0x4300_0000, 0xffff_ffff, 0xffff_0000, 0, 0, 0x10_0000]),
        );
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(platform(&fdt, "t").unwrap_err(), Error::Overflow("ranges"));
}

#[test]
fn iommu_map_stream_ids_past_2_32_are_bad_property() {
    // RIDs 0..0x100 to StreamIDs 0xffff_ff80..: the last RIDs' StreamIDs do
    // not fit in 32 bits (pci::coverage added the offset in u32).
    let blob = synthetic(|w| {
        w.prop("iommu-map", V::Cells(&[0, 7, 0xffff_ff80, 0x100]));
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        platform(&fdt, "t").unwrap_err(),
        Error::BadProperty("iommu-map")
    );
    // Ending exactly at 2^32 is fine.
    let blob = synthetic(|w| {
        w.prop("iommu-map", V::Cells(&[0, 7, 0xffff_ff00, 0x100]));
    });
    let p = platform(&Fdt::new(&blob).unwrap(), "t").unwrap();
    assert_eq!(p.rid_maps[0].sid_base, 0xffff_ff00);
}

#[test]
fn duplicate_cell_counts_use_the_first_like_property_does() {
    // A node giving #address-cells twice (invalid) decoded its children's
    // reg with the last value while Node::property found the first.
    let mut w = Writer::default();
    w.begin("")
        .prop("#address-cells", V::Cells(&[1]))
        .prop("#size-cells", V::Cells(&[1]))
        .prop("#address-cells", V::Cells(&[2]))
        .begin("memory@0")
        .prop("device_type", V::Str("memory"))
        .prop("reg", V::Cells(&[0x4000_0000, 0x1000]))
        .end()
        .end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    let root = fdt.root().unwrap();
    assert_eq!(root.property("#address-cells"), Some(&[0, 0, 0, 1][..]));
    assert_eq!(root.cells().address, 1);
    let p = platform(&fdt, "t").unwrap();
    assert_eq!(
        p.ram.as_slice(),
        &[Region {
            base: 0x4000_0000,
            size: 0x1000
        }]
    );
    // The second value is still checked.
    let mut w = Writer::default();
    w.begin("")
        .prop("#size-cells", V::Cells(&[1]))
        .prop("#size-cells", V::Raw(&[0, 0]))
        .end();
    let blob = w.finish();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.root().unwrap_err(), Error::BadProperty("#size-cells"));
}
