//! The guided tour `cargo xtask run` shows a newcomer: each step says what
//! the crate is about to do in words a hypervisor author follows, does it
//! on the emulated hardware, and checks the outcome. The host prints the
//! `tour:` lines and each step's verdict, and exits non-zero unless every
//! step went as expected.
//!
//! Runs instead of the test suites when the command line has `iommu.tour`.

use iommu::Iova;
use iommu::core::{DomainId, Fault, IommuDriver, PagingFlags};
use iommu::drivers::smmuv3::evtq::id;
use iommu::drivers::vtd::fault::reason;
use iommu::pgtable::{Gather, Prot};

use crate::dma_env::{Env, holds, need_devices, unchanged};
use crate::edu::{BUF_SIZE, Edu};
use crate::harness::{Ctx, Suite, Test, TestResult};
use crate::isolation::Isolation;
use crate::platform::IommuKind;
use crate::{check, check_eq, tryx};

/// Where step 2 maps its pages: far from any physical address.
const IOVA: u64 = 0x10_0000_0000;

fn kind_name(k: IommuKind) -> &'static str {
    match k {
        IommuKind::Vtd => "Intel VT-d remapping unit",
        IommuKind::SmmuV3 => "Arm SMMUv3",
    }
}

/// A fault's reason in words.
fn reason_name(k: IommuKind, code: u16) -> &'static str {
    match (k, code) {
        (IommuKind::Vtd, reason::WRITE) => "write to an address the domain does not map writable",
        (IommuKind::Vtd, reason::READ) => "read of an address the domain does not map readable",
        (IommuKind::Vtd, reason::FIRST_LEVEL_NOT_PRESENT) => "first-level entry not present",
        (IommuKind::Vtd, reason::SECOND_LEVEL_PERMISSION) => "second-level permission denied",
        (IommuKind::SmmuV3, id::F_TRANSLATION) => "F_TRANSLATION: nothing mapped there",
        (IommuKind::SmmuV3, id::F_PERMISSION) => "F_PERMISSION: the mapping forbids it",
        (IommuKind::SmmuV3, id::C_BAD_STE) => "C_BAD_STE: the stream's entry is invalid",
        _ => "see the architecture's fault-reason table",
    }
}

/// Step 1: what the firmware tables and PCI scan found.
fn found(c: &Ctx) -> TestResult {
    defmt::println!(
        "tour: Step 1. What this machine has: IOMMUs from the firmware tables, devices from the PCI scan."
    );
    for (i, u) in c.platform.iommus.iter().enumerate() {
        defmt::println!(
            "tour:   IOMMU #{=usize}: {=str}, registers at {=u64:#x}, PCI segment {=u16}",
            i,
            kind_name(u.kind),
            u.base,
            u.segment
        );
    }
    let mut covered = 0;
    for edu in Edu::all(c.pci) {
        let cov = c
            .pci
            .get(edu.segment, edu.bdf)
            .and_then(|d| crate::pci::coverage(c.platform, c.pci, d));
        match cov {
            Some(cov) => {
                covered += 1;
                defmt::println!(
                    "tour:   edu DMA device at {=u8:02x}:{=u8:02x}.{=u8}: behind IOMMU #{=usize}, which knows it as {=str} {=u32:#x}",
                    edu.bdf.bus,
                    edu.bdf.dev,
                    edu.bdf.func,
                    cov.iommu,
                    match c.platform.iommus[cov.iommu].kind {
                        IommuKind::Vtd => "source-id",
                        IommuKind::SmmuV3 => "StreamID",
                    },
                    cov.stream_id
                );
            }
            None => defmt::println!(
                "tour:   edu DMA device at {=u8:02x}:{=u8:02x}.{=u8}: no IOMMU covers it",
                edu.bdf.bus,
                edu.bdf.dev,
                edu.bdf.func
            ),
        }
    }
    check!(!c.platform.iommus.is_empty(), "no IOMMU found");
    check!(
        covered >= 2,
        "{} edu device(s) behind an IOMMU, the tour needs 2",
        covered
    );
    Ok(())
}

/// Step 2: a paging domain and a device copying through it.
fn translated<D: IommuDriver>(e: &mut Env<D>) -> TestResult {
    defmt::println!(
        "tour: Step 2. A paging domain: the device sees only what we map, at addresses we choose (IOVAs)."
    );
    need_devices(e, 1)?;
    let dev = e.devs[0].id;
    let dom = tryx!(
        e.core.alloc_paging(dev, PagingFlags::empty()),
        "alloc_paging"
    );
    let (src, dst) = (e.page()?, e.page()?);
    src.fill(7);
    dst.fill(8);
    e.map(dom, IOVA, &src, Prot::READ)?;
    e.map(dom, IOVA + 0x1000, &dst, Prot::READ | Prot::WRITE)?;
    tryx!(e.core.attach(dev, dom), "attach");
    defmt::println!(
        "tour:   mapped IOVA {=u64:#x} -> physical {=u64:#x} (read-only) and IOVA {=u64:#x} -> physical {=u64:#x} (read-write); device {=u32:#x} attached",
        IOVA,
        src.phys(),
        IOVA + 0x1000,
        dst.phys(),
        dev.id
    );
    e.dma_read(0, IOVA, BUF_SIZE)?;
    e.dma_write(0, IOVA + 0x1000, BUF_SIZE)?;
    holds(&dst, 7, "the device's copy")?;
    defmt::println!(
        "tour:   the device read {=usize} bytes at IOVA {=u64:#x} and wrote them at IOVA {=u64:#x}; the CPU found every byte at physical {=u64:#x}",
        BUF_SIZE,
        IOVA,
        IOVA + 0x1000,
        dst.phys()
    );
    tryx!(e.core.detach(dev), "detach");
    let mut g = Gather::new();
    tryx!(e.core.unmap(dom, Iova(IOVA), 0x2000, &mut g), "unmap");
    tryx!(e.core.sync(dom, &mut g), "sync");
    tryx!(e.core.free_domain(dom), "free_domain");
    Ok(())
}

/// Step 3: two devices in two domains; one reaching for the other's page
/// faults, and the fault is decoded.
fn isolation<D: IommuDriver>(e: &mut Env<D>, kind: IommuKind) -> TestResult {
    defmt::println!(
        "tour: Step 3. Isolation: a device reaching for memory its domain does not map is stopped, and the IOMMU says who, where and why."
    );
    need_devices(e, 2)?;
    let (a, b) = (e.devs[0].id, e.devs[1].id);
    let dom_a = crate::dma_env::paging(e, 0)?;
    let dom_b = crate::dma_env::paging(e, 1)?;
    let (mine, src) = (e.page()?, e.page()?);
    mine.fill(30);
    src.fill(31);
    e.map(dom_a, IOVA, &mine, Prot::READ | Prot::WRITE)?;
    e.map(dom_b, IOVA + 0x1000, &src, Prot::READ)?;
    tryx!(e.core.attach(a, dom_a), "attach");
    tryx!(e.core.attach(b, dom_b), "attach");
    e.faults()?;
    e.load(1, IOVA + 0x1000)?;
    defmt::println!(
        "tour:   device {=u32:#x} (domain B) writes at IOVA {=u64:#x}, which only domain A maps (to physical {=u64:#x})",
        b.id,
        IOVA,
        mine.phys()
    );
    e.dma_write(1, IOVA, 4)?;
    unchanged(&mine, 30, "domain A's page")?;
    let seen = e.faults()?;
    check!(!seen.is_empty(), "no fault reached domain B's handler");
    let (dom, f): (DomainId, Fault) = seen[0];
    check_eq!(
        dom,
        dom_b,
        "the fault went to the domain attached at the device"
    );
    check_eq!(f.device, b.id, "the fault names the device");
    check_eq!(f.addr & !0xfff, IOVA, "the fault names the address");
    defmt::println!(
        "tour:   blocked; domain A's page unchanged. The fault record: device {=u32:#x}, address {=u64:#x}, {=str}, reason {=u16:#x} ({=str}), routed to domain B's handler",
        f.device,
        f.addr,
        if f.access.contains(iommu::core::Access::WRITE) {
            "write"
        } else {
            "read"
        },
        f.reason,
        reason_name(kind, f.reason)
    );
    for (d, dom, at) in [(a, dom_a, IOVA), (b, dom_b, IOVA + 0x1000)] {
        tryx!(e.core.detach(d), "detach");
        tryx!(e.core.unmap_sync(dom, Iova(at), 0x1000), "unmap");
        tryx!(e.core.free_domain(dom), "free_domain");
    }
    Ok(())
}

/// Step 4: a fault handled by mapping the page, then the DMA retried.
fn fault_retry<D: Isolation>(e: &mut Env<D>) -> TestResult {
    defmt::println!(
        "tour: Step 4. A fault handled: a DMA to a page not mapped yet faults, the domain's handler asks for the page, it is mapped, and the device's retry lands."
    );
    crate::iopf::handled(e)?;
    defmt::println!("tour:   the retried DMA reached the page the handler asked for");
    Ok(())
}

/// Step 5: SVA.
fn sva<D: IommuDriver>(c: &Ctx, e: &mut Env<D>) -> TestResult {
    defmt::println!(
        "tour: Step 5. Shared virtual addressing: the device is bound to the CPU's own address space and uses the CPU's virtual addresses."
    );
    crate::sva::shared(c, e)?;
    defmt::println!(
        "tour:   the CPU and the device met at the same virtual addresses; after the CPU unmapped a page and told the IOMMU, the device faulted there"
    );
    Ok(())
}

/// Step 6 (SMMUv3): nested translation.
fn nested(c: &Ctx) -> TestResult {
    defmt::println!(
        "tour: Step 6. Nested translation: a guest's own stage-1 table over the host's stage 2; the guest's invalidation is passed through."
    );
    crate::smmu_nested::nested_end_to_end(c)?;
    defmt::println!(
        "tour:   DMA at the guest's IOVA crossed both stages; the guest's table change took effect only after its own TLBI, which the driver queued under the host's VMID"
    );
    Ok(())
}

fn vtd_translated(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, translated)
}
fn vtd_isolation(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, |e| isolation(e, IommuKind::Vtd))
}
fn vtd_fault_retry(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, fault_retry)
}
fn vtd_sva(c: &Ctx) -> TestResult {
    crate::vtd_env::with_env(c, |e| sva(c, e))
}
fn smmu_translated(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, translated)
}
fn smmu_isolation(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, |e| isolation(e, IommuKind::SmmuV3))
}
fn smmu_fault_retry(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, fault_retry)
}
fn smmu_sva(c: &Ctx) -> TestResult {
    crate::smmu_env::with_env(c, |e| sva(c, e))
}

/// The tour on a VT-d machine.
pub static TOUR_VTD: Suite = Suite {
    name: "tour",
    tests: &[
        Test {
            name: "1_found",
            run: found,
        },
        Test {
            name: "2_translated_dma",
            run: vtd_translated,
        },
        Test {
            name: "3_isolation_fault",
            run: vtd_isolation,
        },
        Test {
            name: "4_fault_mapped_and_retried",
            run: vtd_fault_retry,
        },
        Test {
            name: "5_sva",
            run: vtd_sva,
        },
    ],
};

/// The tour on an SMMUv3 machine.
pub static TOUR_SMMU: Suite = Suite {
    name: "tour",
    tests: &[
        Test {
            name: "1_found",
            run: found,
        },
        Test {
            name: "2_translated_dma",
            run: smmu_translated,
        },
        Test {
            name: "3_isolation_fault",
            run: smmu_isolation,
        },
        Test {
            name: "4_fault_mapped_and_retried",
            run: smmu_fault_retry,
        },
        Test {
            name: "5_sva",
            run: smmu_sva,
        },
        Test {
            name: "6_nested_guest",
            run: nested,
        },
    ],
};
