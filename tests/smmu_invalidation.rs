//! TLB invalidation through the real SMMUv3 driver and the real core
//! against the model's TLB: range commands (TG / SCALE / NUM / TTL) where
//! IDR3.RIL, one command per leaf without it, the whole ASID / VMID above
//! a table's worth, the leaf flag only when no table page was freed,
//! ATC_INV after the TLBIs for ATS devices, one CMD_SYNC per sync; and the
//! negative control: the model's TLB keeps translating an unmapped page
//! until the sync.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::Iova;
use iommu::core::{DeviceId, DomainId, PagingFlags};
use iommu::pgtable::Gather;
use smmu_model::*;

const SID: u32 = 0x40;
const BASE: u64 = 0x40_0000;

/// A device in a paging domain (`flags`) with `pages` 4 KiB pages mapped at
/// BASE, each touched once by DMA so the model's TLB holds them.
fn warm(cfg: SmmuConfig, ats: bool, flags: PagingFlags, pages: u64) -> (Rig, DeviceId, DomainId) {
    let mut rig = Rig::new(&[cfg]);
    let dev = rig.device(0, SID, 0, ats);
    let d = rig.core.alloc_paging(dev, flags).unwrap();
    rig.map_buffer(d, BASE, pages * 4096);
    rig.core.attach(dev, d).unwrap();
    for i in 0..pages {
        rig.unit(0).dma(Req::read(SID, BASE + i * 4096)).unwrap();
    }
    rig.clear_logs();
    (rig, dev, d)
}

fn tlbis(log: &[Event]) -> Vec<Cmd> {
    cmds_no_syncs(log)
}

/// The TLBI address fields of a log's address commands.
fn addrs(log: &[Event]) -> Vec<TlbiAddr> {
    tlbis(log)
        .into_iter()
        .filter_map(|c| match c {
            Cmd::TlbiNhVa { a, .. } | Cmd::TlbiS2Ipa { a, .. } => Some(a),
            _ => None,
        })
        .collect()
}

/// Pages the commands name, checked contiguous from `start`.
fn covered(a: &[TlbiAddr], start: u64) -> u64 {
    let mut at = start;
    for x in a {
        let (s, e) = x.range();
        // A single address (TG 0) names the 4 KiB leaf it is in.
        let e = if x.tg == 0 { s + 4096 } else { e };
        assert_eq!(s, at, "contiguous: {a:?}");
        at = e;
    }
    (at - start) / 4096
}

/// With RIL: 37 pages unmapped from a stage-1 domain are named by range
/// commands (TG 4 KiB, TTL 3, leaf) under VMID 0 and the domain's ASID,
/// covering exactly the range; one CMD_SYNC; the TLB no longer hits.
/// Before the sync it still does (the negative control).
#[test]
fn range_commands_with_ril() {
    let (mut rig, _, d) = warm(SmmuConfig::qemu(), false, PagingFlags::empty(), 64);
    let asid = rig.tag(d) as u16;
    let mut g = Gather::new();
    rig.core
        .unmap(d, Iova(BASE + 4096), 37 * 4096, &mut g)
        .unwrap();
    let u = rig.unit(0);
    assert!(
        u.dma(Req::read(SID, BASE + 4096)).is_ok(),
        "stale until the sync"
    );
    assert!(
        u.walk(Req::read(SID, BASE + 4096)).is_err(),
        "unmapped in memory"
    );
    rig.core.sync(d, &mut g).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(syncs(&log), 1);
    let c = tlbis(&log);
    assert!(c.len() <= 3, "{c:?}");
    assert!(
        c.iter()
            .all(|c| matches!(c, Cmd::TlbiNhVa { vmid: 0, asid: x, .. } if *x == asid))
    );
    let a = addrs(&log);
    assert!(a.iter().all(|a| a.tg == 1 && a.ttl == 3 && a.leaf));
    assert_eq!(covered(&a, BASE + 4096), 37);
    let u = rig.unit(0);
    for i in 1..38 {
        assert_eq!(
            u.dma(Req::read(SID, BASE + i * 4096)).unwrap_err().id(),
            Some(evt::F_TRANSLATION)
        );
    }
    assert!(u.dma(Req::read(SID, BASE)).is_ok(), "its neighbours stay");
    assert!(u.dma(Req::read(SID, BASE + 38 * 4096)).is_ok());
}

/// Without RIL: one TLBI_NH_VA per page (TG 0, no range fields), and the
/// whole ASID (TLBI_NH_ASID) once the range reaches a table's worth.
#[test]
fn per_page_without_ril_then_the_whole_asid() {
    let cfg = SmmuConfig::qemu().ril(false);
    let (mut rig, _, d) = warm(cfg, false, PagingFlags::empty(), 32);
    rig.unmap(d, BASE, 16 * 4096);
    let log = rig.unit(0).take_log();
    let a = addrs(&log);
    assert_eq!(a.len(), 16);
    assert!(
        a.iter()
            .all(|a| a.tg == 0 && a.num == 0 && a.scale == 0 && a.ttl == 0 && a.leaf),
        "{a:?}"
    );
    assert_eq!(covered(&a, BASE), 16, "one page each");
    assert_eq!(syncs(&log), 1);
    assert_eq!(rig.unit(0).cache_sizes().2, 16, "the other 16 pages stay");

    let (mut rig, _, d) = warm(cfg, false, PagingFlags::empty(), 512);
    let asid = rig.tag(d) as u16;
    rig.unmap(d, BASE, 512 * 4096);
    let log = rig.unit(0).take_log();
    assert_eq!(tlbis(&log), [Cmd::TlbiNhAsid { vmid: 0, asid }]);
    assert_eq!(rig.unit(0).cache_sizes().2, 0);
}

/// A whole table's range unmapped frees the level-3 table: no leaf flag
/// (and no TTL), so the walk caches go too; 512 pages are one command.
#[test]
fn freed_tables_clear_the_leaf_flag() {
    let (mut rig, _, d) = warm(SmmuConfig::qemu(), false, PagingFlags::empty(), 512);
    let live = rig.hal.live_pages();
    rig.unmap(d, BASE, 512 * 4096);
    assert!(rig.hal.live_pages() < live, "a table page was freed");
    let a = addrs(&rig.unit(0).take_log());
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(!a[0].leaf && a[0].ttl == 0);
    assert_eq!(covered(&a, BASE), 512);
}

/// Stage 2 (a nest parent): TLBI_S2_IPA ranges under the domain's VMID;
/// without RIL past a table's worth, TLBI_S12_VMALL.
#[test]
fn stage_2_ranges_and_the_whole_vmid() {
    let (mut rig, _, d) = warm(SmmuConfig::qemu(), false, PagingFlags::NEST_PARENT, 8);
    let vmid = rig.tag(d) as u16;
    rig.unmap(d, BASE, 8 * 4096);
    let log = rig.unit(0).take_log();
    let c = tlbis(&log);
    assert!(
        c.iter()
            .all(|c| matches!(c, Cmd::TlbiS2Ipa { vmid: v, .. } if *v == vmid)),
        "{c:?}"
    );
    assert_eq!(covered(&addrs(&log), BASE), 8);
    assert_eq!(rig.unit(0).cache_sizes().2, 0);

    let cfg = SmmuConfig::qemu().ril(false);
    let (mut rig, _, d) = warm(cfg, false, PagingFlags::NEST_PARENT, 512);
    let vmid = rig.tag(d) as u16;
    rig.unmap(d, BASE, 512 * 4096);
    assert_eq!(tlbis(&rig.unit(0).take_log()), [Cmd::TlbiS12Vmall { vmid }]);
    assert_eq!(rig.unit(0).cache_sizes().2, 0);
}

/// An ATS device: the STE enables ATS, its ATC is invalidated whole at
/// attach, and an unmap queues ATC_INV for the range after the TLBIs, all
/// under one CMD_SYNC.
#[test]
fn atc_invalidation_after_the_tlbi() {
    let mut rig = Rig::new(&[SmmuConfig::qemu().ats(true)]);
    let dev = rig.device(0, SID, 0, true);
    let d = rig.paging(dev);
    rig.map_buffer(d, BASE, 16 * 4096);
    rig.clear_logs();
    rig.core.attach(dev, d).unwrap();
    assert_eq!(rig.unit(0).ste(SID).unwrap().eats, 1);
    let log = rig.unit(0).take_log();
    let atc = cmds(&log)
        .into_iter()
        .filter(|c| c.name() == "ATC_INV")
        .collect::<Vec<_>>();
    assert_eq!(
        atc,
        [Cmd::AtcInv {
            sid: SID,
            ssid: None,
            global: false,
            addr: 0,
            size: 52
        }]
    );

    rig.unmap(d, BASE + 4 * 4096, 3 * 4096);
    let log = rig.unit(0).take_log();
    let c = cmds(&log);
    let names: Vec<&str> = c.iter().map(|c| c.name()).collect();
    let atc_at = names.iter().position(|n| *n == "ATC_INV").expect("ATC_INV");
    assert!(
        names[..atc_at].iter().all(|n| *n == "TLBI_NH_VA"),
        "{names:?}"
    );
    assert_eq!(&names[atc_at..], ["ATC_INV", "CMD_SYNC"]);
    let Cmd::AtcInv { addr, size, .. } = c[atc_at] else {
        unreachable!()
    };
    let (s, e) = (addr, addr + (4096u64 << size));
    assert!(
        s <= BASE + 4 * 4096 && e >= BASE + 7 * 4096,
        "{s:#x}..{e:#x}"
    );
    assert!(size <= 3, "the smallest aligned block: {size}");
}

/// A device without ATS (or an SMMU without it) gets no ATC_INV.
#[test]
fn no_atc_invalidation_without_ats() {
    for (cfg, ats) in [
        (SmmuConfig::qemu().ats(true), false),
        (SmmuConfig::qemu(), true),
    ] {
        let (mut rig, _, d) = warm(cfg, ats, PagingFlags::empty(), 4);
        rig.unmap(d, BASE, 4 * 4096);
        assert_eq!(count(&rig.unit(0).take_log(), "ATC_INV"), 0);
    }
}

/// A freed domain's ASID is flushed before it is handed out again: the
/// next domain with the same ASID never hits what the first left in the
/// TLB, even without an unmap.
#[test]
fn a_freed_asid_is_flushed_before_reuse() {
    let (mut rig, dev, d) = warm(SmmuConfig::qemu(), false, PagingFlags::empty(), 1);
    let asid = rig.tag(d);
    rig.core.detach(dev).unwrap();
    rig.core.free_domain(d).unwrap();
    assert!(count(&rig.unit(0).take_log(), "TLBI_NH_ASID") >= 1);
    let e = rig.paging(dev);
    assert_eq!(rig.tag(e), asid, "the same ASID again");
    let pe = rig.map_buffer(e, BASE, 4096);
    rig.core.attach(dev, e).unwrap();
    assert_eq!(rig.unit(0).dma(Req::read(SID, BASE)).unwrap().pa, pe);
}
