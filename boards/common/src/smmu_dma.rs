//! The SMMUv3 DMA suite: the driver, through the core, translating real edu
//! DMA on QEMU's smmuv3 — stage 1 and stage 2 both ways, isolated, faulting
//! with the right event, invalidated (with negative controls showing the
//! SMMU caches), recovering from command errors and event-queue overflow,
//! and leaking nothing. Expectations follow the SMMU's ID registers, never
//! the profile's name.
//!
//! QEMU writes one event per failing 4-byte access, so transfers meant to
//! fault are 4 bytes long.

use iommu::core::{DomainId, PagingFlags};
use iommu::drivers::smmuv3::cmd::{self, Command};
use iommu::drivers::smmuv3::evtq::id;
use iommu::pgtable::Prot;
use iommu::{Error, Iova, PhysAddr};

use crate::dma_env::{
    IOVA_A, IOVA_B, UNMAPPED, holds, need_devices, no_fault, one_fault, paging, tag,
    translated_smoke, unchanged,
};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, Failure, Suite, Test, TestResult};
use crate::pool;
use crate::smmu_env::{Env, unit, with_env};
use crate::smmu_walk::{self, Layout};
use crate::{check, check_eq, tryx};

/// Bytes of a transfer meant to fault: one event.
pub(crate) const FAULTING: usize = 4;

const R: Prot = Prot::READ;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// STE.Config values the walker reads.
const CFG_ABORT: u8 = 0;
const CFG_S1: u8 = 5;
const CFG_S2: u8 = 6;

fn s2_present(e: &mut Env) -> Result<bool, Failure> {
    Ok(unit(e, 0)?.id.idr0.stage2)
}

/// A stage-2 paging domain (a nest parent on an SMMU with both stages).
fn stage2(e: &mut Env, d: usize) -> Result<DomainId, Failure> {
    let dom = tryx!(
        e.core.alloc_paging(e.devs[d].id, PagingFlags::NEST_PARENT),
        "alloc_paging (stage 2)"
    );
    e.capture_faults(dom)?;
    Ok(dom)
}

fn enable_aborts_every_device(c: &Ctx) -> TestResult {
    let want_linear = crate::smmu_env::linear(c);
    with_env(c, |e| {
        need_devices(e, 1)?;
        let regs = e.devs[0].regs;
        check!(unit(e, 0)?.enabled(), "CR0ACK.SMMUEN clear after enable");
        let sid_bits = u32::from(unit(e, 0)?.id.idr1.sid_bits);
        let layout = smmu_walk::layout(regs);
        match layout {
            Layout::Linear(n) => check!(
                want_linear || sid_bits <= 10,
                "linear table of 2^{} STEs for SIDSIZE {}",
                n,
                sid_bits
            ),
            Layout::TwoLevel(n, split) => {
                check!(!want_linear, "two-level table though linear was asked for");
                check_eq!((n, split), (sid_bits.min(21), 8), "two-level geometry");
            }
        }
        defmt::println!("smmu_dma: stream table {}", layout);
        for d in 0..e.devs.len() {
            let sid = e.devs[d].id.id;
            if let Some(s) = smmu_walk::ste(regs, sid) {
                check!(s.v && s.config == CFG_ABORT, "StreamID {:#x}: {:?}", sid, s);
            }
            let p = e.page()?;
            p.fill(0x100 + d as u32);
            e.dma_write(d, p.phys(), 64)?;
            unchanged(&p, 0x100 + d as u32, "an aborted device's write")?;
            no_fault(e, d)?;
        }
        Ok(())
    })
}

/// Map the region holding `src` with one `size` leaf at `iova`; check the
/// leaf through the walker; DMA through it both ways.
#[allow(clippy::too_many_arguments)]
fn large_page(
    e: &mut Env,
    dom: DomainId,
    walk: &dyn Fn(u64) -> Option<(u64, u64)>,
    src: &pool::Page,
    dst_iova: u64,
    dst: &pool::Page,
    other_iova: u64,
    size: u64,
    iova: u64,
) -> TestResult {
    let base = src.phys() & !(size - 1);
    tryx!(
        e.core.map(dom, Iova(iova), PhysAddr(base), size, RW),
        "map a large page"
    );
    let at = iova + (src.phys() - base);
    check_eq!(
        walk(at),
        Some((src.phys(), size)),
        "one leaf of the large size"
    );
    e.dma_read(0, other_iova, BUF_SIZE)?;
    e.dma_write(0, at, BUF_SIZE)?;
    holds(src, 2, "written through a large page")?;
    src.fill(10);
    e.dma_read(0, at, BUF_SIZE)?;
    e.dma_write(0, dst_iova, BUF_SIZE)?;
    holds(dst, 10, "read through a large page")?;
    src.fill(1);
    tryx!(
        e.core.unmap_sync(dom, Iova(iova), size),
        "unmap the large page"
    );
    Ok(())
}

fn both_ways(e: &mut Env, dom: DomainId, stage: u8) -> TestResult {
    let (src, dst, other) = (e.page()?, e.page()?, e.page()?);
    src.fill(1);
    other.fill(2);
    e.map(dom, IOVA_A, &src, R)?;
    e.map(dom, IOVA_A + 0x1000, &dst, RW)?;
    e.map(dom, IOVA_A + 0x2000, &other, R)?;
    tryx!(e.core.attach(e.devs[0].id, dom), "attach");
    e.dma_read(0, IOVA_A, BUF_SIZE)?;
    e.dma_write(0, IOVA_A + 0x1000, BUF_SIZE)?;
    holds(&dst, 1, "4K: written through the IOVA")?;
    unchanged(&src, 1, "4K: the source")?;
    no_fault(e, 0)?;
    // The STE (and CD), read back independently, reach the domain's table.
    let (regs, sid) = (e.devs[0].regs, e.devs[0].id.id);
    let ste = smmu_walk::ste(regs, sid).ok_or_else(|| fail("no STE"))?;
    check_eq!(ste.config, stage, "STE.Config");
    let t = tag(e, dom)?;
    let (root, start, root_bits) = if stage == CFG_S1 {
        let cd = smmu_walk::cd0(ste.cd_table);
        check!(cd.v && cd.aa64, "CD 0 {:?}", cd);
        check_eq!(cd.asid, t, "CD.ASID");
        check_eq!(cd.t0sz, 16, "CD.T0SZ (48-bit input)");
        (cd.ttb0, 0, 9)
    } else {
        check_eq!(ste.vmid, t, "STE.S2VMID");
        check!(ste.s2_aa64, "S2AA64 clear");
        // Start level from S2SL0 (0: level 2, 1: level 1, 2: level 0).
        let start = 2 - u32::from(ste.s2_sl0);
        let ias = 64 - u32::from(ste.s2_t0sz);
        let root_bits = ias - 12 - 9 * (3 - start);
        (ste.s2_ttb, start, root_bits)
    };
    let walk = move |ia: u64| smmu_walk::translate(root, ia, start, root_bits);
    check_eq!(
        walk(IOVA_A + 0x1000),
        Some((dst.phys(), 4096)),
        "the table, walked independently"
    );
    large_page(
        e,
        dom,
        &walk,
        &src,
        IOVA_A + 0x1000,
        &dst,
        IOVA_A + 0x2000,
        2 << 20,
        0x30_0000_0000,
    )?;
    no_fault(e, 0)?;
    defmt::println!(
        "smmu_dma: stage {=u8} translated both ways at 4K and 2M",
        if stage == CFG_S1 { 1 } else { 2 }
    );
    tryx!(e.core.detach(e.devs[0].id), "detach");
    tryx!(e.core.free_domain(dom), "free_domain");
    Ok(())
}

fn fail(what: &str) -> Failure {
    Failure::fail(file!(), line!(), format_args!("{}", what))
}

fn translated_dma_both_ways(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let id0 = unit(e, 0)?.id.idr0;
        if id0.stage1 {
            let dom = paging(e, 0)?;
            both_ways(e, dom, CFG_S1)?;
        }
        if id0.stage2 {
            let dom = if id0.stage1 {
                stage2(e, 0)?
            } else {
                paging(e, 0)?
            };
            both_ways(e, dom, CFG_S2)?;
        }
        Ok(())
    })
}

fn command_error_recovers(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let hal = *e.core.hal();
        let s2 = s2_present(e)?;
        // Without stage 2, a stage-2 TLBI is illegal; with it, an opcode
        // the architecture does not define.
        let (bad, name) = if s2 {
            (Command::new(0x7f), "an unknown opcode")
        } else {
            (
                cmd::tlbi_s2_ipa(
                    1,
                    &cmd::Range {
                        addr: 0,
                        leaf: false,
                        tg: 0,
                        num: 0,
                        scale: 0,
                        ttl: 0,
                    },
                ),
                "TLBI_S2_IPA",
            )
        };
        let u = unit(e, 0)?;
        tryx!(u.submit(&hal, &[bad]), "submit");
        match u.sync(&hal) {
            Err(Error::QueueEntry {
                register,
                entry,
                index,
            }) => {
                check!(register.contains("CERROR_ILL"), "error names {}", register);
                check_eq!(entry, name, "the command named");
                defmt::println!(
                    "smmu_dma: illegal command reported: {=str}: {=str} at index {=u32}",
                    register,
                    entry,
                    index
                );
            }
            other => check!(false, "sync after an illegal command gave {:?}", other),
        }
        tryx!(u.sync(&hal), "the queue works again");
        tryx!(u.invalidate_all(&hal), "and invalidates");
        translated_smoke(e)
    })
}

fn sync_times_out(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let hal = *e.core.hal();
        let now = e.now;
        let u = unit(e, 0)?;
        let start = now();
        let r = u.stalled_sync(&hal, 20_000_000);
        let took = now() - start;
        check!(
            matches!(r, Err(Error::Timeout { .. })),
            "a CMD_SYNC that cannot complete gave {:?}",
            r
        );
        check!(took >= 20_000_000, "timed out after {} ns", took);
        tryx!(
            u.sync(&hal),
            "the next sync completes (and the stalled one with it)"
        );
        translated_smoke(e)
    })
}

fn event_overflow_recovers(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let dom = paging(e, 0)?;
        tryx!(e.core.attach(e.devs[0].id, dom), "attach");
        let entries = unit(e, 0)?.evtq.map_or(0, |q| q.len());
        let before = unit(e, 0)?.stats;
        // A whole-buffer write to nothing: one event per 4 bytes, far more
        // than the queue holds.
        e.dma_write(0, UNMAPPED, BUF_SIZE)?;
        let _ = e.faults()?;
        let after = unit(e, 0)?.stats;
        let lost = (after.event_aborts - before.event_aborts)
            + (after.event_overflows - before.event_overflows);
        check!(
            lost >= 1,
            "{} events into a queue of {}: no overflow counted ({:?})",
            BUF_SIZE / 4,
            entries,
            after
        );
        check!(
            after.events - before.events >= u64::from(entries) - 1,
            "the queue's worth of events drained ({} of {})",
            after.events - before.events,
            entries
        );
        defmt::println!(
            "smmu_dma: {=usize} faulting accesses into {=u32} event slots: {=u64} events drained, {=u32} overflow(s) counted",
            BUF_SIZE / 4,
            entries,
            after.events - before.events,
            lost
        );
        // Later faults are still seen, one each.
        for k in 0..2u64 {
            let at = UNMAPPED + 0x1000 * (k + 1);
            e.dma_write(0, at, FAULTING)?;
            one_fault(e, dom, 0, at, true, &[id::F_TRANSLATION])?;
        }
        tryx!(e.core.detach(e.devs[0].id), "detach");
        tryx!(e.core.free_domain(dom), "free");
        Ok(())
    })
}

fn cycles_leak_nothing(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let dev = e.devs[0].id;
        let page = e.page()?;
        let s2 = s2_present(e)? && unit(e, 0)?.id.idr0.stage1;
        let cycle = |e: &mut Env| -> TestResult {
            let (a, b) = (paging(e, 0)?, paging(e, 0)?);
            e.map(a, IOVA_A, &page, RW)?;
            e.map(b, IOVA_B, &page, RW)?;
            tryx!(e.core.attach(dev, a), "attach");
            tryx!(e.core.attach(dev, b), "replace");
            tryx!(e.core.attach(dev, DomainId::IDENTITY), "Identity");
            if s2 {
                let p = stage2(e, 0)?;
                e.map(p, IOVA_A, &page, RW)?;
                tryx!(e.core.attach(dev, p), "stage 2");
                tryx!(e.core.attach(dev, a), "back to stage 1");
                tryx!(e.core.free_domain(p), "free stage 2");
            }
            tryx!(e.core.detach(dev), "detach");
            tryx!(e.core.free_domain(a), "free");
            tryx!(e.core.free_domain(b), "free");
            Ok(())
        };
        // A level-2 stream table is made once and kept: measure after the
        // first cycle. The device's CD table is freed once its STE no
        // longer reaches it (detached).
        cycle(e)?;
        let cd = tryx!(unit(e, 0)?.master(dev.id, false), "master").and_then(|m| m.cd);
        check!(
            cd.is_none(),
            "the detached device's CD table is freed: {:?}",
            cd
        );
        let ids = |e: &mut Env| -> Result<(u32, u32), Failure> {
            let u = unit(e, 0)?;
            Ok((u.asids.in_use(), u.vmids.in_use()))
        };
        let pages = pool::pages_in_use();
        let before = ids(e)?;
        for _ in 0..100 {
            cycle(e)?;
        }
        check_eq!(pool::pages_in_use(), pages, "pool pages after 100 cycles");
        check_eq!(ids(e)?, before, "ASIDs and VMIDs after 100 cycles");
        let dom = paging(e, 0)?;
        tryx!(e.core.attach(dev, dom), "attach");
        let with_domain = pool::pages_in_use();
        let start = (e.now)();
        for i in 0..10_000u64 {
            let iova = IOVA_A + (i % 512) * 0x20_0000;
            tryx!(
                e.core.map(dom, Iova(iova), PhysAddr(page.phys()), 4096, RW),
                "map"
            );
            tryx!(e.core.unmap_sync(dom, Iova(iova), 4096), "unmap_sync");
        }
        let ms = ((e.now)() - start) / 1_000_000;
        check_eq!(
            pool::pages_in_use(),
            with_domain,
            "pool pages after 10,000 map/unmap/sync"
        );
        let stats = unit(e, 0)?.cmdq.as_ref().map(|q| q.stats);
        defmt::println!(
            "smmu_dma: 10,000 map/unmap/sync in {=u64} ms; queue {}",
            ms,
            defmt::Debug2Format(&stats)
        );
        tryx!(e.core.detach(dev), "detach");
        tryx!(e.core.free_domain(dom), "free");
        check_eq!(ids(e)?, before, "ASIDs and VMIDs at the end");
        translated_smoke(e)
    })
}

/// The SMMUv3 DMA suite.
pub static SMMU_DMA: Suite = Suite {
    name: "smmu_dma",
    tests: &[
        Test {
            name: "enable_aborts_every_device",
            run: enable_aborts_every_device,
        },
        Test {
            name: "translated_dma_both_ways",
            run: translated_dma_both_ways,
        },
        Test {
            name: "isolation_matrix",
            run: crate::smmu_isolation::isolation_matrix,
        },
        Test {
            name: "stale_translation_after_unmap",
            run: crate::smmu_isolation::stale_after_unmap,
        },
        Test {
            name: "stale_translation_after_replace",
            run: crate::smmu_isolation::stale_after_replace,
        },
        Test {
            name: "command_error_recovers",
            run: command_error_recovers,
        },
        Test {
            name: "sync_times_out",
            run: sync_times_out,
        },
        Test {
            name: "event_overflow_recovers",
            run: event_overflow_recovers,
        },
        Test {
            name: "cycles_and_10000_maps_leak_nothing",
            run: cycles_leak_nothing,
        },
        Test {
            name: "nested_end_to_end",
            run: crate::smmu_nested::nested_end_to_end,
        },
    ],
};
