//! The SMMUv3 model's own readers, checked before the driver is run
//! against them: the driver's entry and command encodings read back as the
//! specification says they should, the walker translates tables built by
//! hand, and a cached translation outlives a table change until the TLBI
//! that names it.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::drivers::smmuv3::{cd as dcd, cmd as dcmd, ste as dste};
use smmu_model::cache::Caches;
use smmu_model::cmdq::decode;
use smmu_model::entry::config;
use smmu_model::walk::{StrtabCfg, Walker};
use smmu_model::*;

fn s2(vmid: u16, ttb: u64) -> dste::Stage2 {
    dste::Stage2 {
        vmid,
        ttb,
        t0sz: 20,
        sl0: 2,
        ps: 4,
    }
}

fn cdt(ptr: u64, cd_max: u8) -> dste::CdTable {
    dste::CdTable {
        ptr,
        fmt: dste::s1fmt::LINEAR,
        cd_max,
    }
}

/// The driver's STEs read as the configuration they are built for, legal
/// on an SMMU like QEMU's; the bits the model says each uses are the bits
/// the driver's writer believes it uses.
#[test]
fn driver_entries_read_back_as_built() {
    let id = SmmuConfig::qemu();
    let cases = [
        (dste::abort(), config::ABORT),
        (dste::bypass(), config::BYPASS),
        (dste::stage1(cdt(0x4000, 0), 0, false), config::S1),
        (dste::stage2(s2(7, 0x8000_0000), false), config::S2),
    ];
    for (w, cfg) in cases {
        let e = Ste::decode(w);
        assert!(e.valid);
        assert_eq!(e.config, cfg, "{w:x?}");
        assert_eq!(e.illegal(&id), None, "{w:x?}");
        // The driver may treat as unused only bits the SMMU ignores, or
        // bits it never sets.
        let (model, driver) = (Ste::used(&w), dste::used(&w));
        for i in 0..8 {
            assert_eq!(driver[i] & !model[i], 0, "word {i} of {w:x?}");
            assert_eq!(w[i] & model[i] & !driver[i], 0, "word {i} of {w:x?}");
        }
    }
    let e = Ste::decode(dste::stage2(s2(7, 0x8000_0000), true));
    assert_eq!((e.s2vmid, e.s2ttb, e.eats), (7, 0x8000_0000, 1));
    let c = dcd::build(&dcd::Stage1 {
        ttb0: 0x1234_5000,
        t0sz: 16,
        oas_bits: 44,
        mair: 0x44ff04,
        asid: 9,
        stall: false,
    });
    let d = Cd::decode(c);
    assert!(d.valid && d.aa64 && d.epd1 && d.r && d.a);
    assert_eq!(
        (d.asid, d.ttb0, d.t0sz, d.mair),
        (9, 0x1234_5000, 16, 0x44ff04)
    );
    assert_eq!(d.illegal(&id), None);
    assert_eq!(Cd::used(&c), dcd::used(&c));
}

/// The driver's commands decode to what they are named for; reserved bits,
/// range fields without RIL, stage-2 TLBIs without S2P and PRI_RESP
/// without PRI are illegal.
#[test]
fn driver_commands_decode() {
    let id = SmmuConfig::qemu().ats(true).pri(true);
    let d = |c: dcmd::Command| decode(c.words(), &id);
    assert_eq!(
        d(dcmd::cfgi_all()),
        Ok(Cmd::CfgiSteRange { sid: 0, range: 31 })
    );
    assert_eq!(
        d(dcmd::cfgi_ste(5)),
        Ok(Cmd::CfgiSte { sid: 5, leaf: true })
    );
    assert_eq!(
        d(dcmd::cfgi_cd(5, 3, false)),
        Ok(Cmd::CfgiCd {
            sid: 5,
            ssid: 3,
            leaf: false
        })
    );
    let r = dcmd::Range {
        addr: 0x20_0000,
        leaf: true,
        tg: 1,
        num: 3,
        scale: 2,
        ttl: 3,
    };
    let Ok(Cmd::TlbiNhVa {
        vmid: 0,
        asid: 4,
        a,
    }) = d(dcmd::tlbi_nh_va(0, 4, &r))
    else {
        panic!("TLBI_NH_VA");
    };
    assert_eq!(a.range(), (0x20_0000, 0x20_0000 + 16 * 4096));
    assert_eq!(
        d(dcmd::atc_inv(9, Some(2), 0x4000, 1)),
        Ok(Cmd::AtcInv {
            sid: 9,
            ssid: Some(2),
            global: false,
            addr: 0x4000,
            size: 1
        })
    );
    assert_eq!(
        d(dcmd::pri_resp(9, None, 0x1ff, 2)),
        Ok(Cmd::PriResp {
            sid: 9,
            ssid: None,
            grpid: 0x1ff,
            resp: 2
        })
    );
    assert_eq!(d(dcmd::sync()), Ok(Cmd::Sync { cs: 0 }));
    let stall = SmmuConfig::qemu().stall_model(StallModel::StallForced);
    for (abort, retry) in [(false, true), (true, false)] {
        assert_eq!(
            decode(dcmd::resume(9, 3, abort).words(), &stall),
            Ok(Cmd::Resume {
                sid: 9,
                stag: 3,
                retry,
                abort
            })
        );
    }
    // Refusals.
    assert!(decode([0x7f, 0], &id).is_err(), "unknown opcode");
    assert!(decode([0x30 | 1 << 40, 0], &id).is_err(), "reserved bits");
    let no_ril = SmmuConfig::qemu().ril(false);
    assert!(decode(dcmd::tlbi_nh_va(0, 4, &r).words(), &no_ril).is_err());
    let s1 = SmmuConfig::qemu().s1_only();
    assert!(decode(dcmd::tlbi_s12_vmall(1).words(), &s1).is_err());
    assert!(decode(dcmd::pri_resp(1, None, 1, 2).words(), &SmmuConfig::qemu()).is_err());
}

/// A 4-level stage-1 table mapping one page, by hand.
fn s1_table(hal: &ModelHal, va: u64, pa: u64) -> u64 {
    let root = hal.page();
    let mut table = root;
    for level in 0..3 {
        let next = hal.page();
        let idx = (va >> (39 - 9 * level)) & 0x1ff;
        assert!(hal.write_u64(table + idx * 8, next | 3));
        table = next;
    }
    let leaf = pa | 3 | (1 << 11) | (1 << 10) | (1 << 6); // nG, AF, EL0
    assert!(hal.write_u64(table + ((va >> 12) & 0x1ff) * 8, leaf));
    root
}

fn write_entry(hal: &ModelHal, at: u64, w: &[u64; 8]) {
    for (i, x) in w.iter().enumerate() {
        assert!(hal.write_u64(at + 8 * i as u64, *x));
    }
}

/// A linear stream table → stage-1 STE → CD → tables walks to the mapped
/// page; a TLB line keeps translating after the table changes until a
/// TLBI_NH_VA names it, and a stale CD until CFGI_CD.
#[test]
fn walker_and_caches() {
    let hal = ModelHal::new();
    let id = SmmuConfig::qemu();
    let strtab = hal.page();
    let cds = hal.page();
    let root = s1_table(&hal, 0x4000_0000, 0x9000);
    write_entry(&hal, strtab + 3 * 64, &dste::stage1(cdt(cds, 0), 0, false));
    let cd = dcd::Stage1 {
        ttb0: root,
        t0sz: 16,
        oas_bits: 48,
        mair: 0x44ff04,
        asid: 5,
        stall: false,
    };
    write_entry(&hal, cds, &dcd::build(&cd));
    let w = Walker {
        mem: &hal,
        id: &id,
        st: StrtabCfg::decode(strtab, 6),
    };
    let t = w.walk(&Req::read(3, 0x4000_0123)).unwrap();
    assert_eq!((t.pa, t.kind, t.asid), (0x9123, Kind::Stage1, Some(5)));
    assert_eq!(
        w.walk(&Req::read(3, 0x5000_0000)).unwrap_err().id(),
        Some(evt::F_TRANSLATION)
    );
    assert_eq!(
        w.walk(&Req::read(2, 0)).unwrap_err().id(),
        Some(evt::C_BAD_STE),
        "a zero STE"
    );
    assert_eq!(
        w.walk(&Req::read(64, 0)).unwrap_err().id(),
        Some(evt::C_BAD_STREAMID)
    );

    let mut c = Caches::default();
    assert_eq!(
        c.translate(&w, &Req::read(3, 0x4000_0010)).unwrap().pa,
        0x9010
    );
    // Unmap the page in memory: the TLB still has it.
    let l3 = {
        let mut t = root;
        for level in 0..3 {
            let idx = (0x4000_0000u64 >> (39 - 9 * level)) & 0x1ff;
            t = hal.read_u64(t + idx * 8).unwrap() & !0xfff;
        }
        t
    };
    assert!(hal.write_u64(l3, 0));
    assert_eq!(
        c.translate(&w, &Req::read(3, 0x4000_0020)).unwrap().pa,
        0x9020
    );
    assert!(w.walk(&Req::read(3, 0x4000_0020)).is_err());
    // Another ASID's TLBI leaves it; this one's removes it.
    let one = TlbiAddr {
        addr: 0x4000_0000,
        leaf: true,
        tg: 0,
        num: 0,
        scale: 0,
        ttl: 0,
    };
    c.invalidate(
        &Cmd::TlbiNhVa {
            vmid: 0,
            asid: 6,
            a: one,
        },
        &id,
    );
    assert!(c.translate(&w, &Req::read(3, 0x4000_0020)).is_ok());
    c.invalidate(
        &Cmd::TlbiNhVa {
            vmid: 0,
            asid: 5,
            a: one,
        },
        &id,
    );
    assert_eq!(
        c.translate(&w, &Req::read(3, 0x4000_0020))
            .unwrap_err()
            .id(),
        Some(evt::F_TRANSLATION)
    );
    // The CD is cached: an invalid CD in memory is not seen until CFGI_CD.
    write_entry(&hal, cds, &[0; 8]);
    assert_eq!(
        c.translate(&w, &Req::read(3, 0x4000_0020))
            .unwrap_err()
            .id(),
        Some(evt::F_TRANSLATION)
    );
    c.invalidate(
        &Cmd::CfgiCd {
            sid: 3,
            ssid: 0,
            leaf: true,
        },
        &id,
    );
    assert_eq!(
        c.translate(&w, &Req::read(3, 0x4000_0020))
            .unwrap_err()
            .id(),
        Some(evt::C_BAD_CD)
    );
}
