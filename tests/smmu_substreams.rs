//! Substreams through the real SMMUv3 driver against the model: CD tables
//! of a device with PASIDs (linear, and two-level where IDR0.CD2L —
//! neither exists in QEMU's SMMU), a domain attached at a PASID reached by
//! DMA tagged with it, S1DSS following the requester ID's domain, and the
//! events of SubstreamIDs nothing is attached at.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::Error;
use iommu::core::{DeviceId, DomainId};
use smmu_model::entry::dss;
use smmu_model::*;

const SID: u32 = 0x30;

fn setup(cfg: SmmuConfig, pasid_bits: u8) -> (Rig, DeviceId) {
    let mut rig = Rig::new(&[cfg]);
    let dev = rig.device(0, SID, pasid_bits, false);
    (rig, dev)
}

fn event(rig: &Rig, req: Req) -> Option<u8> {
    rig.unit(0).dma(req).unwrap_err().id()
}

/// A linear CD table (SSIDSIZE 8): the requester ID's domain at CD 0
/// (S1DSS SSID0), a PASID's domain at its CD; DMA reaches each through its
/// own tables; SubstreamID 0 is refused where CD 0 serves untagged DMA,
/// an unbound PASID's invalid CD is C_BAD_CD, a PASID beyond S1CDMax is
/// C_BAD_SUBSTREAMID.
#[test]
fn linear_cd_table_and_pasid_dma() {
    let (mut rig, dev) = setup(SmmuConfig::qemu().ssid_bits(8), 8);
    let (a, b) = (rig.paging(dev), rig.paging(dev));
    let pa = rig.map_buffer(a, 0x1000, 4096);
    let pb = rig.map_buffer(b, 0x1000, 4096);
    rig.core.attach(dev, a).unwrap();
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, b).unwrap();

    let ste = rig.unit(0).ste(SID).unwrap();
    assert_eq!((ste.s1fmt, ste.s1_cd_max, ste.s1dss), (0, 8, dss::SSID0));
    let u = rig.unit(0);
    assert_eq!(u.dma(Req::read(SID, 0x1000)).unwrap().pa, pa);
    assert_eq!(u.dma(Req::read(SID, 0x1000).ssid(pasid)).unwrap().pa, pb);
    assert_eq!(
        u.cd(SID, pasid).unwrap().asid,
        rig.tag(b) as u16,
        "the PASID's CD carries its domain's ASID"
    );
    assert_eq!(
        event(&rig, Req::read(SID, 0x1000).ssid(0)),
        Some(evt::C_BAD_SUBSTREAMID)
    );
    assert_eq!(
        event(&rig, Req::read(SID, 0x1000).ssid(pasid + 1)),
        Some(evt::C_BAD_CD)
    );
    assert_eq!(
        event(&rig, Req::read(SID, 0x1000).ssid(256)),
        Some(evt::C_BAD_SUBSTREAMID)
    );

    // Detached: the PASID's CD is invalid again, its DMA refused.
    rig.core.detach_pasid(dev, pasid).unwrap();
    assert_eq!(
        event(&rig, Req::read(SID, 0x1000).ssid(pasid)),
        Some(evt::C_BAD_CD)
    );
    assert_eq!(rig.unit(0).dma(Req::read(SID, 0x1000)).unwrap().pa, pa);
}

/// S1DSS follows the requester ID's domain while PASIDs are attached:
/// Identity bypasses untagged DMA, Blocked terminates it
/// (F_STREAM_DISABLED); the PASID's DMA still translates.
#[test]
fn s1dss_follows_the_requester_id() {
    let (mut rig, dev) = setup(SmmuConfig::qemu().ssid_bits(8), 8);
    let b = rig.paging(dev);
    let pb = rig.map_buffer(b, 0x1000, 4096);
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, b).unwrap();

    rig.core.attach(dev, DomainId::IDENTITY).unwrap();
    assert_eq!(rig.unit(0).ste(SID).unwrap().s1dss, dss::BYPASS);
    let t = rig.unit(0).dma(Req::read(SID, 0x7000)).unwrap();
    assert_eq!((t.kind, t.pa), (Kind::Bypass, 0x7000));

    rig.core.attach(dev, DomainId::BLOCKED).unwrap();
    assert_eq!(rig.unit(0).ste(SID).unwrap().s1dss, dss::TERMINATE);
    assert_eq!(
        event(&rig, Req::read(SID, 0x7000)),
        Some(evt::F_STREAM_DISABLED)
    );
    assert_eq!(
        rig.unit(0)
            .dma(Req::read(SID, 0x1000).ssid(pasid))
            .unwrap()
            .pa,
        pb
    );
    // Nothing attached any more: the STE aborts.
    rig.core.detach_pasid(dev, pasid).unwrap();
    assert_eq!(
        rig.unit(0).dma(Req::read(SID, 0x1000).ssid(pasid)),
        Err(WalkFault::Abort("STE Config abort"))
    );
}

/// A two-level CD table (SSIDSIZE 16 with CD2L): leaf tables of 64 CDs made
/// only for PASIDs attached, their level-1 descriptor invalidated with a
/// non-leaf CFGI_CD; a PASID under no leaf is C_BAD_SUBSTREAMID, one in a
/// leaf without a valid CD C_BAD_CD.
#[test]
fn two_level_cd_table() {
    let (mut rig, dev) = setup(SmmuConfig::qemu().ssid_bits(16).cd2l(true), 16);
    let (a, b, c) = (rig.paging(dev), rig.paging(dev), rig.paging(dev));
    let pa = rig.map_buffer(a, 0x1000, 4096);
    let pb = rig.map_buffer(b, 0x1000, 4096);
    let pc = rig.map_buffer(c, 0x1000, 4096);
    rig.core.attach(dev, a).unwrap();
    let pasids: Vec<u32> = (0..70)
        .map(|_| rig.core.alloc_pasid(dev).unwrap())
        .collect();
    let (low, high) = (pasids[0], pasids[69]);
    assert!(low < 64 && high >= 64, "two leaves: {low} {high}");
    rig.clear_logs();
    rig.core.attach_pasid(dev, low, b).unwrap();
    rig.core.attach_pasid(dev, high, c).unwrap();

    let ste = rig.unit(0).ste(SID).unwrap();
    assert_eq!(
        (ste.s1fmt, ste.s1_cd_max),
        (1, 16),
        "two-level, 4 KiB leaves"
    );
    let log = rig.unit(0).take_log();
    assert!(
        cmds(&log).contains(&Cmd::CfgiCd {
            sid: SID,
            ssid: high,
            leaf: false
        }),
        "the new leaf's descriptor invalidated too"
    );
    let u = rig.unit(0);
    assert_eq!(u.dma(Req::read(SID, 0x1000)).unwrap().pa, pa);
    assert_eq!(u.dma(Req::read(SID, 0x1000).ssid(low)).unwrap().pa, pb);
    assert_eq!(u.dma(Req::read(SID, 0x1000).ssid(high)).unwrap().pa, pc);
    assert_eq!(
        event(&rig, Req::read(SID, 0x1000).ssid(high + 1)),
        Some(evt::C_BAD_CD)
    );
    assert_eq!(
        event(&rig, Req::read(SID, 0x1000).ssid(0x8000)),
        Some(evt::C_BAD_SUBSTREAMID),
        "no leaf there"
    );
    let m = *rig.smmu(0).master(SID, false).unwrap().unwrap();
    let t = m.cd.unwrap();
    assert!(t.two_level);
    assert_eq!(
        t.pages(&rig.hal),
        2 + 2,
        "level 1 (1024 descriptors, two pages) and two leaves"
    );
}

/// Without substreams (SSIDSIZE 0, or a device without PASIDs) attach at a
/// PASID is refused, naming what is missing; a stage-2 domain cannot share
/// a device with PASIDs.
#[test]
fn refusals() {
    let (mut rig, dev) = setup(SmmuConfig::qemu(), 8);
    let d = rig.paging(dev);
    let r = rig
        .core
        .alloc_pasid(dev)
        .and_then(|p| rig.core.attach_pasid(dev, p, d));
    assert!(
        matches!(r, Err(Error::Unsupported { what }) if what.contains("SSIDSIZE")),
        "{r:?}"
    );
    assert_eq!(rig.unit(0).ste(SID), None, "nothing written");

    let (mut rig, dev) = setup(SmmuConfig::qemu().ssid_bits(8), 8);
    let (b, p) = (rig.paging(dev), rig.parent(dev));
    let pasid = rig.core.alloc_pasid(dev).unwrap();
    rig.core.attach_pasid(dev, pasid, b).unwrap();
    assert!(matches!(
        rig.core.attach(dev, p),
        Err(Error::Incompatible { .. })
    ));
    // Nothing changed.
    assert_eq!(rig.unit(0).ste(SID).unwrap().s1dss, dss::TERMINATE);
}
