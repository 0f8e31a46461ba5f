//! Nested translation through the real SMMUv3 driver against the model: a
//! guest's stage 1 (CD table and tables in guest memory, at IPAs) over the
//! host's stage-2 parent; the guest's TLBI_NH_VA, handed over through
//! `invalidate_user`, queued under the parent's VMID and emptying the
//! nested TLB entries it names; a bad command stopping the array at its
//! index with nothing after it queued; the parent's unmaps reaching the
//! nested entries.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::Error;
use iommu::core::{DeviceId, DomainId};
use iommu::drivers::smmuv3::cmd as dcmd;
use iommu::drivers::smmuv3::user::INVALIDATE_DATA_ARM_SMMUV3;
use smmu_model::*;

const SID: u32 = 0x50;
const IOVA: u64 = 0x1000_0000;
const ASID: u16 = 7;

struct Nest {
    rig: Rig,
    dev: DeviceId,
    parent: DomainId,
    nested: DomainId,
    /// The guest table's root (guest memory, IPA = PA).
    root: u64,
    /// The IPA the guest maps IOVA to, and where the parent puts it.
    ipa: u64,
    pa: u64,
}

/// A nested domain translating IOVA → IPA (guest) → PA (host), DMA'd once
/// so the model's TLB holds the combined entry.
fn nest() -> Nest {
    let mut rig = Rig::qemu();
    let dev = rig.device(0, SID, 0, false);
    let parent = rig.parent(dev);
    let ipa = 0x2000_0000;
    let pa = rig.map_buffer(parent, ipa, 2 * 4096);
    let (cdt, root) = rig.guest_s1(parent, 0, 0, ASID, IOVA, ipa);
    let nested = rig.nested(dev, parent, cdt, 0, 0);
    rig.core.attach(dev, nested).unwrap();
    let t = rig.unit(0).dma(Req::read(SID, IOVA + 0x10)).unwrap();
    assert_eq!(
        (t.kind, t.pa, t.asid),
        (Kind::Nested, pa + 0x10, Some(ASID))
    );
    assert_eq!(t.vmid, Some(rig.tag(parent) as u16));
    rig.clear_logs();
    Nest {
        rig,
        dev,
        parent,
        nested,
        root,
        ipa,
        pa,
    }
}

/// The guest's level-3 entry for IOVA.
fn leaf_at(rig: &Rig, root: u64) -> u64 {
    let mut t = root;
    for level in 0..3 {
        let idx = (IOVA >> (39 - 9 * level)) & 0x1ff;
        t = rig.hal.read_u64(t + idx * 8).unwrap() & !0xfff;
    }
    t + ((IOVA >> 12) & 0x1ff) * 8
}

fn bytes(cmds: &[dcmd::Command]) -> Vec<u8> {
    cmds.iter()
        .flat_map(|c| c.words())
        .flat_map(u64::to_le_bytes)
        .collect()
}

fn one_page(addr: u64) -> dcmd::Range {
    dcmd::Range {
        addr,
        leaf: true,
        tg: 0,
        num: 0,
        scale: 0,
        ttl: 0,
    }
}

/// The guest points IOVA at its second page: the SMMU keeps the old
/// translation until the guest's TLBI_NH_VA, which the driver queues with
/// the parent's VMID (the guest wrote VMID 0) followed by one CMD_SYNC.
#[test]
fn guest_tlbi_goes_out_under_the_parents_vmid() {
    let Nest {
        mut rig,
        parent,
        nested,
        root,
        ipa,
        pa,
        ..
    } = nest();
    let vmid = rig.tag(parent) as u16;
    let leaf = leaf_at(&rig, root);
    let old = rig.hal.read_u64(leaf).unwrap();
    assert_eq!(old & !0xfff, ipa);
    assert!(rig.hal.write_u64(leaf, (ipa + 4096) | (old & 0xfff)));
    assert_eq!(
        rig.unit(0).dma(Req::read(SID, IOVA)).unwrap().pa,
        pa,
        "stale until the guest invalidates"
    );
    let data = bytes(&[dcmd::tlbi_nh_va(0, ASID, &one_page(IOVA))]);
    let out = rig
        .core
        .invalidate_user(nested, INVALIDATE_DATA_ARM_SMMUV3, &data, 16, 1)
        .unwrap();
    assert_eq!((out.handled, out.error.is_none()), (1, true));
    let log = rig.unit(0).take_log();
    let c = cmds(&log);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(
        matches!(c[0], Cmd::TlbiNhVa { vmid: v, asid: ASID, a } if v == vmid && a.addr == IOVA)
    );
    assert!(c[1].is_sync());
    assert_eq!(rig.unit(0).dma(Req::read(SID, IOVA)).unwrap().pa, pa + 4096);
}

/// A bad command (a nonzero VMID the guest may not name) at index 1 stops
/// the array there: the one before it is queued and synced, the one after
/// it never reaches the queue.
#[test]
fn a_bad_command_stops_at_its_index() {
    let Nest {
        mut rig, nested, ..
    } = nest();
    let data = bytes(&[
        dcmd::tlbi_nh_asid(0, ASID),
        dcmd::tlbi_nh_va(3, ASID, &one_page(IOVA)),
        dcmd::tlbi_nh_all(0),
    ]);
    let out = rig
        .core
        .invalidate_user(nested, INVALIDATE_DATA_ARM_SMMUV3, &data, 16, 3)
        .unwrap();
    assert_eq!(out.handled, 1);
    let (index, err) = out.error.unwrap();
    assert_eq!(index, 1);
    assert!(matches!(err, Error::InvalidField { .. }), "{err:?}");
    let c = cmds(&rig.unit(0).take_log());
    let names: Vec<&str> = c.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["TLBI_NH_ASID", "CMD_SYNC"]);
    assert_eq!(rig.unit(0).active_errors(), 0);
}

/// User invalidation is for nested domains only.
#[test]
fn user_invalidation_needs_a_nested_domain() {
    let Nest {
        mut rig, parent, ..
    } = nest();
    let data = bytes(&[dcmd::tlbi_nh_all(0)]);
    let r = rig
        .core
        .invalidate_user(parent, INVALIDATE_DATA_ARM_SMMUV3, &data, 16, 1);
    assert!(matches!(r, Err(Error::Incompatible { .. })), "{r:?}");
    assert_eq!(cmds(&rig.unit(0).take_log()), []);
}

/// The parent unmaps the IPA the guest uses: TLBI_S2_IPA and TLBI_NH_ALL
/// under the VMID reach the combined nested entry; DMA then faults at
/// stage 2.
#[test]
fn parent_unmap_reaches_nested_entries() {
    let Nest {
        mut rig,
        parent,
        ipa,
        ..
    } = nest();
    let vmid = rig.tag(parent) as u16;
    rig.unmap(parent, ipa, 2 * 4096);
    let log = rig.unit(0).take_log();
    assert!(
        cmds(&log).contains(&Cmd::TlbiNhAll { vmid }),
        "{:?}",
        cmds(&log)
    );
    assert!(count(&log, "TLBI_S2_IPA") >= 1);
    assert_eq!(syncs(&log), 1);
    let f = rig.unit(0).dma(Req::read(SID, IOVA)).unwrap_err();
    assert_eq!(f.id(), Some(evt::F_TRANSLATION));
    assert!(f.rec().unwrap().s2, "a stage-2 fault");
}

/// Detaching the nested domain leaves the device blocked; the guest's
/// memory stays the guest's.
#[test]
fn detach_leaves_the_stream_aborting() {
    let Nest { mut rig, dev, .. } = nest();
    rig.core.detach(dev).unwrap();
    assert_eq!(
        rig.unit(0).dma(Req::read(SID, IOVA)),
        Err(WalkFault::Abort("STE Config abort"))
    );
}

/// A guest asking for ATS (EATS = 1) gets it only where the host enabled
/// ATS for the device on an SMMU with ATS: otherwise the STE's EATS stays
/// 0 (RES0 without IDR0.ATS; the host never enabled the device's ATS), as
/// Linux takes the guest's EATS only for a master with ATS on.
#[test]
fn guest_ats_only_where_the_host_has_it() {
    use iommu::drivers::smmuv3::ste;
    for (cfg, dev_ats, eats) in [
        (SmmuConfig::qemu().ats(true), true, 1),
        (SmmuConfig::qemu().ats(true), false, 0),
        (SmmuConfig::qemu(), true, 0),
    ] {
        let mut rig = Rig::new(&[cfg]);
        let dev = rig.device(0, SID, 0, dev_ats);
        let parent = rig.parent(dev);
        let (cdt, _) = rig.guest_s1(parent, 0, 0, ASID, IOVA, 0x2000_0000);
        let mut w = vste(cdt, 0, 0);
        ste::EATS.set(&mut w, 1);
        let n = rig.nested_from(dev, parent, w).unwrap();
        rig.core.attach(dev, n).unwrap();
        let got = rig.unit(0).ste(SID).unwrap();
        assert_eq!(got.eats, eats, "{cfg:?} device ATS {dev_ats}");
        assert_eq!(got.config, smmu_model::entry::config::NESTED);
    }
}
