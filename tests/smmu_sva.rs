//! SVA through the real SMMUv3 driver against the model: a CD over a CPU's
//! own AArch64 table (TTB0 the table's root, T0SZ from the CPU's TCR, its
//! MAIR), tagged with the CPU's ASID where it is free, bound at a PASID or
//! at the requester ID (SubstreamID 0 / no substream), and the CPU's unmap
//! reaching the SMMU only through `invalidate_range`, as TLBI_NH_VA under
//! that ASID.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use iommu::core::{AddressSpace, CpuFormat, FaultTarget};
use iommu::pgtable::{ArmS1, Gather, MairIndices, PageTable, Prot};
use iommu::{Iova, PhysAddr};
use smmu_model::*;

const SID: u32 = 0x40;
const VA: u64 = 0x7f00_0000_0000;
/// The CPU's ASID.
const CPU_ASID: u32 = 0x2a;

/// A CPU address space: an AArch64 stage-1 table (48-bit, 4 KiB granule)
/// with one page mapped at [`VA`]; its description for `register_space`.
fn cpu_space(rig: &Rig, asid: u32) -> (PageTable<ArmS1, ModelHal>, u64, AddressSpace) {
    let fmt = ArmS1::new(MairIndices::default(), 48).unwrap();
    let mut table = PageTable::new(fmt, rig.hal.clone()).unwrap();
    let page = rig.hal.page();
    table
        .map(
            Iova(VA),
            PhysAddr(page),
            4096,
            Prot::READ | Prot::WRITE | Prot::CACHE,
        )
        .unwrap();
    // TCR_EL1: T0SZ 16 (48-bit), TG0 4 KiB (0), inner / outer write-back,
    // inner shareable.
    let tcr = 16 | (1 << 8) | (1 << 10) | (3 << 12);
    let space = AddressSpace {
        root: table.root_phys(),
        format: CpuFormat::Aarch64 {
            tcr,
            mair: fmt.mair(),
        },
        asid,
    };
    (table, page, space)
}

/// A PASID bind: the CD at the space's PASID walks the CPU's table under
/// the CPU's ASID; DMA tagged with the PASID reaches the CPU's page.
#[test]
fn pasid_bind_walks_the_cpu_table_under_the_cpu_asid() {
    let mut rig = Rig::new(&[SmmuConfig::qemu().ssid_bits(8)]);
    let dev = rig.device(0, SID, 8, false);
    let (_table, page, space) = cpu_space(&rig, CPU_ASID);
    let sid = rig.core.register_space(space, FaultTarget::None).unwrap();
    let bond = rig.core.bind(dev, sid).unwrap();
    let pasid = rig.core.bond_info(bond).unwrap().pasid.unwrap();
    let cd = rig.unit(0).cd(SID, pasid).unwrap();
    assert!(cd.valid);
    assert_eq!(cd.asid as u32, CPU_ASID, "the CD carries the CPU's ASID");
    assert_eq!(cd.ttb0, space.root.get(), "TTB0 is the CPU's root");
    assert_eq!((cd.t0sz, cd.tg0), (16, 0));
    let t = rig.unit(0).dma(Req::read(SID, VA).ssid(pasid)).unwrap();
    assert_eq!(t.pa, page);
    rig.core.unbind(bond).unwrap();
    rig.core.teardown_space(sid).unwrap();
    assert!(!rig.unit(0).cd(SID, pasid).is_some_and(|c| c.valid));
}

/// A whole-device bind on an SMMU without substreams: CD 0 over the CPU's
/// table; the CPU unmaps the page: the SMMU still translates it (cached)
/// until `invalidate_range`, which sends TLBI_NH_VA under the CPU's ASID
/// and one CMD_SYNC; then the DMA faults.
#[test]
fn whole_device_bind_and_invalidate_range() {
    let mut rig = Rig::new(&[SmmuConfig::qemu()]);
    let dev = rig.device(0, SID, 0, false);
    let (mut table, page, space) = cpu_space(&rig, CPU_ASID);
    let sid = rig.core.register_space(space, FaultTarget::None).unwrap();
    let bond = rig.core.bind_device(dev, sid).unwrap();
    assert_eq!(rig.unit(0).cd(SID, 0).unwrap().asid as u32, CPU_ASID);
    assert_eq!(rig.unit(0).dma(Req::read(SID, VA)).unwrap().pa, page);
    let mut g = Gather::new();
    table.unmap(Iova(VA), 4096, &mut g).unwrap();
    assert!(
        rig.unit(0).dma(Req::read(SID, VA)).is_ok(),
        "the SMMU's TLB still holds the page before invalidate_range"
    );
    rig.clear_logs();
    rig.core.invalidate_range(sid, VA, VA + 4096).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(syncs(&log), 1);
    let tlbis: Vec<Cmd> = cmds_no_syncs(&log);
    assert!(!tlbis.is_empty());
    assert!(
        tlbis.iter().all(
            |c| matches!(c, Cmd::TlbiNhVa { vmid: 0, asid, .. } if u32::from(*asid) == CPU_ASID)
        ),
        "{tlbis:?}"
    );
    assert_eq!(
        rig.unit(0).dma(Req::read(SID, VA)).unwrap_err().id(),
        Some(evt::F_TRANSLATION)
    );
    g.release(&rig.hal);
    rig.core.unbind(bond).unwrap();
    rig.core.teardown_space(sid).unwrap();
}

/// The CPU's ASID already belongs to a paging domain: the SVA domain gets a
/// private one (never the same tag twice), and the paging domain keeps
/// its translations.
#[test]
fn a_taken_cpu_asid_gives_a_private_one() {
    let mut rig = Rig::new(&[SmmuConfig::qemu()]);
    let (a, b) = (
        rig.device(0, SID, 0, false),
        rig.device(0, SID + 1, 0, false),
    );
    let d = rig.paging(a);
    let taken = rig.tag(d);
    let (_table, _page, space) = cpu_space(&rig, taken);
    let sid = rig.core.register_space(space, FaultTarget::None).unwrap();
    let before = rig.ids_in_use(0);
    let bond = rig.core.bind_device(b, sid).unwrap();
    let sva = rig.core.bond_info(bond).unwrap().domain;
    assert_ne!(rig.tag(sva), taken, "a private ASID");
    assert_eq!(
        rig.unit(0).cd(SID + 1, 0).unwrap().asid as u32,
        rig.tag(sva)
    );
    rig.core.unbind(bond).unwrap();
    rig.core.teardown_space(sid).unwrap();
    // The private ASID went back; the paging domain's was never touched.
    assert_eq!(rig.ids_in_use(0), before);
    assert_eq!(rig.tag(d), taken);
}
