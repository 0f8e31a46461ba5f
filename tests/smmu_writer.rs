//! The entry writer of the real SMMUv3 driver against the model's watch:
//! every STE and CD change an attach makes (abort, bypass, stage 1, stage
//! 2, nested, an ASID change) is followed state by state as an SMMU reading
//! the entry at any moment would see it; none reads as a mix of the old and
//! new entry in the bits each uses. Changes within one word are hitless,
//! the others break the entry (V = 0) first; each step is one CFGI and one
//! CMD_SYNC. A watch negative control shows a naive rewrite is caught, and
//! skipping the CFGIs leaves the SMMU on its cached entry.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::core::{DeviceId, DomainId};
use smmu_model::*;

const SID: u32 = 0x20;

/// The steps of a log's entry changes: each CFGI is followed by its own
/// CMD_SYNC. Returns (CFGI_STE, CFGI_CD) counts.
fn steps(log: &[Event]) -> (usize, usize) {
    let c = cmds(log);
    for pair in c.chunks(2) {
        assert!(
            pair.len() == 2 && pair[0].is_cfgi() && pair[1].is_sync(),
            "a CFGI then a CMD_SYNC at each step: {c:?}"
        );
    }
    (count(log, "CFGI_STE"), count(log, "CFGI_CD"))
}

/// What one attach did to the STE and CD 0: (STE broken, STE steps, CD
/// broken while valid before and after, CD steps).
fn attach_watched(rig: &mut Rig, dev: DeviceId, d: DomainId) -> (bool, usize, bool, usize) {
    rig.clear_logs();
    rig.unit(0).watch();
    rig.core.attach(dev, d).unwrap();
    let u = rig.unit(0);
    let ch = u.changes();
    assert_eq!(ch.mixed(), Vec::<String>::new());
    let (ste, cd) = steps(&u.take_log());
    let ste_broke = ch.ste(SID).is_some_and(|c| c.broke());
    let cd_broke = ch.cd(SID, 0).is_some_and(|c| {
        let valid = |w: [u64; 8]| Cd::decode(w).valid;
        c.broke() && valid(c.first()) && valid(c.last())
    });
    (ste_broke, ste, cd_broke, cd)
}

/// Every transition between abort, bypass, stage 1 (two ASIDs), stage 2
/// (two VMIDs) and nested: never a mix; hitless where one word of used
/// bits changes, broken (three steps) where more do; the CD table's CD 0
/// installed before the STE reaches it and cleared after it no longer does.
#[test]
fn transitions_never_expose_a_mix() {
    let mut rig = Rig::qemu();
    let dev = rig.device(0, SID, 0, false);
    let (a, b) = (rig.paging(dev), rig.paging(dev));
    let (p, q) = (rig.parent(dev), rig.parent(dev));
    let (cdt, _) = rig.guest_s1(p, 0, 0, 3, 0x1000, 0x2000);
    let n = rig.nested(dev, p, cdt, 0, 0);
    let (id, blocked) = (DomainId::IDENTITY, DomainId::BLOCKED);
    // (to, STE broken, CFGI_STE steps, CD broken, CFGI_CD steps)
    let table = [
        ("identity", id, false, 2, false, 0),
        ("blocked", blocked, false, 2, false, 0),
        ("stage 1", a, false, 2, false, 2),
        ("stage 1, another ASID and table", b, false, 0, true, 3),
        ("identity from stage 1", id, false, 3, false, 2),
        ("stage 2", p, false, 2, false, 0),
        ("stage 2, another VMID and table", q, true, 3, false, 0),
        ("nested", n, true, 3, false, 0),
        ("stage 1 from nested", a, true, 3, false, 2),
        ("nested from stage 1", n, true, 3, false, 2),
        ("blocked from nested", blocked, false, 2, false, 0),
    ];
    for (name, d, ste_broke, ste_steps, cd_broke, cd_steps) in table {
        let got = attach_watched(&mut rig, dev, d);
        assert_eq!(got, (ste_broke, ste_steps, cd_broke, cd_steps), "{name}");
    }
}

/// The same STE again: nothing written, no command.
#[test]
fn reinstalling_the_same_entry_is_free() {
    let mut rig = Rig::qemu();
    let dev = rig.device(0, SID, 0, false);
    let p = rig.parent(dev);
    rig.core.attach(dev, p).unwrap();
    let ste = rig.unit(0).ste(SID).unwrap();
    rig.clear_logs();
    let m = *rig.smmu(0).master(SID, false).unwrap().unwrap();
    let hal = rig.hal.clone();
    let r = rig.smmu(0).install_ste(&hal, &m).unwrap();
    assert_eq!((r.syncs, r.broke), (0, false));
    assert_eq!(rig.unit(0).take_log(), []);
    assert_eq!(rig.unit(0).ste(SID).unwrap(), ste);
}

/// Negative control of the watch: a stage-1 STE overwritten by a stage-2
/// one word by word, word 0 first, exposes a mix and the watch says so.
#[test]
fn the_watch_catches_a_naive_rewrite() {
    let mut rig = Rig::qemu();
    let dev = rig.device(0, SID, 0, false);
    let (a, p) = (rig.paging(dev), rig.parent(dev));
    rig.core.attach(dev, p).unwrap();
    let s2 = rig.unit(0).ste(SID).unwrap().raw;
    rig.core.attach(dev, a).unwrap();
    let u = rig.unit(0);
    let s1 = u.ste(SID).unwrap().raw;
    let at = {
        let st = u.lock();
        st.walker()
            .unwrap()
            .ste_addr(SID, &Req::read(SID, 0))
            .unwrap()
    };
    u.watch();
    for (i, w) in s2.iter().enumerate() {
        assert!(rig.hal.write_u64(at + 8 * i as u64, *w));
        iommu::hal::Hal::flush_dcache(&rig.hal, at as *const u8, 64);
    }
    let mixed = rig.unit(0).changes().mixed();
    assert!(!mixed.is_empty(), "{s1:x?} -> {s2:x?}");
    // Put the driver's entry back so the rig drops cleanly.
    for (i, w) in s1.iter().enumerate() {
        assert!(rig.hal.write_u64(at + 8 * i as u64, *w));
    }
    rig.unit(0).clear_caches();
}

/// Negative control of the CFGIs: with the driver's entry syncs skipped, the
/// SMMU keeps translating through the STE and CD it cached; the global
/// invalidation brings the new ones in.
#[test]
fn without_cfgi_the_cached_entries_stay() {
    let mut rig = Rig::qemu();
    let dev = rig.device(0, SID, 0, false);
    let (a, b) = (rig.paging(dev), rig.paging(dev));
    let pa = rig.map_buffer(a, 0x1000, 4096);
    let pb = rig.map_buffer(b, 0x1000, 4096);
    rig.core.attach(dev, a).unwrap();
    assert_eq!(rig.unit(0).dma(Req::read(SID, 0x1000)).unwrap().pa, pa);
    rig.smmu(0).set_skip_sync(true);
    rig.core.attach(dev, b).unwrap();
    rig.smmu(0).set_skip_sync(false);
    assert_eq!(
        rig.unit(0).dma(Req::read(SID, 0x1000)).unwrap().pa,
        pa,
        "the cached CD (old ASID and table)"
    );
    let hal = rig.hal.clone();
    rig.smmu(0).invalidate_all(&hal).unwrap();
    assert_eq!(rig.unit(0).dma(Req::read(SID, 0x1000)).unwrap().pa, pb);
}
