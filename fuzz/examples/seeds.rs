//! Writes a small seed corpus for each fuzz target into `corpus/<target>/`
//! (next to this crate's Cargo.toml): valid records built with the crate's
//! own encoders, plus a few refusals near the edges.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`

use std::fs;
use std::path::Path;

use iommu::core::{Access, Fault, FaultKind};
use iommu::drivers::smmuv3::user::{SmmuV3Inv, SmmuV3Ste, SmmuV3SteCaps, TlbiRange};
use iommu::drivers::smmuv3::{evtq, priq};
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

    // smmu_ste: entries the crate accepts, re-encoded with `to_bytes`.
    let smmu_all = SmmuV3SteCaps {
        ssid_bits: 20,
        oas_bits: 48,
        two_level_cd: true,
    };
    let smmu_none = SmmuV3SteCaps {
        ssid_bits: 0,
        oas_bits: 40,
        two_level_cd: false,
    };
    // Dword 0: V 0, Config 3:1, S1Fmt 5:4, S1ContextPtr 51:6, S1CDMax
    // 63:59; dword 1: S1DSS 1:0, S1CIR/COR/CSH 7:2, S1STALLD 27, EATS 29:28.
    let ste0 =
        |cfg: u64, fmt: u64, ptr: u64, cd_max: u64| 1 | cfg << 1 | fmt << 4 | ptr | cd_max << 59;
    let mut stes = Vec::new();
    for (caps, words) in [
        // Invalid (V = 0), with junk: kept as zeros.
        (smmu_none, [0xdead_beef_0000_0000, u64::MAX]),
        // Abort, bypass.
        (smmu_none, [ste0(0b000, 0, 0, 0), 0]),
        (smmu_none, [ste0(0b100, 0, 0, 0), 1 << 28]),
        // Stage 1, one descriptor, then with substreams.
        (
            smmu_none,
            [ste0(0b101, 0, 0x1000, 0), 0b01_01_01 << 2 | 1 << 28],
        ),
        (smmu_all, [ste0(0b101, 1, 0x8000_0040, 8), 1 | 1 << 27]),
        (
            smmu_all,
            [ste0(0b101, 2, 0xffff_ffff_ffc0, 20), 2 | 1 << 28],
        ),
    ] {
        let v = SmmuV3Ste::from_words(words, &caps).expect("seed STE accepted");
        stes.push(input::ste::encode(&caps, &v.to_bytes()));
        let mut long = v.to_bytes().to_vec();
        long.resize(24, 0);
        stes.push(input::ste::encode(&caps, &long));
    }
    write("smmu_ste", &stes);

    // smmu_cmds: arrays of commands built with `to_bytes`, naming the
    // guest's virtual StreamIDs.
    let ids = [(1, 0x100), (2, 0x200), (0x8, 0x10_0008)];
    let range = |addr, tg, num| TlbiRange {
        addr,
        leaf: true,
        num,
        scale: 0,
        tg,
        ttl: if tg == 0 { 0 } else { 3 },
    };
    let cmd_list = [
        SmmuV3Inv::TlbiNhAll,
        SmmuV3Inv::TlbiNhAsid { asid: 7 },
        SmmuV3Inv::TlbiNhVa {
            asid: 7,
            range: range(0x4000_0000, 0, 0),
        },
        SmmuV3Inv::TlbiNhVaa {
            range: range(0x20_0000, 1, 31),
        },
        SmmuV3Inv::AtcInv {
            sid: 1,
            ssid: Some(5),
            addr: 0x10_0000,
            size: 8,
            global: true,
        },
        SmmuV3Inv::AtcInv {
            sid: 2,
            ssid: None,
            addr: 0,
            size: 52,
            global: false,
        },
        SmmuV3Inv::CfgiCd {
            sid: 8,
            ssid: 3,
            leaf: true,
        },
        SmmuV3Inv::CfgiCdAll { sid: 1 },
    ];
    let b: Vec<[u8; 16]> = cmd_list.iter().map(SmmuV3Inv::to_bytes).collect();
    for (c, bytes) in cmd_list.iter().zip(&b) {
        assert_eq!(SmmuV3Inv::parse(bytes), Ok(*c));
    }
    let smmu_cmds = vec![
        input::cmds::encode(&ids, 16, &[&b[0]]),
        input::cmds::encode(&ids, 16, &[&b[0], &b[1], &b[2], &b[3]]),
        input::cmds::encode(&ids, 16, &[&b[4], &b[5], &b[6], &b[7]]),
        input::cmds::encode(&ids[..1], 24, &[&b[7], &b[2], &b[4]]),
        // The guest does not have virtual StreamID 8.
        input::cmds::encode(&ids[..2], 16, &[&b[1], &b[6]]),
    ];
    write("smmu_cmds", &smmu_cmds);

    // smmu_evt: events built with `evtq::encode`.
    let event = |device, pasid, addr, access, stall: Option<u16>, reason| Fault {
        instance: 0,
        device,
        pasid,
        addr,
        access,
        group: stall.unwrap_or(0),
        last: true,
        kind: if stall.is_some() {
            FaultKind::Stall
        } else {
            FaultKind::Unrecoverable
        },
        reason,
    };
    let mut evts = Vec::new();
    for (instance, f) in [
        (
            0u16,
            event(0x10, None, 0x1234_5678, Access::READ, None, 0x10),
        ),
        (
            1,
            event(
                0x8_0000,
                Some(0x42),
                0xffff_0000_dead_b000,
                Access::WRITE | Access::PRIV,
                Some(0x1234),
                0x13,
            ),
        ),
        (
            2,
            event(
                u32::MAX,
                Some(0xf_ffff),
                0,
                Access::READ | Access::EXEC,
                None,
                0x04,
            ),
        ),
    ] {
        let words = evtq::encode(&f);
        assert_eq!(evtq::decode(0, words), Some(f));
        evts.push(input::evt::encode(instance, words));
    }
    write("smmu_evt", &evts);

    // smmu_pri: page requests built with `priq::encode`.
    let mut pris = Vec::new();
    for (instance, f) in [
        (0u16, req(0x0010, None, 0x4000_0000, Access::READ, 0, true)),
        (
            1,
            req(
                0x8_0000,
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
                u32::MAX,
                Some(0xf_ffff),
                0xffff_ffff_ffff_f000,
                Access::all(),
                0x1ff,
                true,
            ),
        ),
    ] {
        let words = priq::encode(&f);
        assert_eq!(priq::decode(0, words), f);
        pris.push(input::pri::encode(instance, words));
    }
    write("smmu_pri", &pris);

    firmware_seeds();
}

/// Physical memory from address 0 (the `acpi` target's view of its image).
struct Image(Vec<u8>);

impl iommu_board::acpi::PhysMem for Image {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        self.0.get(start..start.checked_add(len)?)
    }
}

/// `fdt` and `acpi`: the QEMU virt device trees and q35 ACPI tables the
/// readers' tests use, each as read and, for the device trees, with
/// `totalsize` patched to the blob's length.
fn firmware_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| fs::read(root.join(p)).unwrap();
    let mut dtbs = Vec::new();
    for name in ["virt-smmuv3.dtb", "virt-smmuv3-lowecam-3g.dtb"] {
        let blob = read(&format!("boards/common/src/testdata/{name}"));
        let fdt = iommu_board::fdt::Fdt::new(&blob).expect("the seed reads");
        let p = iommu_board::fdt::platform(&fdt, "seed").expect("the seed is discovered");
        assert!(!p.ram.is_empty() && !p.windows.is_empty() && !p.rid_maps.is_empty());
        dtbs.push(input::firmware::fdt::encode(false, &blob));
        dtbs.push(input::firmware::fdt::encode(true, &blob));
    }
    write("fdt", &dtbs);

    let mut acpis = Vec::new();
    for dir in ["qemu10-256m", "qemu10-3g"] {
        let tables: Vec<Vec<u8>> = ["MCFG", "DMAR", "FACP", "DSDT"]
            .iter()
            .map(|t| read(&format!("boards/q35/testdata/{dir}/{t}.bin")))
            .collect();
        let bodies: Vec<&[u8]> = tables.iter().map(|t| &t[36..]).collect();
        let bodies = [bodies[0], bodies[1], bodies[2], bodies[3]];
        // RSDT and XSDT; then each table on its own in raw form.
        for flags in [0, 1] {
            let seed = input::firmware::acpi::encode(flags, bodies);
            // The seed's memory image is discovered whole, windows included.
            let (image, _) = input::firmware::acpi::image(&input::firmware::acpi::decode(&seed));
            let mut p = iommu_board::platform::Platform::default();
            let mem = Image(image);
            iommu_board::acpi::discover(&mem, 0, &mut p).expect("the seed is discovered");
            assert!(!p.ecam.is_empty() && !p.iommus.is_empty() && !p.windows.is_empty());
            acpis.push(seed);
        }
        acpis.extend(tables);
    }
    write("acpi", &acpis);
}
