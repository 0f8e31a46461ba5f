//! Writes a small seed corpus for each fuzz target into `corpus/<target>/`
//! (next to this crate's Cargo.toml): valid records built with the crate's
//! own encoders, plus a few refusals near the edges.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`

use std::fs;
use std::path::Path;

use iommu::core::{Access, Fault, FaultKind};
use iommu::drivers::vtd::user::{VtdS1, VtdS1Caps, VtdS1Inv};
use iommu::drivers::vtd::{fault, prq};
use iommu_fuzz as input;

fn write(target: &str, seeds: &[Vec<u8>]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    for (i, s) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
    }
    println!("{}: {} seeds in {}", target, seeds.len(), dir.display());
}

/// A raw `iommu_hwpt_vtd_s1`.
fn s1_raw(flags: u64, pgtbl: u64, width: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..8].copy_from_slice(&flags.to_le_bytes());
    b[8..16].copy_from_slice(&pgtbl.to_le_bytes());
    b[16..20].copy_from_slice(&width.to_le_bytes());
    b
}

fn main() {
    // vtd_s1: records the crate accepts, re-encoded with `to_bytes`.
    let all = VtdS1Caps {
        five_level: true,
        max_pa_bits: 52,
        sre: true,
        eafe: true,
    };
    let none = VtdS1Caps {
        five_level: false,
        max_pa_bits: 39,
        sre: false,
        eafe: false,
    };
    let mut s1 = Vec::new();
    for (caps, raw) in [
        (none, s1_raw(0, 0x1000, 48)),
        (none, s1_raw(4, 0x7f_ffff_f000, 48)),
        (all, s1_raw(7, 0xf_ffff_ffff_f000, 57)),
        (all, s1_raw(1, 0x20_0000, 48)),
    ] {
        let v = VtdS1::parse(&raw, &caps).expect("seed record accepted");
        s1.push(input::s1::encode(&caps, &v.to_bytes()));
        // The same record in a longer, zero-padded buffer.
        let mut long = v.to_bytes().to_vec();
        long.resize(32, 0);
        s1.push(input::s1::encode(&caps, &long));
    }
    write("vtd_s1", &s1);

    // vtd_inv_array: arrays of entries built with `to_bytes`.
    let range = |addr, npages, leaf| VtdS1Inv::Range { addr, npages, leaf }.to_bytes();
    let all_inv = VtdS1Inv::All.to_bytes();
    let r1 = range(0x1000, 1, false);
    let r2 = range(0x20_0000, 512, true);
    let top = range(0xffff_ffff_ffff_f000, 1, false);
    let inv = vec![
        input::inv_array::encode(24, &[&r1]),
        input::inv_array::encode(24, &[&all_inv, &r1, &r2]),
        input::inv_array::encode(32, &[&r2, &top, &all_inv]),
        input::inv_array::encode(24, &[&r1, &r2, &top, &all_inv]),
    ];
    for entry in [&r1, &r2, &top, &all_inv] {
        assert!(VtdS1Inv::parse(entry).is_ok());
    }
    write("vtd_inv_array", &inv);

    // vtd_fault: records with F set (there is no encoder; each is checked
    // to decode), and one with F clear.
    let f_bit = 1u64 << 63;
    let mut faults = Vec::new();
    for (instance, words) in [
        (0u16, [0x1234_5000, f_bit | 0x06 << 32 | 1 << 62 | 0x0010]),
        (
            1,
            [
                0xdead_b000,
                f_bit | 0x59 << 32 | 1 << 31 | 0x42 << 40 | 0x00f8,
            ],
        ),
        (
            2,
            [0xffff_ffff_ffff_f000, f_bit | 0x05 << 32 | 3 << 29 | 0xffff],
        ),
        (0, [0x1000, 0x05 << 32]),
    ] {
        assert_eq!(
            fault::decode(instance, words).is_some(),
            words[1] & f_bit != 0
        );
        faults.push(input::fault::encode(instance, words));
    }
    write("vtd_fault", &faults);

    // vtd_prq: page requests built with `prq::encode`.
    let req = |device, pasid, addr, access, group, last| Fault {
        instance: 0,
        device,
        pasid,
        addr,
        access,
        group,
        last,
        kind: FaultKind::PageRequest,
        reason: 0,
    };
    let mut prqs = Vec::new();
    for (instance, f) in [
        (0u16, req(0x0010, None, 0x4000_0000, Access::READ, 0, true)),
        (
            1,
            req(
                0x00f8,
                Some(1),
                0x7fff_f000,
                Access::READ | Access::WRITE,
                5,
                false,
            ),
        ),
        (
            3,
            req(
                0xffff,
                Some(0xf_ffff),
                0xffff_ffff_ffff_f000,
                Access::all(),
                0x1ff,
                true,
            ),
        ),
    ] {
        let words = prq::encode(&f);
        assert_eq!(prq::decode(0, words), Some(f));
        prqs.push(input::prq::encode(instance, words));
    }
    write("vtd_prq", &prqs);
}
