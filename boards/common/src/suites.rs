//! The discovery report and the on-target test suites.

use core::ptr::NonNull;

use iommu::drivers::smmuv3::{self, SmmuV3};
use iommu::drivers::vtd::{self, VtdUnit};

use crate::edu;
use crate::harness::{Ctx, Suite, Test, TestResult};
use crate::pci::{self, BarKind, Topology};
use crate::platform::{IommuKind, IommuUnit, Platform, WindowKind};
use crate::{check, check_eq, cmdline, skip};

fn vtd_unit(u: &IommuUnit) -> Option<VtdUnit> {
    let base = NonNull::new(pci::phys_ptr(u.base))?;
    // SAFETY: `base` is a DRHD register base from the DMAR table, identity-mapped
    // as device memory by the board; only this single-threaded code touches it.
    Some(unsafe { VtdUnit::new(base) })
}

fn smmu_unit(u: &IommuUnit) -> Option<SmmuV3> {
    let base = NonNull::new(pci::phys_ptr(u.base))?;
    // SAFETY: `base` is an "arm,smmu-v3" reg base from the device tree (128 KiB),
    // identity-mapped as device memory by the board; only this code touches it.
    Some(unsafe { SmmuV3::new(base) })
}

fn report_vtd(i: usize, u: &IommuUnit) {
    let Some(unit) = vtd_unit(u) else { return };
    let id = unit.identity();
    let (c, e) = (id.cap, id.ecap);
    defmt::println!(
        "IOMMU #{=usize}: VT-d {=u8}.{=u8} at {=u64:#x} (segment {=u16}, {=str}), CAP {=u64:#018x} ECAP {=u64:#018x}",
        i,
        id.version.major,
        id.version.minor,
        u.base,
        u.segment,
        if u.include_all {
            "INCLUDE_PCI_ALL"
        } else {
            "scoped"
        },
        c.raw,
        e.raw
    );
    defmt::println!(
        "  domains {=u32}, SAGAW {=u8:#x} (bit1 39-bit, bit2 48-bit, bit3 57-bit), MGAW {=u8}, SL large pages {=u8:#x}, caching mode {=bool}, PSI {=bool} MAMV {=u8}, {=u16} fault record(s) at {=usize:#x}, IOTLB regs at {=usize:#x}",
        c.domains,
        c.sagaw.bits(),
        c.mgaw,
        c.sl_large_pages.bits(),
        c.caching_mode,
        c.page_selective_invalidation,
        c.max_address_mask,
        c.fault_records,
        c.fault_record_offset,
        e.iotlb_offset
    );
    defmt::println!(
        "  QI {=bool} IR {=bool} PT {=bool} DT {=bool} coherent {=bool} scalable {=bool} first-level {=bool} second-level {=bool} nested {=bool} PASID {=u8} bits PRS {=bool}; translation enabled {=bool}",
        e.queued_invalidation,
        e.interrupt_remapping,
        e.pass_through,
        e.device_tlb,
        e.coherent,
        e.scalable_mode,
        e.first_level,
        e.second_level,
        e.nested,
        e.pasid_bits,
        e.page_requests,
        unit.translation_enabled()
    );
    for s in &u.scopes {
        defmt::println!("  scope {}", s);
    }
}

fn report_smmu(i: usize, u: &IommuUnit) {
    let Some(unit) = smmu_unit(u) else { return };
    let id = unit.identity();
    let (i0, i1, i5) = (id.idr0, id.idr1, id.idr5);
    defmt::println!(
        "IOMMU #{=usize}: SMMUv3.{=u8} at {=u64:#x} size {=u64:#x}, IIDR {=u32:#x}, IDR0 {=u32:#010x} IDR1 {=u32:#010x} IDR3 {=u32:#010x} IDR5 {=u32:#010x}",
        i,
        id.aidr.minor,
        u.base,
        u.size,
        id.iidr.raw,
        i0.raw,
        i1.raw,
        id.idr3.raw,
        i5.raw
    );
    defmt::println!(
        "  stage1 {=bool} stage2 {=bool} AArch64 tables {=bool} coherent {=bool} ASID16 {=bool} VMID16 {=bool} 2-level stream table {=bool} ATS {=bool} PRI {=bool} MSI {=bool} HTTU {=bool}",
        i0.stage1,
        i0.stage2,
        matches!(
            i0.table_formats,
            smmuv3::regs::TableFormats::AArch64 | smmuv3::regs::TableFormats::Both
        ),
        i0.coherent,
        i0.asid16,
        i0.vmid16,
        i0.two_level_stream_table,
        i0.ats,
        i0.pri,
        i0.msi,
        i0.httu_access
    );
    defmt::println!(
        "  StreamID {=u8} bits, SubstreamID {=u8} bits, cmdq 2^{=u8}, eventq 2^{=u8}, OAS {=u8} bits, granules 4K {=bool} 16K {=bool} 64K {=bool}, range invalidation {=bool}; enabled {=bool}, bypass aborts {=bool}",
        i1.sid_bits,
        i1.ssid_bits,
        i1.cmdq_log2,
        i1.eventq_log2,
        i5.oas_bits,
        i5.gran_4k,
        i5.gran_16k,
        i5.gran_64k,
        id.idr3.ril,
        unit.enabled(),
        unit.bypass_aborts()
    );
}

/// Print everything found: IOMMUs with their capabilities, reserved regions,
/// and each PCI function with its BARs and the IOMMU that covers it.
pub fn report(p: &Platform, t: &Topology) {
    defmt::println!(
        "board {=str}, command line \"{=str}\"",
        p.board,
        p.cmdline.as_str()
    );
    for r in &p.ram {
        defmt::println!("RAM {=u64:#x}..{=u64:#x}", r.base, r.end());
    }
    for e in &p.ecam {
        defmt::println!(
            "ECAM segment {=u16} buses {=u8}-{=u8} at {=u64:#x}",
            e.segment,
            e.bus_start,
            e.bus_end,
            e.base
        );
    }
    for w in &p.windows {
        defmt::println!(
            "host bridge window {} pref {=bool}: cpu {=u64:#x} pci {=u64:#x} size {=u64:#x}",
            w.kind,
            w.prefetchable,
            w.cpu_base,
            w.pci_base,
            w.size
        );
    }
    for (i, u) in p.iommus.iter().enumerate() {
        match u.kind {
            IommuKind::Vtd => report_vtd(i, u),
            IommuKind::SmmuV3 => report_smmu(i, u),
        }
    }
    for m in &p.rid_maps {
        defmt::println!(
            "iommu-map: RIDs {=u32:#x}+{=u32:#x} -> IOMMU #{=usize} StreamIDs from {=u32:#x}",
            m.rid_base,
            m.len,
            m.iommu,
            m.sid_base
        );
    }
    for r in &p.rmrrs {
        defmt::println!(
            "RMRR {=u64:#x}..={=u64:#x} segment {=u16}",
            r.base,
            r.limit,
            r.segment
        );
    }
    for a in &p.atsrs {
        defmt::println!(
            "ATSR segment {=u16} all ports {=bool}",
            a.segment,
            a.all_ports
        );
    }
    for d in &t.devices {
        let cov = pci::coverage(p, t, d);
        let unit = cov.map(|c| &p.iommus[c.iommu]);
        defmt::println!(
            "PCI {=u16:04x}:{=u8:02x}:{=u8:02x}.{=u8} {=u16:04x}:{=u16:04x} class {=u32:06x}{=str} -> {=str} #{=usize} at {=u64:#x}, {=str} {=u32:#06x}",
            d.segment,
            d.bdf.bus,
            d.bdf.dev,
            d.bdf.func,
            d.vendor,
            d.device,
            d.class,
            match d.buses {
                Some(_) => " (bridge)",
                None => "",
            },
            match unit.map(|u| u.kind) {
                Some(IommuKind::Vtd) => "VT-d",
                Some(IommuKind::SmmuV3) => "SMMUv3",
                None => "no IOMMU",
            },
            cov.map(|c| c.iommu).unwrap_or(0),
            unit.map(|u| u.base).unwrap_or(0),
            match unit.map(|u| u.kind) {
                Some(IommuKind::Vtd) => "source-id",
                Some(IommuKind::SmmuV3) => "StreamID",
                None => "RID",
            },
            cov.map(|c| c.stream_id).unwrap_or(d.bdf.rid() as u32)
        );
        if let (Some((sec, sub)), Some((base, size))) = (d.buses, d.window) {
            defmt::println!(
                "    buses {=u8}-{=u8}, memory window {=u64:#x}..{=u64:#x}",
                sec,
                sub,
                base,
                base + size
            );
        }
        for b in &d.bars {
            defmt::println!(
                "    BAR{=u8} {} pref {=bool} size {=u64:#x} at {=u64:#x}",
                b.index,
                b.kind,
                b.prefetchable,
                b.size,
                b.cpu_addr.unwrap_or(0)
            );
        }
    }
    for e in &t.errors {
        defmt::println!("PCI bring-up problem: {}", e);
    }
}

// ---------------------------------------------------------------- discovery

fn firmware_tables(c: &Ctx) -> TestResult {
    let p = c.platform;
    check!(!p.ram.is_empty(), "no RAM region from firmware");
    check!(!p.ecam.is_empty(), "no ECAM window from firmware");
    check!(
        p.windows
            .iter()
            .any(|w| w.kind == WindowKind::Mem32 && w.size >= 1 << 20),
        "no 32-bit host bridge memory window of at least 1 MiB"
    );
    let want = match p.board {
        "q35" => IommuKind::Vtd,
        _ => IommuKind::SmmuV3,
    };
    check!(
        p.iommus.iter().any(|u| u.kind == want),
        "board {} has no {:?} unit in its firmware tables",
        p.board,
        want
    );
    for u in &p.iommus {
        check!(
            u.base != 0 && u.base % 4096 == 0,
            "IOMMU base {:#x} not page aligned",
            u.base
        );
    }
    if want == IommuKind::SmmuV3 {
        check!(
            !p.rid_maps.is_empty(),
            "no iommu-map on the PCIe host bridge"
        );
    }
    Ok(())
}

fn pci_devices(c: &Ctx) -> TestResult {
    check!(!c.pci.devices.is_empty(), "no PCI function found");
    check!(
        c.pci.errors.is_empty(),
        "PCI bring-up problems: {:?}",
        c.pci.errors.as_slice()
    );
    let found = c.pci.find(edu::VENDOR, edu::DEVICE).count();
    match cmdline::get(&c.platform.cmdline, "iommu.edus").and_then(|v| v.parse::<usize>().ok()) {
        Some(want) => check_eq!(
            found,
            want,
            "edu devices found vs. on the QEMU command line"
        ),
        None => check!(found >= 1, "no edu device"),
    }
    Ok(())
}

fn bars_inside_windows(c: &Ctx) -> TestResult {
    let mut assigned: heapless::Vec<(u64, u64), 128> = heapless::Vec::new();
    for d in &c.pci.devices {
        for b in d.bars.iter().filter(|b| b.kind != BarKind::Io) {
            let (Some(pci), Some(cpu)) = (b.pci_addr, b.cpu_addr) else {
                check!(false, "{:?} BAR{} not assigned", d.bdf, b.index);
                continue;
            };
            check!(
                pci % b.size == 0,
                "{:?} BAR{} at {:#x} not aligned to its size",
                d.bdf,
                b.index,
                pci
            );
            let inside = c.platform.windows.iter().any(|w| {
                w.kind != WindowKind::Io
                    && pci >= w.pci_base
                    && pci + b.size <= w.pci_base + w.size
                    && cpu - pci == w.cpu_base - w.pci_base
            });
            check!(
                inside,
                "{:?} BAR{} at {:#x} outside every window",
                d.bdf,
                b.index,
                pci
            );
            if b.kind == BarKind::Mem32 {
                check!(pci + b.size <= 1 << 32, "32-bit BAR above 4 GiB");
            }
            for &(s, e) in &assigned {
                check!(pci + b.size <= s || pci >= e, "BARs overlap at {:#x}", pci);
            }
            let mut up = d.parent;
            while let Some(pi) = up {
                let bridge = &c.pci.devices[pi as usize];
                let inside = bridge
                    .window
                    .is_some_and(|(wb, ws)| pci >= wb && pci + b.size <= wb + ws);
                check!(
                    inside,
                    "{:?} BAR{} at {:#x} outside the window of bridge {:?} ({:?})",
                    d.bdf,
                    b.index,
                    pci,
                    bridge.bdf,
                    bridge.window
                );
                up = bridge.parent;
            }
            let _ = assigned.push((pci, pci + b.size));
        }
    }
    Ok(())
}

fn every_device_covered(c: &Ctx) -> TestResult {
    for d in &c.pci.devices {
        // Host bridges do not master DMA through the IOMMU.
        if d.class >> 8 == 0x0600 {
            continue;
        }
        let cov = pci::coverage(c.platform, c.pci, d);
        check!(
            cov.is_some(),
            "{:?} {:04x}:{:04x} not covered by any IOMMU",
            d.bdf,
            d.vendor,
            d.device
        );
        if let Some(cov) = cov {
            let u = &c.platform.iommus[cov.iommu];
            if u.kind == IommuKind::SmmuV3 {
                if let Some(s) = smmu_unit(u) {
                    let bits = s.identity().idr1.sid_bits;
                    check!(
                        bits >= 32 || cov.stream_id < 1 << bits,
                        "StreamID {:#x} beyond the SMMU's {} bits",
                        cov.stream_id,
                        bits
                    );
                }
            }
        }
    }
    Ok(())
}

static DISCOVERY: Suite = Suite {
    name: "discovery",
    tests: &[
        Test {
            name: "firmware_tables",
            run: firmware_tables,
        },
        Test {
            name: "pci_devices",
            run: pci_devices,
        },
        Test {
            name: "bars_inside_windows",
            run: bars_inside_windows,
        },
        Test {
            name: "every_device_covered",
            run: every_device_covered,
        },
    ],
};

// ---------------------------------------------------------------- VT-d

/// What a q35 profile's intel-iommu must expose (from QEMU 10.0's model).
struct VtdExpect {
    profile: &'static str,
    scalable: bool,
    first_level: bool,
    second_level: bool,
    /// Guest address width (aw-bits).
    mgaw: u8,
    caching_mode: bool,
}

const fn expect(
    profile: &'static str,
    mode: (bool, bool, bool),
    mgaw: u8,
    caching_mode: bool,
) -> VtdExpect {
    VtdExpect {
        profile,
        scalable: mode.0,
        first_level: mode.1,
        second_level: mode.2,
        mgaw,
        caching_mode,
    }
}

/// (scalable, first level, second level) of the three modes.
const LEGACY: (bool, bool, bool) = (false, false, false);
const SCALABLE: (bool, bool, bool) = (true, false, true);
const FLTS: (bool, bool, bool) = (true, true, false);

const VTD_EXPECT: &[VtdExpect] = &[
    expect("q35-legacy", LEGACY, 48, false),
    expect("q35-scalable", SCALABLE, 48, false),
    expect("q35-flts", FLTS, 48, false),
    expect("q35-legacy-aw39-cm", LEGACY, 39, true),
    expect("q35-scalable-aw39-cm", SCALABLE, 39, true),
];

pub(crate) fn vtd_units<'a>(c: &'a Ctx) -> impl Iterator<Item = (&'a IommuUnit, VtdUnit)> {
    c.platform
        .iommus
        .iter()
        .filter(|u| u.kind == IommuKind::Vtd)
        .filter_map(|u| vtd_unit(u).map(|v| (u, v)))
}

fn vtd_registers_decode(c: &Ctx) -> TestResult {
    let mut n = 0;
    for (u, unit) in vtd_units(c) {
        n += 1;
        let id = unit.identity();
        check!(
            id.version.major >= 1,
            "VER {:?}: major version 0",
            id.version
        );
        check!(
            !id.cap.sagaw.is_empty(),
            "CAP.SAGAW empty: no walkable address width"
        );
        check!(id.cap.mgaw >= 39, "MGAW {} below 39 bits", id.cap.mgaw);
        check!(id.cap.domains >= 16, "fewer than 16 domains");
        // The fault-recording and IOTLB registers must lie inside the DRHD's register set.
        check!(
            id.register_span() as u64 <= u.size,
            "registers span {:#x} bytes but the DRHD declares {:#x}",
            id.register_span(),
            u.size
        );
        check!(
            id.cap.fault_record_offset >= 0x100,
            "FRO {:#x} overlaps the fixed registers",
            id.cap.fault_record_offset
        );
        check!(
            id.ecap.iotlb_offset >= 0xf0,
            "IRO {:#x} overlaps the fixed registers",
            id.ecap.iotlb_offset
        );
        check!(
            !unit.translation_enabled(),
            "translation already enabled at boot (GSTS {:#x})",
            unit.global_status()
        );
        // Raw and decoded agree on a few fields taken straight from the spec's bit positions.
        check_eq!(id.cap.caching_mode, id.cap.raw & (1 << 7) != 0, "CAP.CM");
        check_eq!(
            id.ecap.queued_invalidation,
            id.ecap.raw & (1 << 1) != 0,
            "ECAP.QI"
        );
    }
    if n == 0 {
        skip!("no VT-d unit on this board");
    }
    Ok(())
}

fn vtd_profile_capabilities(c: &Ctx) -> TestResult {
    if c.platform.iommus.iter().all(|u| u.kind != IommuKind::Vtd) {
        skip!("no VT-d unit on this board");
    }
    let Some(profile) = c.profile() else {
        skip!("no iommu.profile on the command line")
    };
    let Some(want) = VTD_EXPECT.iter().find(|e| e.profile == profile) else {
        skip!("no expectations for profile {}", profile)
    };
    if cmdline::get(&c.platform.cmdline, "iommu.custom-qemu").is_some() {
        skip!("QEMU arguments beyond the profile's: its expectations may not hold");
    }
    for (_, unit) in vtd_units(c) {
        let id = unit.identity();
        let (cap, e) = (id.cap, id.ecap);
        check_eq!(id.version.major, 1, "VER major (QEMU models VT-d 1.0)");
        check!(e.queued_invalidation, "ECAP.QI missing");
        check!(e.interrupt_remapping, "ECAP.IR missing");
        check!(e.pass_through, "ECAP.PT missing");
        let width = if want.mgaw == 39 {
            vtd::regs::Sagaw::AW39_3LEVEL
        } else {
            vtd::regs::Sagaw::AW48_4LEVEL
        };
        check!(
            cap.sagaw.contains(width),
            "SAGAW lacks {}-bit: {:?}",
            want.mgaw,
            cap.sagaw
        );
        check_eq!(cap.mgaw, want.mgaw, "MGAW");
        check_eq!(cap.caching_mode, want.caching_mode, "CAP.CM");
        check!(
            cap.sl_large_pages.contains(vtd::regs::LargePages::SIZE_2M),
            "SLLPS lacks 2 MiB"
        );
        check!(cap.page_selective_invalidation, "CAP.PSI missing");
        check_eq!(e.scalable_mode, want.scalable, "ECAP.SMTS");
        check_eq!(e.first_level, want.first_level, "ECAP.FLTS");
        check_eq!(e.second_level, want.second_level, "ECAP.SLTS");
        check!(
            !e.page_requests,
            "ECAP.PRS set but QEMU has no page-request queue"
        );
    }
    Ok(())
}

static VTD: Suite = Suite {
    name: "vtd",
    tests: &[
        Test {
            name: "registers_decode",
            run: vtd_registers_decode,
        },
        Test {
            name: "profile_capabilities",
            run: vtd_profile_capabilities,
        },
    ],
};

// ---------------------------------------------------------------- SMMUv3

pub(crate) fn smmu_units<'a>(c: &'a Ctx) -> impl Iterator<Item = (&'a IommuUnit, SmmuV3)> {
    c.platform
        .iommus
        .iter()
        .filter(|u| u.kind == IommuKind::SmmuV3)
        .filter_map(|u| smmu_unit(u).map(|s| (u, s)))
}

fn smmu_registers_decode(c: &Ctx) -> TestResult {
    let mut n = 0;
    for (u, s) in smmu_units(c) {
        n += 1;
        let id = s.identity();
        check!(
            u.size >= 0x20000,
            "SMMU region {:#x} smaller than two register pages",
            u.size
        );
        check_eq!(id.aidr.major, 0, "AIDR major (0 = SMMUv3)");
        check!(
            id.idr0.stage1 || id.idr0.stage2,
            "neither stage 1 nor stage 2"
        );
        check!(id.idr1.sid_bits <= 32, "SIDSIZE {} > 32", id.idr1.sid_bits);
        check!(
            id.idr1.ssid_bits <= 20,
            "SSIDSIZE {} > 20",
            id.idr1.ssid_bits
        );
        check!(
            id.idr5.gran_4k || id.idr5.gran_16k || id.idr5.gran_64k,
            "no translation granule"
        );
        check!(!s.enabled(), "SMMU already enabled at boot");
        check_eq!(id.idr0.stage2, id.idr0.raw & 1 != 0, "IDR0.S2P");
        check_eq!(id.idr1.sid_bits as u32, id.idr1.raw & 0x3f, "IDR1.SIDSIZE");
    }
    if n == 0 {
        skip!("no SMMUv3 on this board");
    }
    Ok(())
}

fn smmu_profile_capabilities(c: &Ctx) -> TestResult {
    if c.platform
        .iommus
        .iter()
        .all(|u| u.kind != IommuKind::SmmuV3)
    {
        skip!("no SMMUv3 on this board");
    }
    let Some(profile) = c.profile() else {
        skip!("no iommu.profile on the command line")
    };
    let stage2 = match profile {
        "virt-nested" => true,
        "virt-s1" => false,
        other => skip!("no expectations for profile {}", other),
    };
    for (_, s) in smmu_units(c) {
        let id = s.identity();
        let (i0, i1, i5) = (id.idr0, id.idr1, id.idr5);
        check!(i0.stage1, "IDR0.S1P missing");
        check_eq!(i0.stage2, stage2, "IDR0.S2P");
        check_eq!(
            i0.table_formats,
            smmuv3::regs::TableFormats::AArch64,
            "IDR0.TTF"
        );
        check!(i0.coherent, "IDR0.COHACC missing");
        check!(i0.asid16, "IDR0.ASID16 missing");
        check!(i0.two_level_stream_table, "IDR0.ST_LEVEL not 2-level");
        check!(!i0.ats && !i0.pri, "ATS/PRI advertised but not modelled");
        check_eq!(
            i0.stall_model,
            smmuv3::regs::StallModel::TerminateOnly,
            "IDR0.STALL_MODEL"
        );
        check_eq!(i1.sid_bits, 16, "IDR1.SIDSIZE");
        check_eq!(i1.ssid_bits, 0, "IDR1.SSIDSIZE (QEMU has no substreams)");
        check_eq!(i5.oas_bits, 44, "IDR5.OAS");
        check!(i5.gran_4k, "IDR5.GRAN4K missing");
        check!(id.idr3.ril, "IDR3.RIL missing");
        if stage2 {
            check!(i0.vmid16, "IDR0.VMID16 missing with stage 2");
        }
    }
    Ok(())
}

static SMMU: Suite = Suite {
    name: "smmuv3",
    tests: &[
        Test {
            name: "registers_decode",
            run: smmu_registers_decode,
        },
        Test {
            name: "profile_capabilities",
            run: smmu_profile_capabilities,
        },
    ],
};

// ---------------------------------------------------------------- harness self-test

fn selftest(c: &Ctx) -> TestResult {
    match cmdline::get(&c.platform.cmdline, "iommu.selftest") {
        Some("fail") => check!(1 + 1 == 3, "deliberate failure (iommu.selftest=fail)"),
        Some("panic") => panic!("deliberate panic (iommu.selftest=panic)"),
        Some("hang") => loop {
            core::hint::spin_loop();
        },
        Some(other) => check!(false, "unknown iommu.selftest={}", other),
        None => {}
    }
    Ok(())
}

static SELFTEST: Suite = Suite {
    name: "selftest",
    tests: &[Test {
        name: "deliberately_broken",
        run: selftest,
    }],
};

/// The suites to run on this platform.
pub fn all(p: &Platform) -> heapless::Vec<&'static Suite, 12> {
    let mut v: heapless::Vec<&'static Suite, 12> = heapless::Vec::new();
    if cmdline::get(&p.cmdline, "iommu.bench") == Some("invalidate") {
        let _ = v.push(&crate::bench::BENCH);
        return v;
    }
    if cmdline::get(&p.cmdline, "iommu.tour").is_some() {
        let vtd = p.iommus.iter().any(|u| u.kind == IommuKind::Vtd);
        let _ = v.push(if vtd {
            &crate::tour::TOUR_VTD
        } else {
            &crate::tour::TOUR_SMMU
        });
        // `IOMMU_SELFTEST=fail cargo xtask run` shows a failed step fails the tour.
        if cmdline::get(&p.cmdline, "iommu.selftest").is_some() {
            let _ = v.push(&SELFTEST);
        }
        return v;
    }
    let _ = v.push(&DISCOVERY);
    let _ = v.push(&VTD);
    let _ = v.push(&SMMU);
    let _ = v.push(&crate::edu_suite::EDU);
    let _ = v.push(&crate::embedding::EMBEDDING);
    // Last: it turns translation on for the rest of the boot.
    let _ = v.push(&crate::vtd_dma::VTD_DMA);
    let _ = v.push(&crate::smmu_dma::SMMU_DMA);
    let _ = v.push(&crate::sva::SVA);
    let _ = v.push(&crate::iopf::IOPF);
    if cmdline::get(&p.cmdline, "iommu.selftest").is_some() {
        let _ = v.push(&SELFTEST);
    }
    v
}
