//! The drivers' nested user data and user invalidation arrays (VT-d
//! `drivers::vtd::user`, SMMUv3 `drivers::smmuv3::user`): good and bad
//! encodings, and property tests over arbitrary bytes.
//!
//! Bit positions are written out here from the specifications (Linux
//! iommufd uAPI, SMMUv3 STE and command layouts), independently of the
//! library's own constants.

use iommu::Error;
use iommu::core::{InvalidateOutcome, UserArray, VirtualIds};
use iommu::drivers::smmuv3::user::{
    self as smmu_user, CdTableFormat, HWPT_DATA_ARM_SMMUV3, INVALIDATE_DATA_ARM_SMMUV3, S1Dss,
    SmmuV3Inv, SmmuV3Ste, SmmuV3SteCaps, SteConfig, TlbiRange,
};
use iommu::drivers::vtd::user::{
    self as vtd_user, HWPT_DATA_VTD_S1, INVALIDATE_DATA_VTD_S1, VtdS1, VtdS1Caps, VtdS1Flags,
    VtdS1Inv,
};
use proptest::prelude::*;

/// Which driver's invalidation format an array is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    VtdS1,
    SmmuV3,
}

/// One validated entry, of either driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UserInv {
    Vtd(VtdS1Inv),
    SmmuV3(SmmuV3Inv),
}

/// Virtual IDs as the identity: every StreamID resolves to itself.
struct SameIds;

impl VirtualIds for SameIds {
    fn resolve(&self, virtual_id: u32) -> Option<u32> {
        Some(virtual_id)
    }
}

// ---------------------------------------------------------------------------
// Encoders and spec bit positions (test-local).

/// Bits hi..=lo, built bit by bit.
fn bits(hi: u32, lo: u32) -> u64 {
    (lo..=hi).fold(0, |acc, b| acc | (1u64 << b))
}

fn vtd_rec(flags: u64, addr: u64, aw: u32, reserved: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&addr.to_le_bytes());
    v.extend_from_slice(&aw.to_le_bytes());
    v.extend_from_slice(&reserved.to_le_bytes());
    v
}

fn words(w0: u64, w1: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&w0.to_le_bytes());
    v.extend_from_slice(&w1.to_le_bytes());
    v
}

fn vinv(addr: u64, npages: u64, flags: u32, reserved: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&addr.to_le_bytes());
    v.extend_from_slice(&npages.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&reserved.to_le_bytes());
    v
}

// STE word 0 (SMMUv3 spec, STE layout).
const V: u64 = 1;
fn cfg(c: u64) -> u64 {
    c << 1
}
fn s1fmt(f: u64) -> u64 {
    f << 4
}
fn cdmax(n: u64) -> u64 {
    n << 59
}
// STE word 1.
fn s1dss(d: u64) -> u64 {
    d
}
fn s1cir(c: u64) -> u64 {
    c << 2
}
fn s1cor(c: u64) -> u64 {
    c << 4
}
fn s1csh(c: u64) -> u64 {
    c << 6
}
const S1STALLD: u64 = 1 << 27;
fn eats(e: u64) -> u64 {
    e << 28
}

/// Permitted bits of STE word 0: V, Config, S1Fmt, S1ContextPtr, S1CDMax.
fn ste0_allowed() -> u64 {
    bits(0, 0) | bits(3, 1) | bits(5, 4) | bits(51, 6) | bits(63, 59)
}
/// Permitted bits of STE word 1: S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
fn ste1_allowed() -> u64 {
    bits(1, 0) | bits(3, 2) | bits(5, 4) | bits(7, 6) | bits(27, 27) | bits(29, 28)
}

const CAPS_SMMU: SmmuV3SteCaps = SmmuV3SteCaps {
    ssid_bits: 20,
    oas_bits: 48,
    two_level_cd: true,
};

const CAPS_VTD: VtdS1Caps = VtdS1Caps {
    five_level: true,
    max_pa_bits: 48,
    sre: true,
    eafe: true,
};

fn inv(field: &'static str, value: u64) -> Error {
    Error::InvalidField { field, value }
}

// SMMUv3 command layouts (SMMUv3 spec, chapter 4).
const OP_CFGI_CD: u64 = 0x05;
const OP_CFGI_CD_ALL: u64 = 0x06;
const OP_NH_ALL: u64 = 0x10;
const OP_NH_ASID: u64 = 0x11;
const OP_NH_VA: u64 = 0x12;
const OP_NH_VAA: u64 = 0x13;
const OP_NSNH_ALL: u64 = 0x30;
const OP_ATC_INV: u64 = 0x40;

fn c_asid(a: u64) -> u64 {
    a << 48
}
fn c_vmid(v: u64) -> u64 {
    v << 32
}
fn c_sid(s: u64) -> u64 {
    s << 32
}
fn c_ssid(s: u64) -> u64 {
    s << 12
}
fn c_num(n: u64) -> u64 {
    n << 12
}
fn c_scale(s: u64) -> u64 {
    s << 20
}
const C_GLOBAL: u64 = 1 << 9;
const C_SSV: u64 = 1 << 11;
fn c_ttl(t: u64) -> u64 {
    t << 8
}
fn c_tg(t: u64) -> u64 {
    t << 10
}

/// The bits each permitted command may set in (word 0, word 1), opcode
/// included; VMID is part of the TLBI layouts (it must still be zero).
fn cmd_allowed(op: u64) -> Option<(u64, u64)> {
    let op_f = bits(7, 0);
    let range1 = bits(0, 0) | bits(9, 8) | bits(11, 10) | bits(63, 12);
    Some(match op {
        OP_NSNH_ALL => (op_f, 0),
        OP_NH_ALL => (op_f | bits(47, 32), 0),
        OP_NH_ASID => (op_f | bits(47, 32) | bits(63, 48), 0),
        OP_NH_VA => (
            op_f | bits(16, 12) | bits(24, 20) | bits(47, 32) | bits(63, 48),
            range1,
        ),
        OP_NH_VAA => (op_f | bits(16, 12) | bits(24, 20) | bits(47, 32), range1),
        OP_ATC_INV => (
            op_f | bits(9, 9) | bits(11, 11) | bits(31, 12) | bits(63, 32),
            bits(5, 0) | bits(63, 12),
        ),
        OP_CFGI_CD => (op_f | bits(31, 12) | bits(63, 32), bits(0, 0)),
        OP_CFGI_CD_ALL => (op_f | bits(63, 32), 0),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// VT-d stage 1.

#[test]
fn vtd_s1_good_encodings_decode_exactly() {
    let table: &[(Vec<u8>, VtdS1Caps, VtdS1Flags, u64, u32)] = &[
        (
            vtd_rec(0, 0x1000, 48, 0),
            CAPS_VTD,
            VtdS1Flags::empty(),
            0x1000,
            48,
        ),
        (
            vtd_rec(0b101, 0xffff_ffff_f000, 57, 0),
            CAPS_VTD,
            VtdS1Flags::SRE | VtdS1Flags::WPE,
            0xffff_ffff_f000,
            57,
        ),
        (vtd_rec(0b010, 0, 48, 0), CAPS_VTD, VtdS1Flags::EAFE, 0, 48),
        // WPE alone needs no capability.
        (
            vtd_rec(0b100, 0x7000, 48, 0),
            VtdS1Caps {
                five_level: false,
                max_pa_bits: 39,
                sre: false,
                eafe: false,
            },
            VtdS1Flags::WPE,
            0x7000,
            48,
        ),
        // A longer record whose extra bytes are zero.
        (
            [vtd_rec(0, 0x2000, 48, 0), vec![0; 16]].concat(),
            CAPS_VTD,
            VtdS1Flags::empty(),
            0x2000,
            48,
        ),
        // No address limit.
        (
            vtd_rec(0, 0xffff_ffff_ffff_f000, 48, 0),
            VtdS1Caps {
                max_pa_bits: 64,
                ..CAPS_VTD
            },
            VtdS1Flags::empty(),
            0xffff_ffff_ffff_f000,
            48,
        ),
    ];
    for (i, (bytes, caps, flags, addr, aw)) in table.iter().enumerate() {
        let v = VtdS1::parse(bytes, caps).unwrap_or_else(|e| panic!("row {i}: {e}"));
        assert_eq!(v.flags(), *flags, "row {i}");
        assert_eq!(v.pgtbl_addr(), *addr, "row {i}");
        assert_eq!(v.addr_width(), *aw, "row {i}");
        assert_eq!(v.levels(), if *aw == 57 { 5 } else { 4 }, "row {i}");
        assert_eq!(&v.to_bytes()[..], &bytes[..24], "row {i}");
    }
}

#[test]
fn vtd_s1_bad_fields_name_themselves() {
    let no_caps = VtdS1Caps {
        five_level: false,
        max_pa_bits: 48,
        sre: false,
        eafe: false,
    };
    let mut trailing = [vtd_rec(0, 0x1000, 48, 0), vec![0; 8]].concat();
    trailing[30] = 1;
    let table: Vec<(Vec<u8>, VtdS1Caps, Error)> = vec![
        (
            vtd_rec(0, 0x1000, 48, 0)[..23].to_vec(),
            CAPS_VTD,
            Error::OutOfRange {
                what: "user data length",
                value: 23,
            },
        ),
        (
            Vec::new(),
            CAPS_VTD,
            Error::OutOfRange {
                what: "user data length",
                value: 0,
            },
        ),
        (trailing, CAPS_VTD, inv("trailing bytes", 30)),
        (
            vtd_rec(0b1000, 0x1000, 48, 0),
            CAPS_VTD,
            inv("flags", 0b1000),
        ),
        (
            vtd_rec(1 << 63 | 1, 0x1000, 48, 0),
            CAPS_VTD,
            inv("flags", 1 << 63),
        ),
        (
            vtd_rec(0b001, 0x1000, 48, 0),
            no_caps,
            Error::Unsupported { what: "flags.SRE" },
        ),
        (
            vtd_rec(0b010, 0x1000, 48, 0),
            no_caps,
            Error::Unsupported { what: "flags.EAFE" },
        ),
        (
            vtd_rec(0, 0x1800, 48, 0),
            CAPS_VTD,
            inv("pgtbl_addr", 0x1800),
        ),
        (
            vtd_rec(0, 0x1001, 48, 0),
            CAPS_VTD,
            inv("pgtbl_addr", 0x1001),
        ),
        (
            vtd_rec(0, 1 << 48, 48, 0),
            CAPS_VTD,
            inv("pgtbl_addr", 1 << 48),
        ),
        (vtd_rec(0, 0x1000, 39, 0), CAPS_VTD, inv("addr_width", 39)),
        (vtd_rec(0, 0x1000, 0, 0), CAPS_VTD, inv("addr_width", 0)),
        (
            vtd_rec(0, 0x1000, 57, 0),
            no_caps,
            Error::Unsupported { what: "addr_width" },
        ),
        (vtd_rec(0, 0x1000, 48, 7), CAPS_VTD, inv("__reserved", 7)),
    ];
    for (i, (bytes, caps, want)) in table.iter().enumerate() {
        assert_eq!(VtdS1::parse(bytes, caps), Err(*want), "row {i}");
    }
}

// ---------------------------------------------------------------------------
// SMMUv3 virtual STE.

#[test]
fn ste_good_encodings_decode_exactly() {
    // Invalid entry with junk: accepted as a zeroed abort.
    let s = SmmuV3Ste::parse(&words(cfg(0b110) | 1 << 55, u64::MAX), &CAPS_SMMU).unwrap();
    assert!(!s.is_valid());
    assert_eq!(s.config(), SteConfig::Abort);
    assert_eq!(s.words(), [0, 0]);
    assert_eq!(s.s1_context_ptr(), None);
    assert!(!s.eats());

    let s = SmmuV3Ste::parse(&words(V | cfg(0), 0), &CAPS_SMMU).unwrap();
    assert!(s.is_valid());
    assert_eq!(s.config(), SteConfig::Abort);

    // Bypass: S1 fields carried but not interpreted; EATS ignored.
    let w = [V | cfg(0b100) | cdmax(31) | s1fmt(3), eats(1) | s1dss(3)];
    let s = SmmuV3Ste::parse(&words(w[0], w[1]), &CAPS_SMMU).unwrap();
    assert_eq!(s.config(), SteConfig::Bypass);
    assert_eq!(s.words(), w);
    assert_eq!(s.s1_fmt(), None);
    assert_eq!(s.s1dss(), None);
    assert_eq!(s.s1_cd_max(), None);
    assert!(!s.eats());

    // Full stage-1 entry.
    let ptr = 0x0000_8765_4321_0040u64;
    let w = [
        V | cfg(0b101) | s1fmt(2) | ptr | cdmax(8),
        s1dss(2) | s1cir(1) | s1cor(2) | s1csh(3) | S1STALLD | eats(1),
    ];
    let s = SmmuV3Ste::parse(&words(w[0], w[1]), &CAPS_SMMU).unwrap();
    assert_eq!(s.config(), SteConfig::S1Translate);
    assert_eq!(s.s1_context_ptr(), Some(ptr));
    assert_eq!(s.s1_cd_max(), Some(8));
    assert_eq!(s.s1_fmt(), Some(CdTableFormat::TwoLevel64K));
    assert_eq!(s.s1dss(), Some(S1Dss::Ssid0));
    assert!(s.eats());
    assert_eq!(s.words(), w);
    assert_eq!(SmmuV3Ste::parse(&s.to_bytes(), &CAPS_SMMU), Ok(s));

    // Other formats and S1DSS encodings.
    for (fmt, want_fmt, dss, want_dss) in [
        (0, CdTableFormat::Linear, 0, S1Dss::Terminate),
        (1, CdTableFormat::TwoLevel4K, 1, S1Dss::Bypass),
    ] {
        let s = SmmuV3Ste::parse(
            &words(V | cfg(0b101) | s1fmt(fmt) | cdmax(4), s1dss(dss)),
            &CAPS_SMMU,
        )
        .unwrap();
        assert_eq!(s.s1_fmt(), Some(want_fmt));
        assert_eq!(s.s1dss(), Some(want_dss));
        assert!(!s.eats());
    }

    // One descriptor: S1Fmt and S1DSS are ignored, even reserved encodings.
    let s = SmmuV3Ste::parse(
        &words(V | cfg(0b101) | s1fmt(3) | 0x1000, s1dss(3)),
        &SmmuV3SteCaps {
            ssid_bits: 0,
            oas_bits: 32,
            two_level_cd: false,
        },
    )
    .unwrap();
    assert_eq!(s.s1_fmt(), Some(CdTableFormat::Linear));
    assert_eq!(s.s1dss(), None);
    assert_eq!(s.s1_cd_max(), Some(0));

    // Zero trailing bytes are fine.
    let rec = [words(V | cfg(0b100), 0), vec![0; 8]].concat();
    assert!(SmmuV3Ste::parse(&rec, &CAPS_SMMU).is_ok());
}

#[test]
fn ste_bad_fields_name_themselves() {
    let s1 = V | cfg(0b101);
    let no2l = SmmuV3SteCaps {
        two_level_cd: false,
        ..CAPS_SMMU
    };
    let mut trailing = [words(V, 0), vec![0; 8]].concat();
    trailing[20] = 0x80;
    let table: Vec<(Vec<u8>, SmmuV3SteCaps, Error)> = vec![
        (
            words(V, 0)[..15].to_vec(),
            CAPS_SMMU,
            Error::OutOfRange {
                what: "user data length",
                value: 15,
            },
        ),
        (trailing, CAPS_SMMU, inv("trailing bytes", 20)),
        (
            words(V | 1 << 52, 0),
            CAPS_SMMU,
            inv("ste[0][58:52]", 1 << 52),
        ),
        (
            words(V | 1 << 58 | 1 << 53, 0),
            CAPS_SMMU,
            inv("ste[0][58:52]", 1 << 58 | 1 << 53),
        ),
        // MEV (bit 19 of word 1) is the host's.
        (words(V, 1 << 19), CAPS_SMMU, inv("ste[1][26:8]", 1 << 19)),
        (words(V, 1 << 8), CAPS_SMMU, inv("ste[1][26:8]", 1 << 8)),
        // STRW, SHCFG: host fields.
        (words(V, 1 << 30), CAPS_SMMU, inv("ste[1][63:30]", 1 << 30)),
        (words(V, 1 << 44), CAPS_SMMU, inv("ste[1][63:30]", 1 << 44)),
        // Two ranges: the lower one is named, with only its bits.
        (
            words(V, 1 << 40 | 1 << 9),
            CAPS_SMMU,
            inv("ste[1][26:8]", 1 << 9),
        ),
        (
            words(V | 1 << 52, 1 << 9),
            CAPS_SMMU,
            inv("ste[0][58:52]", 1 << 52),
        ),
        (
            words(V | cfg(0b110), 0),
            CAPS_SMMU,
            inv("ste[0].CFG", 0b110),
        ),
        (
            words(V | cfg(0b111), 0),
            CAPS_SMMU,
            inv("ste[0].CFG", 0b111),
        ),
        (
            words(V | cfg(0b001), 0),
            CAPS_SMMU,
            inv("ste[0].CFG", 0b001),
        ),
        (
            words(V | cfg(0b011), 0),
            CAPS_SMMU,
            inv("ste[0].CFG", 0b011),
        ),
        (words(s1, eats(2)), CAPS_SMMU, inv("ste[1].EATS", 2)),
        (
            words(V | cfg(0b100), eats(3)),
            CAPS_SMMU,
            inv("ste[1].EATS", 3),
        ),
        (
            words(s1 | cdmax(21), 0),
            CAPS_SMMU,
            Error::Unsupported {
                what: "ste[0].S1CDMax",
            },
        ),
        (
            words(s1 | cdmax(4) | s1fmt(3), 0),
            CAPS_SMMU,
            inv("ste[0].S1Fmt", 3),
        ),
        (
            words(s1 | cdmax(8) | s1fmt(1), 0),
            no2l,
            Error::Unsupported {
                what: "ste[0].S1Fmt",
            },
        ),
        (
            words(s1 | cdmax(8) | s1fmt(2), 0),
            no2l,
            Error::Unsupported {
                what: "ste[0].S1Fmt",
            },
        ),
        (
            words(s1 | cdmax(1), s1dss(3)),
            CAPS_SMMU,
            inv("ste[1].S1DSS", 3),
        ),
        (
            words(s1 | 1 << 48, 0),
            CAPS_SMMU,
            inv("ste[0].S1ContextPtr", 1 << 48),
        ),
        (
            words(s1 | bits(51, 6), 0),
            CAPS_SMMU,
            inv("ste[0].S1ContextPtr", bits(51, 6)),
        ),
    ];
    for (i, (bytes, caps, want)) in table.iter().enumerate() {
        assert_eq!(SmmuV3Ste::parse(bytes, caps), Err(*want), "row {i}");
    }
}

#[test]
fn data_types_are_iommufds_and_arrays_of_another_type_are_refused_whole() {
    // include/uapi/linux/iommufd.h.
    assert_eq!(HWPT_DATA_VTD_S1, 1);
    assert_eq!(HWPT_DATA_ARM_SMMUV3, 2);
    assert_eq!(INVALIDATE_DATA_VTD_S1, 0);
    assert_eq!(INVALIDATE_DATA_ARM_SMMUV3, 1);

    let vtd = vinv(0x1000, 1, 0, 0);
    let cmd = words(OP_NH_ALL, 0);
    let refused = |t: u32| InvalidateOutcome {
        handled: 0,
        error: Some((0, inv("data_type", t.into()))),
    };
    for t in [INVALIDATE_DATA_ARM_SMMUV3, 7] {
        let a = UserArray {
            data_type: t,
            data: &vtd,
            entry_len: 24,
            count: 1,
        };
        assert_eq!(
            vtd_user::for_each_invalidation(&a, |_| panic!("handed over")),
            refused(t)
        );
    }
    for t in [INVALIDATE_DATA_VTD_S1, 7] {
        let a = UserArray {
            data_type: t,
            data: &cmd,
            entry_len: 16,
            count: 1,
        };
        assert_eq!(
            smmu_user::for_each_command(&a, &SameIds, |_| panic!("handed over")),
            refused(t)
        );
    }
}

/// A guest reaches only devices it has a virtual ID for: the StreamID of a
/// command naming a device is resolved, and an unknown one stops the array.
#[test]
fn smmu_commands_naming_a_device_are_resolved_through_the_guests_ids() {
    struct Guest;
    impl VirtualIds for Guest {
        fn resolve(&self, v: u32) -> Option<u32> {
            (v == 3).then_some(0x8)
        }
    }
    let mut bytes = words(OP_CFGI_CD_ALL | c_sid(3), 0);
    bytes.extend(words(OP_NH_ALL, 0));
    bytes.extend(words(OP_CFGI_CD_ALL | c_sid(4), 0));
    let a = UserArray {
        data_type: INVALIDATE_DATA_ARM_SMMUV3,
        data: &bytes,
        entry_len: 16,
        count: 3,
    };
    let mut seen = vec![];
    let out = smmu_user::for_each_command(&a, &Guest, |c| {
        seen.push(c);
        Ok(())
    });
    assert_eq!(
        seen,
        [SmmuV3Inv::CfgiCdAll { sid: 0x8 }, SmmuV3Inv::TlbiNhAll]
    );
    assert_eq!(
        out,
        InvalidateOutcome {
            handled: 2,
            error: Some((2, inv("cmd[0].SID", 4))),
        }
    );
}

// ---------------------------------------------------------------------------
// User invalidations.

#[test]
fn vtd_inv_good_and_bad() {
    let good = [
        (vinv(0, u64::MAX, 0, 0), VtdS1Inv::All),
        (vinv(0, u64::MAX, 1, 0), VtdS1Inv::All),
        (
            vinv(0x2000, 3, 1, 0),
            VtdS1Inv::Range {
                addr: 0x2000,
                npages: 3,
                leaf: true,
            },
        ),
        (
            vinv(0, 1 << 52, 0, 0),
            VtdS1Inv::Range {
                addr: 0,
                npages: 1 << 52,
                leaf: false,
            },
        ),
        // The last page of the address space.
        (
            vinv(0xffff_ffff_ffff_f000, 1, 0, 0),
            VtdS1Inv::Range {
                addr: 0xffff_ffff_ffff_f000,
                npages: 1,
                leaf: false,
            },
        ),
    ];
    for (i, (bytes, want)) in good.iter().enumerate() {
        assert_eq!(VtdS1Inv::parse(bytes), Ok(*want), "row {i}");
        assert_eq!(VtdS1Inv::parse(&want.to_bytes()), Ok(*want), "row {i}");
    }
    let bad = [
        (vinv(0x1000, 1, 2, 0), inv("flags", 2)),
        (vinv(0x1000, 1, 0x8000_0001, 0), inv("flags", 0x8000_0000)),
        (vinv(0x1000, 1, 0, 1), inv("__reserved", 1)),
        (vinv(0x1234, 1, 0, 0), inv("addr", 0x1234)),
        (vinv(0x1000, u64::MAX, 0, 0), inv("addr", 0x1000)),
        (vinv(0x1000, 0, 0, 0), inv("npages", 0)),
        (vinv(0xffff_ffff_ffff_f000, 2, 0, 0), inv("npages", 2)),
        (vinv(0x1000, 1 << 52, 0, 0), inv("npages", 1 << 52)),
        (vinv(0, u64::MAX - 1, 0, 0), inv("npages", u64::MAX - 1)),
        (
            vinv(0, 1, 0, 0)[..20].to_vec(),
            Error::OutOfRange {
                what: "user data length",
                value: 20,
            },
        ),
        (
            [vinv(0, 1, 0, 0), vec![0, 0, 9]].concat(),
            inv("trailing bytes", 26),
        ),
    ];
    for (i, (bytes, want)) in bad.iter().enumerate() {
        assert_eq!(VtdS1Inv::parse(bytes), Err(*want), "row {i}");
    }
}

#[test]
fn smmu_inv_good_encodings_decode_exactly() {
    let good = [
        (words(OP_NH_ALL, 0), SmmuV3Inv::TlbiNhAll),
        (words(OP_NSNH_ALL, 0), SmmuV3Inv::TlbiNhAll),
        (
            words(OP_NH_ASID | c_asid(0xbeef), 0),
            SmmuV3Inv::TlbiNhAsid { asid: 0xbeef },
        ),
        (
            words(OP_NH_VA | c_asid(7), 0xdead_b000 | 1),
            SmmuV3Inv::TlbiNhVa {
                asid: 7,
                range: TlbiRange {
                    addr: 0xdead_b000,
                    leaf: true,
                    num: 0,
                    scale: 0,
                    tg: 0,
                    ttl: 0,
                },
            },
        ),
        (
            words(
                OP_NH_VA | c_asid(0xffff) | c_num(31) | c_scale(5),
                0xffff_ffff_ffff_f000 | c_tg(1) | c_ttl(3),
            ),
            SmmuV3Inv::TlbiNhVa {
                asid: 0xffff,
                range: TlbiRange {
                    addr: 0xffff_ffff_ffff_f000,
                    leaf: false,
                    num: 31,
                    scale: 5,
                    tg: 1,
                    ttl: 3,
                },
            },
        ),
        (
            words(OP_NH_VAA | c_num(2) | c_scale(31), 0x40_0000 | c_tg(3) | 1),
            SmmuV3Inv::TlbiNhVaa {
                range: TlbiRange {
                    addr: 0x40_0000,
                    leaf: true,
                    num: 2,
                    scale: 31,
                    tg: 3,
                    ttl: 0,
                },
            },
        ),
        (
            words(OP_ATC_INV | c_sid(0x1234_5678), 52),
            SmmuV3Inv::AtcInv {
                sid: 0x1234_5678,
                ssid: None,
                addr: 0,
                size: 52,
                global: false,
            },
        ),
        (
            words(
                OP_ATC_INV | c_sid(9) | C_SSV | c_ssid(0xf_ffff) | C_GLOBAL,
                0x8000 | 3,
            ),
            SmmuV3Inv::AtcInv {
                sid: 9,
                ssid: Some(0xf_ffff),
                addr: 0x8000,
                size: 3,
                global: true,
            },
        ),
        (
            words(OP_ATC_INV | c_sid(1) | C_SSV, 0x3000),
            SmmuV3Inv::AtcInv {
                sid: 1,
                ssid: Some(0),
                addr: 0x3000,
                size: 0,
                global: false,
            },
        ),
        (
            words(OP_CFGI_CD | c_sid(0xffff_ffff) | c_ssid(17), 1),
            SmmuV3Inv::CfgiCd {
                sid: 0xffff_ffff,
                ssid: 17,
                leaf: true,
            },
        ),
        (
            words(OP_CFGI_CD_ALL | c_sid(42), 0),
            SmmuV3Inv::CfgiCdAll { sid: 42 },
        ),
    ];
    for (i, (bytes, want)) in good.iter().enumerate() {
        assert_eq!(SmmuV3Inv::parse(bytes), Ok(*want), "row {i}");
        assert_eq!(SmmuV3Inv::parse(&want.to_bytes()), Ok(*want), "row {i}");
        if bytes[0] as u64 != OP_NSNH_ALL {
            assert_eq!(&want.to_bytes()[..], &bytes[..], "row {i}");
        }
    }
}

#[test]
fn smmu_inv_bad_fields_name_themselves() {
    let bad = [
        // Commands a guest may not issue.
        (words(0x03, 0), inv("cmd[0].OPCODE", 0x03)), // CFGI_STE
        (words(0x04, 0), inv("cmd[0].OPCODE", 0x04)), // CFGI_ALL
        (words(0x28, 0), inv("cmd[0].OPCODE", 0x28)), // TLBI_S12_VMALL
        (words(0x2a, 0), inv("cmd[0].OPCODE", 0x2a)), // TLBI_S2_IPA
        (words(0x20, 0), inv("cmd[0].OPCODE", 0x20)), // TLBI_EL2_ALL
        (words(0x46, 0), inv("cmd[0].OPCODE", 0x46)), // CMD_SYNC
        (words(0x41, 0), inv("cmd[0].OPCODE", 0x41)), // PRI_RESP
        (words(0x00, 0), inv("cmd[0].OPCODE", 0x00)),
        (words(0xff, 0), inv("cmd[0].OPCODE", 0xff)),
        // The host fills the VMID.
        (words(OP_NH_ALL | c_vmid(1), 0), inv("cmd[0].VMID", 1)),
        (
            words(OP_NH_VA | c_vmid(0xffff), 0x1000),
            inv("cmd[0].VMID", 0xffff),
        ),
        // Reserved bits.
        (words(OP_NH_ALL | c_asid(1), 0), inv("cmd[0].RES0", 1 << 48)),
        (words(OP_NH_ALL, 0x1000), inv("cmd[1].RES0", 0x1000)),
        (
            words(OP_NSNH_ALL | c_vmid(3), 0),
            inv("cmd[0].RES0", 3 << 32),
        ),
        (words(OP_NH_ASID | 1 << 8, 0), inv("cmd[0].RES0", 1 << 8)),
        (words(OP_NH_VA | 1 << 10, 0), inv("cmd[0].RES0", 1 << 10)),
        (words(OP_NH_VA | 1 << 30, 0), inv("cmd[0].RES0", 1 << 30)),
        (words(OP_NH_VA, 1 << 4), inv("cmd[1].RES0", 1 << 4)),
        (words(OP_NH_VAA | c_asid(5), 0), inv("cmd[0].RES0", 5 << 48)),
        (words(OP_ATC_INV | 1 << 10, 0), inv("cmd[0].RES0", 1 << 10)),
        (words(OP_ATC_INV, 1 << 6), inv("cmd[1].RES0", 1 << 6)),
        (words(OP_CFGI_CD | C_SSV, 0), inv("cmd[0].RES0", C_SSV)),
        (words(OP_CFGI_CD, 2), inv("cmd[1].RES0", 2)),
        (
            words(OP_CFGI_CD_ALL | c_ssid(1), 0),
            inv("cmd[0].RES0", 1 << 12),
        ),
        // Range fields without a range granule.
        (words(OP_NH_VA | c_num(1), 0), inv("cmd[0].NUM", 1)),
        (words(OP_NH_VAA | c_scale(2), 0), inv("cmd[0].SCALE", 2)),
        (words(OP_NH_VA, c_ttl(2)), inv("cmd[1].TTL", 2)),
        // ATC_INV.
        (words(OP_ATC_INV, 53), inv("cmd[1].Size", 53)),
        (words(OP_ATC_INV, 63), inv("cmd[1].Size", 63)),
        (words(OP_ATC_INV, 0x1000 | 1), inv("cmd[1].Address", 0x1000)),
        (
            words(OP_ATC_INV, 0x1000 | 52),
            inv("cmd[1].Address", 0x1000),
        ),
        (words(OP_ATC_INV | c_ssid(4), 0), inv("cmd[0].SSID", 4)),
        (words(OP_ATC_INV | C_GLOBAL, 0), inv("cmd[0].Global", 1)),
        // Length.
        (
            words(OP_NH_ALL, 0)[..8].to_vec(),
            Error::OutOfRange {
                what: "user data length",
                value: 8,
            },
        ),
        (
            [words(OP_NH_ALL, 0), vec![0, 1]].concat(),
            inv("trailing bytes", 17),
        ),
    ];
    for (i, (bytes, want)) in bad.iter().enumerate() {
        assert_eq!(SmmuV3Inv::parse(bytes), Err(*want), "row {i}");
    }
}

fn run(
    ty: Ty,
    bytes: &[u8],
    entry_len: usize,
    count: usize,
    fail_at: Option<usize>,
) -> (InvalidateOutcome, Vec<(usize, UserInv)>) {
    let mut seen = Vec::new();
    let mut take = |inv| {
        let i = seen.len();
        seen.push((i, inv));
        if Some(i) == fail_at {
            Err(Error::Busy { what: "test" })
        } else {
            Ok(())
        }
    };
    let array = |data_type| UserArray {
        data_type,
        data: bytes,
        entry_len,
        count,
    };
    let out = match ty {
        Ty::VtdS1 => vtd_user::for_each_invalidation(&array(INVALIDATE_DATA_VTD_S1), |i| {
            take(UserInv::Vtd(i))
        }),
        Ty::SmmuV3 => {
            smmu_user::for_each_command(&array(INVALIDATE_DATA_ARM_SMMUV3), &SameIds, |i| {
                take(UserInv::SmmuV3(i))
            })
        }
    };
    (out, seen)
}

#[test]
fn invalidation_arrays_stop_at_the_first_bad_entry() {
    let pad = |mut v: Vec<u8>, to: usize| {
        v.resize(to, 0);
        v
    };
    let e0 = pad(vinv(0x1000, 1, 0, 0), 32);
    let e1 = pad(vinv(0, u64::MAX, 0, 0), 32);
    let bad = pad(vinv(0x1001, 1, 0, 0), 32);
    let bytes = [e0.clone(), e1.clone(), bad, e0.clone()].concat();

    let (out, seen) = run(Ty::VtdS1, &bytes, 32, 4, None);
    assert_eq!(out.handled, 2);
    assert_eq!(out.error, Some((2, inv("addr", 0x1001))));
    assert_eq!(
        seen,
        vec![
            (
                0,
                UserInv::Vtd(VtdS1Inv::Range {
                    addr: 0x1000,
                    npages: 1,
                    leaf: false
                })
            ),
            (1, UserInv::Vtd(VtdS1Inv::All)),
        ]
    );

    // The handler's error stops the walk the same way.
    let (out, seen) = run(Ty::VtdS1, &bytes, 32, 4, Some(1));
    assert_eq!(out.handled, 1);
    assert_eq!(out.error, Some((1, Error::Busy { what: "test" })));
    assert_eq!(seen.len(), 2);

    // Fewer entries than the array holds: only those are looked at.
    let (out, seen) = run(Ty::VtdS1, &bytes, 32, 2, None);
    assert_eq!((out.handled, out.error, seen.len()), (2, None, 2));

    // count 0: nothing, whatever the rest says.
    let (out, seen) = run(Ty::VtdS1, &[], 0, 0, None);
    assert_eq!((out.handled, out.error, seen.len()), (0, None, 0));

    // entry_len below the format's size.
    let (out, seen) = run(Ty::SmmuV3, &bytes, 15, 1, None);
    assert_eq!(
        out,
        InvalidateOutcome {
            handled: 0,
            error: Some((
                0,
                Error::OutOfRange {
                    what: "entry_len",
                    value: 15
                }
            )),
        }
    );
    assert!(seen.is_empty());
    let (out, _) = run(Ty::VtdS1, &bytes, 16, 1, None);
    assert_eq!(out.error.map(|e| e.0), Some(0));

    // Bytes end inside entry 2.
    let short = [e0.clone(), e1.clone(), e0[..31].to_vec()].concat();
    let (out, seen) = run(Ty::VtdS1, &short, 32, 3, None);
    assert_eq!(out.handled, 2);
    assert_eq!(
        out.error,
        Some((
            2,
            Error::OutOfRange {
                what: "user data length",
                value: 31
            }
        ))
    );
    assert_eq!(seen.len(), 2);
    // ... or before it starts.
    let (out, _) = run(Ty::VtdS1, &short[..64], 32, 3, None);
    assert_eq!(
        out.error,
        Some((
            2,
            Error::OutOfRange {
                what: "user data length",
                value: 0
            }
        ))
    );

    // A nonzero byte in an entry's padding.
    let mut dirty = [e0.clone(), e1].concat();
    dirty[32 + 24] = 1;
    let (out, _) = run(Ty::VtdS1, &dirty, 32, 2, None);
    assert_eq!(out.error, Some((1, inv("trailing bytes", 24))));

    // SMMU commands at their exact size.
    let cmds = [
        words(OP_NH_ASID | c_asid(3), 0),
        words(OP_CFGI_CD_ALL | c_sid(5), 0),
        words(0x46, 0),
    ]
    .concat();
    let (out, seen) = run(Ty::SmmuV3, &cmds, 16, 3, None);
    assert_eq!(out.handled, 2);
    assert_eq!(out.error, Some((2, inv("cmd[0].OPCODE", 0x46))));
    assert_eq!(
        seen,
        vec![
            (0, UserInv::SmmuV3(SmmuV3Inv::TlbiNhAsid { asid: 3 })),
            (1, UserInv::SmmuV3(SmmuV3Inv::CfgiCdAll { sid: 5 })),
        ]
    );

    // Huge counts and lengths do not overflow.
    let (out, _) = run(Ty::SmmuV3, &cmds, usize::MAX, usize::MAX, None);
    assert_eq!(out.handled, 0);
    let (out, _) = run(Ty::SmmuV3, &cmds[..32], 16, usize::MAX, None);
    assert_eq!(out.handled, 2);
    assert_eq!(out.error.map(|e| e.0), Some(2));
}

// ---------------------------------------------------------------------------
// Property tests.

fn vtd_caps() -> impl Strategy<Value = VtdS1Caps> {
    (
        any::<bool>(),
        prop_oneof![3 => 36u32..=57, 1 => 0u32..=72],
        prop_oneof![3 => Just(true), 1 => Just(false)],
        prop_oneof![3 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(five_level, max_pa_bits, sre, eafe)| VtdS1Caps {
            five_level,
            max_pa_bits,
            sre,
            eafe,
        })
}

fn smmu_caps() -> impl Strategy<Value = SmmuV3SteCaps> {
    (
        prop_oneof![3 => 8u32..=20, 1 => 0u32..=24],
        prop_oneof![3 => 32u32..=52, 1 => 0u32..=72],
        prop_oneof![3 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(ssid_bits, oas_bits, two_level_cd)| SmmuV3SteCaps {
            ssid_bits,
            oas_bits,
            two_level_cd,
        })
}

/// Mostly-zero noise, sometimes anything.
fn noise() -> impl Strategy<Value = u64> {
    prop_oneof![6 => Just(0u64), 1 => any::<u64>(), 1 => (0u32..64).prop_map(|b| 1u64 << b)]
}

/// Zero padding, sometimes dirty.
fn tail() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(Just(0u8), 0..16),
        1 => proptest::collection::vec(any::<u8>(), 0..16),
    ]
}

/// Record bytes for VT-d S1 with fields drawn near the valid region.
fn vtd_s1_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![4 => 0u64..8, 1 => any::<u64>()],
        prop_oneof![
            4 => (any::<u64>(), 12u32..64).prop_map(|(p, s)| (p >> s) << 12),
            1 => any::<u64>()
        ],
        prop_oneof![2 => Just(48u32), 2 => Just(57u32), 1 => any::<u32>()],
        prop_oneof![4 => Just(0u32), 1 => any::<u32>()],
        tail(),
    )
        .prop_map(|(f, a, w, r, t)| [vtd_rec(f, a, w, r), t].concat())
}

/// STE bytes with fields drawn near the valid region.
fn ste_bytes() -> impl Strategy<Value = Vec<u8>> {
    let w0 = (
        prop_oneof![5 => Just(true), 1 => Just(false)],
        prop_oneof![1 => Just(0u64), 1 => Just(4), 3 => Just(5), 1 => 0u64..8],
        prop_oneof![3 => 0u64..3, 1 => 0u64..4],
        (any::<u64>(), prop_oneof![3 => 24u32..64, 1 => 0u32..64])
            .prop_map(|(p, s)| (p >> s) & bits(51, 6)),
        prop_oneof![2 => Just(0u64), 3 => 0u64..12, 1 => 0u64..32],
        noise(),
    )
        .prop_map(|(v, c, f, p, n, x)| u64::from(v) | cfg(c) | s1fmt(f) | p | cdmax(n) | x);
    let w1 = (
        prop_oneof![3 => 0u64..3, 1 => 0u64..4],
        0u64..64,
        any::<bool>(),
        prop_oneof![3 => 0u64..2, 1 => 0u64..4],
        noise(),
    )
        .prop_map(|(d, c, st, e, x)| {
            s1dss(d) | (c << 2) | if st { S1STALLD } else { 0 } | eats(e) | x
        });
    (w0, w1, tail()).prop_map(|(a, b, t)| [words(a, b), t].concat())
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// The test's own statement of when a VT-d S1 record is acceptable.
fn vtd_s1_acceptable(b: &[u8], caps: &VtdS1Caps) -> bool {
    if b.len() < 24 || b[24..].iter().any(|&x| x != 0) {
        return false;
    }
    let (flags, addr, aw, res) = (le64(b, 0), le64(b, 8), le32(b, 16), le32(b, 20));
    let in_range = caps.max_pa_bits >= 64 || (addr >> caps.max_pa_bits) == 0;
    flags & !0b111 == 0
        && (flags & 1 == 0 || caps.sre)
        && (flags & 2 == 0 || caps.eafe)
        && addr % 4096 == 0
        && in_range
        && (aw == 48 || (aw == 57 && caps.five_level))
        && res == 0
}

/// The test's own statement of when an STE record is acceptable.
fn ste_acceptable(b: &[u8], caps: &SmmuV3SteCaps) -> bool {
    if b.len() < 16 || b[16..].iter().any(|&x| x != 0) {
        return false;
    }
    let (w0, w1) = (le64(b, 0), le64(b, 8));
    if w0 & 1 == 0 {
        return true;
    }
    if w0 & !ste0_allowed() != 0 || w1 & !ste1_allowed() != 0 {
        return false;
    }
    let c = (w0 >> 1) & 7;
    let e = (w1 >> 28) & 3;
    if !(c == 0 || c == 4 || c == 5) || e > 1 {
        return false;
    }
    if c != 5 {
        return true;
    }
    let n = w0 >> 59;
    let fmt = (w0 >> 4) & 3;
    let dss = w1 & 3;
    let ptr = w0 & bits(51, 6);
    let ptr_ok = caps.oas_bits >= 64 || ptr >> caps.oas_bits == 0;
    n <= u64::from(caps.ssid_bits)
        && (n == 0 || (fmt == 0 || ((fmt == 1 || fmt == 2) && caps.two_level_cd)))
        && (n == 0 || dss != 3)
        && ptr_ok
}

/// A good VT-d invalidation entry and what it decodes to.
fn vtd_inv_good() -> impl Strategy<Value = (Vec<u8>, VtdS1Inv)> {
    prop_oneof![
        1 => any::<bool>().prop_map(|leaf| (vinv(0, u64::MAX, leaf as u32, 0), VtdS1Inv::All)),
        4 => (0u64..(1 << 40), 1u64..(1 << 20), any::<bool>()).prop_map(|(p, n, leaf)| {
            let addr = p << 12;
            (vinv(addr, n, leaf as u32, 0), VtdS1Inv::Range { addr, npages: n, leaf })
        }),
    ]
}

/// A good SMMU command and what it decodes to, encoded with the test's own
/// layout.
fn smmu_inv_good() -> impl Strategy<Value = (Vec<u8>, SmmuV3Inv)> {
    let range = prop_oneof![
        Just((0u8, 0u8, 0u8, 0u8)),
        (0u8..32, 0u8..32, 1u8..4, 0u8..4),
    ];
    let addr = any::<u64>().prop_map(|a| a & bits(63, 12));
    prop_oneof![
        Just((words(OP_NH_ALL, 0), SmmuV3Inv::TlbiNhAll)),
        Just((words(OP_NSNH_ALL, 0), SmmuV3Inv::TlbiNhAll)),
        any::<u16>().prop_map(|a| (
            words(OP_NH_ASID | c_asid(a.into()), 0),
            SmmuV3Inv::TlbiNhAsid { asid: a }
        )),
        (any::<u16>(), addr.clone(), any::<bool>(), range.clone()).prop_map(
            |(asid, addr, leaf, (num, scale, tg, ttl))| (
                words(
                    OP_NH_VA | c_asid(asid.into()) | c_num(num.into()) | c_scale(scale.into()),
                    addr | leaf as u64 | c_tg(tg.into()) | c_ttl(ttl.into())
                ),
                SmmuV3Inv::TlbiNhVa {
                    asid,
                    range: TlbiRange {
                        addr,
                        leaf,
                        num,
                        scale,
                        tg,
                        ttl
                    }
                }
            )
        ),
        (addr, any::<bool>(), range).prop_map(|(addr, leaf, (num, scale, tg, ttl))| (
            words(
                OP_NH_VAA | c_num(num.into()) | c_scale(scale.into()),
                addr | leaf as u64 | c_tg(tg.into()) | c_ttl(ttl.into())
            ),
            SmmuV3Inv::TlbiNhVaa {
                range: TlbiRange {
                    addr,
                    leaf,
                    num,
                    scale,
                    tg,
                    ttl
                }
            }
        )),
        (
            any::<u32>(),
            proptest::option::of(0u32..(1 << 20)),
            0u8..=52,
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(sid, ssid, size, a, g)| {
                let shift = u32::from(size) + 12;
                let addr = if shift >= 64 {
                    0
                } else {
                    (a >> shift) << shift
                };
                let global = g && ssid.is_some();
                let w0 = OP_ATC_INV
                    | c_sid(sid.into())
                    | ssid.map_or(0, |s| C_SSV | c_ssid(s.into()))
                    | if global { C_GLOBAL } else { 0 };
                (
                    words(w0, addr | u64::from(size)),
                    SmmuV3Inv::AtcInv {
                        sid,
                        ssid,
                        addr,
                        size,
                        global,
                    },
                )
            }),
        (any::<u32>(), 0u32..(1 << 20), any::<bool>()).prop_map(|(sid, ssid, leaf)| (
            words(
                OP_CFGI_CD | c_sid(sid.into()) | c_ssid(ssid.into()),
                leaf as u64
            ),
            SmmuV3Inv::CfgiCd { sid, ssid, leaf }
        )),
        any::<u32>().prop_map(|sid| (
            words(OP_CFGI_CD_ALL | c_sid(sid.into()), 0),
            SmmuV3Inv::CfgiCdAll { sid }
        )),
    ]
}

/// Ways to spoil a good VT-d entry.
fn vtd_spoil(b: &mut [u8], how: u8) {
    match how % 4 {
        0 => b[16] |= 2,       // unknown flag
        1 => b[8..16].fill(0), // npages 0
        2 => b[1] |= 0x08,     // addr 0x800 unaligned
        _ => b[20] = 1,        // __reserved
    }
}

/// Ways to spoil a good SMMU command.
fn smmu_spoil(b: &mut [u8], how: u8) {
    match how % 3 {
        0 => b[0] = [0x03, 0x46, 0x28, 0x00, 0x2a, 0x41][usize::from(how / 3) % 6], // opcode
        1 => b[1] |= 1 << 2, // word 0 bit 10: RES0 in every permitted command
        _ => b[1] |= 1 << 3 | 1 << 2, // bits 11:10 (bit 10 always RES0)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn fuzz_every_parser_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        vcaps in vtd_caps(),
        scaps in smmu_caps(),
        ty in prop_oneof![Just(Ty::VtdS1), Just(Ty::SmmuV3)],
        entry_len in 0usize..40,
        count in 0usize..6,
    ) {
        prop_assert_eq!(VtdS1::parse(&bytes, &vcaps).is_ok(), vtd_s1_acceptable(&bytes, &vcaps));
        prop_assert_eq!(SmmuV3Ste::parse(&bytes, &scaps).is_ok(), ste_acceptable(&bytes, &scaps));
        let _ = VtdS1Inv::parse(&bytes);
        if let Ok(c) = SmmuV3Inv::parse(&bytes) {
            let w0 = le64(&bytes, 0);
            prop_assert!(cmd_allowed(w0 & 0xff).is_some());
            prop_assert_eq!(SmmuV3Inv::parse(&c.to_bytes()), Ok(c));
        }
        let (out, seen) = run(ty, &bytes, entry_len, count, None);
        prop_assert!(out.handled <= count);
        prop_assert_eq!(seen.len(), out.handled);
        match out.error {
            Some((i, _)) => prop_assert_eq!(i, out.handled),
            None => prop_assert_eq!(out.handled, count),
        }
    }

    #[test]
    fn accepted_vtd_s1_is_valid_and_round_trips(bytes in vtd_s1_bytes(), caps in vtd_caps()) {
        let r = VtdS1::parse(&bytes, &caps);
        prop_assert_eq!(r.is_ok(), vtd_s1_acceptable(&bytes, &caps));
        if let Ok(v) = r {
            prop_assert_eq!(v.flags().bits() & !0b111, 0);
            prop_assert_eq!(v.flags().bits(), le64(&bytes, 0));
            prop_assert!(!v.flags().contains(VtdS1Flags::SRE) || caps.sre);
            prop_assert!(!v.flags().contains(VtdS1Flags::EAFE) || caps.eafe);
            prop_assert_eq!(v.pgtbl_addr() % 4096, 0);
            prop_assert_eq!(v.pgtbl_addr(), le64(&bytes, 8));
            prop_assert!(caps.max_pa_bits >= 64 || v.pgtbl_addr() >> caps.max_pa_bits == 0);
            prop_assert!(v.addr_width() == 48 || (v.addr_width() == 57 && caps.five_level));
            prop_assert_eq!(&v.to_bytes()[..], &bytes[..24]);
            prop_assert_eq!(VtdS1::parse(&v.to_bytes(), &caps), Ok(v));
        }
    }

    #[test]
    fn accepted_ste_keeps_exactly_the_permitted_bits(bytes in ste_bytes(), caps in smmu_caps()) {
        let r = SmmuV3Ste::parse(&bytes, &caps);
        prop_assert_eq!(r.is_ok(), ste_acceptable(&bytes, &caps));
        if let Ok(s) = r {
            let input = [le64(&bytes, 0), le64(&bytes, 8)];
            let w = s.words();
            prop_assert_eq!(w[0] & !ste0_allowed(), 0);
            prop_assert_eq!(w[1] & !ste1_allowed(), 0);
            if input[0] & 1 == 1 {
                prop_assert_eq!(w, input);
                prop_assert!(s.is_valid());
                let want = match (input[0] >> 1) & 7 {
                    4 => SteConfig::Bypass,
                    5 => SteConfig::S1Translate,
                    _ => SteConfig::Abort,
                };
                prop_assert_eq!(s.config(), want);
                if want == SteConfig::S1Translate {
                    prop_assert_eq!(s.s1_context_ptr(), Some(input[0] & bits(51, 6)));
                    prop_assert_eq!(s.s1_cd_max(), Some((input[0] >> 59) as u8));
                    prop_assert_eq!(s.eats(), (input[1] >> 28) & 3 == 1);
                } else {
                    prop_assert_eq!(s.s1_context_ptr(), None);
                    prop_assert!(!s.eats());
                }
            } else {
                prop_assert_eq!(w, [0, 0]);
                prop_assert_eq!(s.config(), SteConfig::Abort);
            }
            prop_assert_eq!(SmmuV3Ste::parse(&s.to_bytes(), &caps), Ok(s));
        }
    }

    #[test]
    fn smmu_commands_round_trip_and_reject_stray_bits(
        (bytes, want) in smmu_inv_good(),
        bit in 0u32..128,
    ) {
        prop_assert_eq!(SmmuV3Inv::parse(&bytes), Ok(want));
        let op = bytes[0] as u64;
        if op != OP_NSNH_ALL {
            prop_assert_eq!(&want.to_bytes()[..], &bytes[..]);
        }
        // Flip one bit outside the command's fields (or in VMID): refused.
        let (a0, a1) = cmd_allowed(op).unwrap();
        let vmid = if matches!(op, OP_NH_ALL | OP_NH_ASID | OP_NH_VA | OP_NH_VAA) {
            bits(47, 32)
        } else {
            0
        };
        let mut w = [le64(&bytes, 0), le64(&bytes, 8)];
        let (word, b) = ((bit / 64) as usize, bit % 64);
        let allowed = if word == 0 { a0 & !vmid } else { a1 };
        if allowed & (1 << b) == 0 {
            w[word] ^= 1 << b;
            let r = SmmuV3Inv::parse(&words(w[0], w[1]));
            prop_assert!(
                matches!(r, Err(Error::InvalidField { .. })),
                "bit {} of {:?} accepted: {:?}", bit, want, r
            );
        }
    }

    #[test]
    fn invalidation_arrays_hand_over_exactly_the_good_prefix(
        smmu in any::<bool>(),
        vtd_entries in proptest::collection::vec((vtd_inv_good(), prop_oneof![4 => Just(None), 1 => any::<u8>().prop_map(Some)]), 0..8),
        smmu_entries in proptest::collection::vec((smmu_inv_good(), prop_oneof![4 => Just(None), 1 => any::<u8>().prop_map(Some)]), 0..8),
        pad in 0usize..12,
        dirty_pad in proptest::option::of((0usize..8, 1u8..=255)),
        fail_at in proptest::option::of(0usize..8),
    ) {
        let (ty, size) = if smmu { (Ty::SmmuV3, 16) } else { (Ty::VtdS1, 24) };
        let entry_len = size + pad;
        // (bytes, Some(decoded) if good)
        let mut entries: Vec<(Vec<u8>, Option<UserInv>)> = if smmu {
            smmu_entries.into_iter().map(|((mut b, inv), spoil)| match spoil {
                Some(how) => { smmu_spoil(&mut b, how); (b, None) }
                None => (b, Some(UserInv::SmmuV3(inv))),
            }).collect()
        } else {
            vtd_entries.into_iter().map(|((mut b, inv), spoil)| match spoil {
                Some(how) => { vtd_spoil(&mut b, how); (b, None) }
                None => (b, Some(UserInv::Vtd(inv))),
            }).collect()
        };
        for (b, _) in entries.iter_mut() {
            b.resize(entry_len, 0);
        }
        if let Some((i, v)) = dirty_pad {
            if pad > 0 && i < entries.len() {
                entries[i].0[entry_len - 1] = v;
                entries[i].1 = None;
            }
        }
        let bytes: Vec<u8> = entries.iter().flat_map(|(b, _)| b.clone()).collect();
        let first_bad = entries.iter().position(|(_, g)| g.is_none()).unwrap_or(entries.len());
        let stop = match fail_at {
            Some(k) if k < first_bad => k,
            _ => first_bad,
        };
        let (out, seen) = run(ty, &bytes, entry_len, entries.len(), fail_at);
        prop_assert_eq!(out.handled, stop);
        prop_assert_eq!(out.error.map(|e| e.0), (stop < entries.len()).then_some(stop));
        // f saw the good prefix, in order, exactly (plus the entry it refused).
        let called = if fail_at.is_some_and(|k| k < first_bad) { stop + 1 } else { stop };
        let want: Vec<(usize, UserInv)> = entries[..called]
            .iter()
            .enumerate()
            .map(|(i, (_, g))| (i, g.unwrap()))
            .collect();
        prop_assert_eq!(seen, want);
    }
}
