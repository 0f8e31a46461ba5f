//! The VT-d DMA suite: the driver, through the core, translating real edu
//! DMA on QEMU's intel-iommu — translated both ways, isolated, faulting
//! with the right record, invalidated (with negative controls showing the
//! unit caches), recovering from queue errors, and leaking nothing.
//!
//! Every expectation about the hardware comes from CAP/ECAP (legacy or
//! scalable mode, first- or second-level tables, large pages, caching
//! mode), never from the profile's name.

use iommu::core::{DeviceId, DeviceInfo, DomainId, PagingFlags};
use iommu::drivers::vtd::desc::Desc;
use iommu::drivers::vtd::fault::reason;
use iommu::pgtable::Prot;
use iommu::{Error, Iova, PhysAddr};

use crate::dma_env::{
    IOVA_A, IOVA_B, check_fault, holds, need_devices, no_fault, paging, tag, translated_smoke,
    unchanged,
};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, Failure, Suite, Test, TestResult};
use crate::pool;
use crate::vtd_env::{Env, with_env};
use crate::vtd_walk::{self, Entry};
use crate::{check, check_eq, skip, tryx};

const R: Prot = Prot::READ;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// Reasons a unit gives for a request of a device with nothing attached:
/// no root / context entry (legacy), or no scalable context, PASID
/// directory or PASID-table entry.
pub(crate) const BLOCKED: &[u16] = &[
    reason::ROOT_NOT_PRESENT,
    reason::CONTEXT_NOT_PRESENT,
    reason::SM_ROOT_NOT_PRESENT,
    reason::SM_CONTEXT_NOT_PRESENT,
    reason::PASID_DIR_NOT_PRESENT,
    reason::PASID_ENTRY_NOT_PRESENT,
];
/// How a unit translates, for the fault reasons to expect.
#[derive(Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) scalable: bool,
    pub(crate) first_level: bool,
}

impl Mode {
    pub(crate) fn of(e: &mut Env, d: usize) -> Result<Mode, Failure> {
        let u = unit(e, d)?;
        Ok(Mode {
            scalable: u.scalable,
            first_level: !u.second_level(),
        })
    }

    /// Reasons for an access the domain does not map (`write`: a write).
    pub(crate) fn not_mapped(self, write: bool) -> &'static [u16] {
        match (self.first_level, self.scalable, write) {
            (true, _, _) => &[reason::FIRST_LEVEL_NOT_PRESENT],
            (false, false, true) => &[reason::WRITE],
            (false, false, false) => &[reason::READ],
            // Scalable mode has codes of its own; QEMU keeps the legacy ones.
            (false, true, true) => &[
                reason::WRITE,
                reason::SECOND_LEVEL_PERMISSION,
                reason::SM_WRITE,
            ],
            (false, true, false) => &[
                reason::READ,
                reason::SECOND_LEVEL_PERMISSION,
                reason::SM_READ,
            ],
        }
    }

    /// Reasons for a write to a read-only mapping.
    pub(crate) fn read_only(self) -> &'static [u16] {
        if self.first_level {
            &[reason::SM_WRITE]
        } else {
            self.not_mapped(true)
        }
    }
}

pub(crate) use crate::vtd_env::unit;

pub(crate) fn first_level(e: &mut Env, d: usize) -> Result<bool, Failure> {
    let u = unit(e, d)?;
    Ok(!u.second_level())
}

/// The table an entry (read back independently) translates through, and
/// its levels, after checking it names `did` and the expected kind.
pub(crate) fn table_of(entry: Entry, did: u16, fl: bool) -> Result<(u64, u32), Failure> {
    match entry {
        Entry::Legacy {
            tt,
            aw,
            did: d,
            root,
        } => {
            check_eq!(tt, 0, "legacy TT (second level)");
            check_eq!(d, did, "legacy DID");
            Ok((root, u32::from(aw) + 2))
        }
        Entry::Pasid {
            pgtt,
            aw,
            did: d,
            sl_root,
            fl_root,
        } => {
            check_eq!(d, did, "PASID-entry DID");
            if fl {
                check_eq!(pgtt, 1, "PGTT (first level)");
                Ok((fl_root, 4))
            } else {
                check_eq!(pgtt, 2, "PGTT (second level)");
                Ok((sl_root, u32::from(aw) + 2))
            }
        }
        Entry::Absent(what) => Err(Failure::fail(
            file!(),
            line!(),
            format_args!("no entry for the device: {} not present", what),
        )),
    }
}

// ---------------------------------------------------------------- tests

fn enable_blocks_every_device(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        for d in 0..e.devs.len() {
            check!(
                unit(e, d)?.translation_enabled(),
                "GSTS.TES clear after enable"
            );
            let (regs, sid) = (e.devs[d].regs, e.devs[d].id.id as u16);
            let entry = vtd_walk::entry(regs, sid, None);
            check!(
                matches!(entry, Entry::Absent(_)),
                "device {} has an entry {:?}",
                d,
                entry
            );
            let p = e.page()?;
            p.fill(0x100 + d as u32);
            e.dma_write(d, p.phys(), 64)?;
            unchanged(&p, 0x100 + d as u32, "a blocked device's write")?;
            let raw = e.raw_faults(d)?;
            check_eq!(raw.len(), 1, "fault records after a blocked write");
            check_fault(&raw[0], e.devs[d].id.id, p.phys(), true, BLOCKED)?;
        }
        Ok(())
    })
}

fn translated_dma_both_ways(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let fl = first_level(e, 0)?;
        let cap = unit(e, 0)?.id.cap;
        let dom = paging(e, 0)?;
        let (src, dst, other) = (e.page()?, e.page()?, e.page()?);
        src.fill(1);
        other.fill(2);
        e.map(dom, IOVA_A, &src, R)?;
        e.map(dom, IOVA_A + 0x1000, &dst, RW)?;
        e.map(dom, IOVA_A + 0x2000, &other, R)?;
        tryx!(e.core.attach(e.devs[0].id, dom), "attach");
        // RAM → device → RAM, both at IOVAs far from the pages.
        e.dma_read(0, IOVA_A, BUF_SIZE)?;
        e.dma_write(0, IOVA_A + 0x1000, BUF_SIZE)?;
        holds(&dst, 1, "4K: written through the IOVA")?;
        unchanged(&src, 1, "4K: the source")?;
        no_fault(e, 0)?;
        // A map into an attached domain is invalidated under caching mode
        // (the unit may cache not-present entries), and only then.
        let queued = |e: &mut Env| -> Result<(u64, u64), Failure> {
            let q = unit(e, 0)?.qi.as_ref().map(|q| q.stats).unwrap_or_default();
            Ok((q.descriptors, q.waits))
        };
        let before = queued(e)?;
        let extra = e.page()?;
        e.map(dom, IOVA_A + 0x3000, &extra, R)?;
        let after = queued(e)?;
        if cap.caching_mode {
            check_eq!(
                (after.0 - before.0, after.1 - before.1),
                (2, 1),
                "descriptors and waits of a map under caching mode"
            );
        } else {
            check_eq!(after, before, "a map without caching mode queues nothing");
        }
        // The entry, read back independently, names the domain's DID and
        // a table translating the IOVAs to the pages.
        let (regs, sid) = (e.devs[0].regs, e.devs[0].id.id as u16);
        let did = tag(e, dom)?;
        let (root, levels) = table_of(vtd_walk::entry(regs, sid, None), did, fl)?;
        check_eq!(
            vtd_walk::translate(root, IOVA_A + 0x1000, levels, fl),
            Some((dst.phys(), 4096)),
            "the table, walked independently"
        );
        // Large pages, where the unit offers them: the region holding the
        // source page mapped with one leaf at an aligned IOVA.
        let mut sizes: heapless::Vec<(u64, u64), 2> = heapless::Vec::new();
        let sl = cap.sl_large_pages;
        if (fl) || sl.contains(iommu::pgtable::LargePages::SIZE_2M) {
            let _ = sizes.push((2 << 20, 0x30_0000_0000));
        }
        if (fl && cap.fl_1g_pages) || (!fl && sl.contains(iommu::pgtable::LargePages::SIZE_1G)) {
            let _ = sizes.push((1 << 30, 0x40_0000_0000));
        }
        for (k, &(size, iova)) in sizes.iter().enumerate() {
            let base = src.phys() & !(size - 1);
            let r = e.core.map(dom, Iova(iova), PhysAddr(base), size, RW);
            tryx!(r, "map a large page");
            let at = iova + (src.phys() - base);
            check_eq!(
                vtd_walk::translate(root, at, levels, fl),
                Some((src.phys(), size)),
                "one leaf of the large size"
            );
            // Write through the large page: the device holds `other`.
            e.dma_read(0, IOVA_A + 0x2000, BUF_SIZE)?;
            e.dma_write(0, at, BUF_SIZE)?;
            holds(&src, 2, "written through a large page")?;
            // Read through it.
            let seed = 10 + k as u32;
            src.fill(seed);
            e.dma_read(0, at, BUF_SIZE)?;
            e.dma_write(0, IOVA_A + 0x1000, BUF_SIZE)?;
            holds(&dst, seed, "read through a large page")?;
            tryx!(
                e.core.unmap_sync(dom, Iova(iova), size),
                "unmap the large page"
            );
            defmt::println!("vtd_dma: {=u64} KiB page translated both ways", size >> 10);
        }
        no_fault(e, 0)?;
        tryx!(e.core.detach(e.devs[0].id), "detach");
        tryx!(e.core.free_domain(dom), "free_domain");
        Ok(())
    })
}

fn queue_error_recovers(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let hal = e.hal();
        let u = unit(e, 0)?;
        // Type 0xf is no descriptor the specification defines.
        tryx!(u.submit(&hal, &[Desc([0xf, 0, 0, 0])]), "submit");
        match u.wait(&hal) {
            Err(Error::QueueEntry {
                register,
                entry,
                index,
            }) => {
                check!(register.contains("IQE"), "error names {}", register);
                check_eq!(
                    entry,
                    "an undefined descriptor type",
                    "the descriptor named"
                );
                defmt::println!(
                    "vtd_dma: invalid descriptor reported: {=str}: {=str} at index {=u32}",
                    register,
                    entry,
                    index
                );
            }
            other => check!(false, "wait after an invalid descriptor gave {:?}", other),
        }
        tryx!(u.wait(&hal), "the queue works again");
        tryx!(u.invalidate_all(&hal), "and invalidates");
        // And translation still follows the driver's entries.
        translated_smoke(e)
    })
}

fn wait_times_out(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let hal = e.hal();
        let now = e.now;
        let u = unit(e, 0)?;
        let start = now();
        let r = u.stalled_wait(&hal, 20_000_000);
        let took = now() - start;
        check!(
            matches!(r, Err(Error::Timeout { .. })),
            "a wait that cannot complete gave {:?}",
            r
        );
        check!(
            took >= 20_000_000,
            "timed out after {} ns, before its timeout",
            took
        );
        tryx!(
            u.wait(&hal),
            "the next wait completes (and the stalled one with it)"
        );
        translated_smoke(e)
    })
}

fn pasid_entries_read_back(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let fl = first_level(e, 0)?;
        let ecap = unit(e, 0)?.id.ecap;
        if !(ecap.scalable_mode && ecap.pasid) {
            skip!("the unit has no PASIDs (ECAP.SMTS and ECAP.PASID)");
        }
        // No emulated device issues requests with PASID: a device ID no
        // function answers to, with PASIDs, whose entries are read back.
        let instance = e.devs[0].id.instance;
        let regs = e.devs[0].regs;
        let sid = 0xfe08u16;
        let dev = DeviceId {
            instance,
            id: sid.into(),
        };
        tryx!(
            e.core.register_device(DeviceInfo {
                dev,
                pasid_bits: 8,
                ats: false,
            }),
            "register a PASID-capable device ID"
        );
        let dom = tryx!(
            e.core.alloc_paging(dev, PagingFlags::empty()),
            "alloc_paging"
        );
        let page = e.page()?;
        e.map(dom, IOVA_A, &page, RW)?;
        let pasid = tryx!(e.core.alloc_pasid(dev), "alloc_pasid");
        tryx!(e.core.attach_pasid(dev, pasid, dom), "attach_pasid");
        let did = tag(e, dom)?;
        let (root, levels) = table_of(vtd_walk::entry(regs, sid, Some(pasid)), did, fl)?;
        check_eq!(
            vtd_walk::translate(root, IOVA_A, levels, fl),
            Some((page.phys(), 4096)),
            "PASID {} translates through the domain's table",
            pasid
        );
        check!(
            matches!(vtd_walk::entry(regs, sid, None), Entry::Absent(_)),
            "the requester ID stays blocked"
        );
        tryx!(
            e.core.attach(dev, DomainId::IDENTITY),
            "Identity at the RID"
        );
        match vtd_walk::entry(regs, sid, None) {
            Entry::Pasid { pgtt, .. } => check_eq!(pgtt, 4, "PGTT of Identity (pass-through)"),
            other => check!(false, "RID entry {:?}", other),
        }
        tryx!(e.core.detach_pasid(dev, pasid), "detach_pasid");
        check!(
            matches!(
                vtd_walk::entry(regs, sid, Some(pasid)),
                Entry::Absent("PASID-table entry")
            ),
            "PASID entry after detach: {:?}",
            vtd_walk::entry(regs, sid, Some(pasid))
        );
        tryx!(e.core.detach(dev), "detach");
        tryx!(e.core.free_pasid(pasid), "free_pasid");
        tryx!(e.core.free_domain(dom), "free_domain");
        tryx!(e.core.remove_device(dev), "remove_device");
        Ok(())
    })
}

fn cycles_leak_nothing(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let dev = e.devs[0].id;
        let instance = dev.instance;
        let page = e.page()?;
        let cycle = |e: &mut Env| -> TestResult {
            let (a, b) = (paging(e, 0)?, paging(e, 0)?);
            e.map(a, IOVA_A, &page, RW)?;
            e.map(b, IOVA_B, &page, RW)?;
            tryx!(e.core.attach(dev, a), "attach");
            tryx!(e.core.attach(dev, b), "replace");
            tryx!(e.core.attach(dev, DomainId::IDENTITY), "Identity");
            tryx!(e.core.attach(dev, a), "back to paging");
            tryx!(e.core.detach(dev), "detach");
            tryx!(e.core.free_domain(a), "free");
            tryx!(e.core.free_domain(b), "free");
            Ok(())
        };
        // The device's own structures (context table, PASID directory and
        // table) are made once and kept: measure after the first cycle.
        cycle(e)?;
        let pages = pool::pages_in_use();
        let dids = tryx!(e.core.driver().dids_in_use(instance), "dids");
        for _ in 0..100 {
            cycle(e)?;
        }
        check_eq!(
            pool::pages_in_use(),
            pages,
            "pool pages after 100 attach cycles"
        );
        check_eq!(
            tryx!(e.core.driver().dids_in_use(instance), "dids"),
            dids,
            "DIDs after 100 cycles"
        );
        let dom = paging(e, 0)?;
        tryx!(e.core.attach(dev, dom), "attach");
        let with_domain = pool::pages_in_use();
        let start = (e.now)();
        for i in 0..10_000u64 {
            // A different 2 MiB region each time: a last-level table is
            // allocated by the map and freed by the sync.
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
        let stats = tryx!(e.core.driver().unit(instance), "unit")
            .qi
            .as_ref()
            .map(|q| q.stats);
        defmt::println!(
            "vtd_dma: 10,000 map/unmap/sync in {=u64} ms; queue {}",
            ms,
            defmt::Debug2Format(&stats)
        );
        tryx!(e.core.detach(dev), "detach");
        tryx!(e.core.free_domain(dom), "free");
        check_eq!(
            tryx!(e.core.driver().dids_in_use(instance), "dids"),
            dids,
            "DIDs at the end"
        );
        translated_smoke(e)
    })
}

/// A region the embedder declares as an RMRR of the last device (QEMU's
/// DMAR has none): through a paging domain, the device still reaches it at
/// its physical address, and it cannot be unmapped while attached.
fn rmrr_stays_reachable(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let d = e.devs.len() - 1;
        let (dev, sid) = (e.devs[d].id, e.devs[d].id.id as u16);
        let (reserved, src) = (e.page()?, e.page()?);
        reserved.fill(800);
        src.fill(801);
        let r = e.core.driver_mut().add_rmrr(
            dev.instance,
            reserved.phys(),
            reserved.phys() + 0xfff,
            &[sid],
        );
        tryx!(r, "add_rmrr");
        let dom = paging(e, d)?;
        e.map(dom, IOVA_A, &src, R)?;
        tryx!(e.core.attach(dev, dom), "attach");
        e.dma_read(d, IOVA_A, BUF_SIZE)?;
        e.dma_write(d, reserved.phys(), BUF_SIZE)?;
        holds(
            &reserved,
            801,
            "the RMRR, at its physical address through a paging domain",
        )?;
        no_fault(e, d)?;
        let busy = e.core.unmap_sync(dom, Iova(reserved.phys()), 4096);
        check!(
            matches!(busy, Err(Error::Busy { .. })),
            "unmapping the RMRR gave {:?}",
            busy
        );
        tryx!(e.core.detach(dev), "detach");
        tryx!(e.core.free_domain(dom), "free");
        Ok(())
    })
}

/// The VT-d DMA suite.
pub static VTD_DMA: Suite = Suite {
    name: "vtd_dma",
    tests: &[
        Test {
            name: "enable_blocks_every_device",
            run: enable_blocks_every_device,
        },
        Test {
            name: "translated_dma_both_ways",
            run: translated_dma_both_ways,
        },
        Test {
            name: "isolation_matrix",
            run: crate::vtd_isolation::isolation_matrix,
        },
        Test {
            name: "stale_translation_after_unmap",
            run: crate::vtd_isolation::stale_after_unmap,
        },
        Test {
            name: "stale_translation_after_replace",
            run: crate::vtd_isolation::stale_after_replace,
        },
        Test {
            name: "queue_error_recovers",
            run: queue_error_recovers,
        },
        Test {
            name: "wait_times_out",
            run: wait_times_out,
        },
        Test {
            name: "pasid_entries_read_back",
            run: pasid_entries_read_back,
        },
        Test {
            name: "cycles_and_10000_maps_leak_nothing",
            run: cycles_leak_nothing,
        },
        // Last: the region stays declared for the rest of the boot.
        Test {
            name: "rmrr_stays_reachable_through_paging_domains",
            run: rmrr_stays_reachable,
        },
    ],
};
