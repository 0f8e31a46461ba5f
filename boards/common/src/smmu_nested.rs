//! Nested translation end to end on an SMMU with both stages: a nest
//! parent (stage 2) maps "guest memory" at intermediate-physical addresses
//! far from the physical ones; the guest builds its own stage-1 table and
//! CD there and hands the host a virtual STE; edu DMA at a guest IOVA goes
//! through both stages. The guest's own TLB invalidations (with its ASID;
//! the VMID is the host's) are what make a change of its table visible.

use iommu::core::PagingFlags;
use iommu::drivers::smmuv3::cd::{self, Stage1};
use iommu::drivers::smmuv3::ste;
use iommu::drivers::smmuv3::user::{HWPT_DATA_ARM_SMMUV3, INVALIDATE_DATA_ARM_SMMUV3};
use iommu::hal::{Hal, PAGE_SIZE};
use iommu::pgtable::{ArmS1, Gather, MairIndices, PageTable, Prot};
use iommu::{Error, Iova, PhysAddr};

use crate::dma_env::{holds, need_devices, unchanged};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, TestResult};
use crate::pool::{self, PoolHal};
use crate::smmu_env::{unit, with_env};
use crate::{check, check_eq, skip, tryx};

/// Guest-physical = physical + this, for the whole page pool.
const IPA_OFFSET: u64 = 0x100_0000_0000;
/// The guest's IOVAs.
const GUEST_IOVA: u64 = 0x4000_0000;
/// The ASID the guest chose.
const GUEST_ASID: u16 = 5;

/// The guest's view of memory: pages from the pool, at their
/// intermediate-physical addresses.
#[derive(Clone, Copy)]
struct GuestHal(PoolHal);

// SAFETY: every page comes from the pool (`PoolHal`'s promises), handed
// out at its physical address plus IPA_OFFSET, which the nest parent maps
// back to it; `phys_to_virt` undoes the offset.
unsafe impl Hal for GuestHal {
    fn alloc_pages(&self, count: usize) -> Option<PhysAddr> {
        self.0
            .alloc_pages(count)
            .map(|p| PhysAddr(p.get() + IPA_OFFSET))
    }
    unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        // SAFETY: the caller's promise, about the same pages.
        unsafe { self.0.free_pages(PhysAddr(phys.get() - IPA_OFFSET), count) }
    }
    fn phys_to_virt(&self, phys: PhysAddr) -> *mut u8 {
        self.0.phys_to_virt(PhysAddr(phys.get() - IPA_OFFSET))
    }
    fn now_ns(&self) -> u64 {
        self.0.now_ns()
    }
}

/// The guest's TLBI_NH_VA of one page (16 bytes, as its virtual SMMU
/// command queue holds it).
fn tlbi_nh_va(asid: u16, addr: u64) -> [u8; 16] {
    let w0 = 0x12u64 | (u64::from(asid) << 48);
    let w1 = addr & !0xfff;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w0.to_le_bytes());
    b[8..].copy_from_slice(&w1.to_le_bytes());
    b
}

/// CFGI_CD of a virtual StreamID.
fn cfgi_cd(vsid: u32) -> [u8; 16] {
    let w0 = 0x05u64 | (u64::from(vsid) << 32);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w0.to_le_bytes());
    b[8..].copy_from_slice(&1u64.to_le_bytes());
    b
}

pub(crate) fn nested_end_to_end(c: &Ctx) -> TestResult {
    with_env(c, |e| {
        need_devices(e, 1)?;
        let id0 = unit(e, 0)?.id.idr0;
        if !(id0.stage1 && id0.stage2) {
            skip!("nesting needs both stages (SMMU_IDR0.S1P and S2P)");
        }
        let dev = e.devs[0].id;
        let hal = *e.core.hal();
        let rw = Prot::READ | Prot::WRITE;
        // The guest's memory: the whole pool, at IPA = PA + IPA_OFFSET.
        let parent = tryx!(
            e.core.alloc_paging(dev, PagingFlags::NEST_PARENT),
            "nest parent"
        );
        let (start, len) = pool::span();
        tryx!(
            e.core
                .map(parent, Iova(start + IPA_OFFSET), PhysAddr(start), len, rw),
            "map the guest's memory"
        );
        // The guest's stage 1, CD and data, built in its memory.
        let guest = GuestHal(hal);
        let format = tryx!(ArmS1::new(MairIndices::default(), 44), "stage-1 format");
        let mut table = tryx!(PageTable::new(format, guest), "guest table");
        let (old, new, src, cdp) = (e.page()?, e.page()?, e.page()?, e.page()?);
        src.fill(900);
        old.fill(901);
        new.fill(902);
        let ipa = |p: &pool::Page| PhysAddr(p.phys() + IPA_OFFSET);
        tryx!(
            table.map(Iova(GUEST_IOVA), ipa(&old), PAGE_SIZE, rw),
            "guest map"
        );
        tryx!(
            table.map(Iova(GUEST_IOVA + 0x1000), ipa(&src), PAGE_SIZE, Prot::READ),
            "guest map"
        );
        let cd = cd::build(&Stage1 {
            ttb0: table.root_phys().get(),
            t0sz: format.t0sz(),
            oas_bits: 44,
            mair: format.mair(),
            asid: GUEST_ASID,
            stall: false,
        });
        for (i, w) in cd.iter().enumerate() {
            // SAFETY: the guest's CD page, a pool page the test owns.
            unsafe { (cdp.phys() as *mut u64).add(i).write_volatile(*w) };
        }
        // Its virtual STE: stage 1 through its CD table, at an IPA.
        let mut v = [0u64; 2];
        ste::V.set(&mut v, 1);
        ste::CONFIG.set(&mut v, ste::config::S1_TRANS);
        ste::S1_CONTEXT_PTR.set_in_place(&mut v, cdp.phys() + IPA_OFFSET);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&v[0].to_le_bytes());
        bytes[8..].copy_from_slice(&v[1].to_le_bytes());
        let nested = tryx!(
            e.core
                .alloc_nested(dev, parent, HWPT_DATA_ARM_SMMUV3, &bytes),
            "alloc_nested"
        );
        tryx!(e.core.set_virtual_id(dev, parent, 0x42), "virtual StreamID");
        tryx!(e.core.attach(dev, nested), "attach nested");
        // Both stages: the guest IOVA lands on the page the guest mapped.
        e.dma_read(0, GUEST_IOVA + 0x1000, BUF_SIZE)?;
        e.dma_write(0, GUEST_IOVA, BUF_SIZE)?;
        holds(&old, 900, "through both stages")?;
        defmt::println!("smmu_dma: nested DMA through the guest's stage 1 and the host's stage 2");
        // The guest moves its IOVA to another page, without telling the
        // SMMU: the old translation is still used (cached).
        let mut g = Gather::new();
        tryx!(
            table.unmap(Iova(GUEST_IOVA), PAGE_SIZE, &mut g),
            "guest unmap"
        );
        g.release(&guest);
        tryx!(
            table.map(Iova(GUEST_IOVA), ipa(&new), PAGE_SIZE, rw),
            "guest remap"
        );
        old.fill(903);
        e.dma_write(0, GUEST_IOVA, BUF_SIZE)?;
        check!(
            old.mismatch(900, 0, BUF_SIZE).is_none(),
            "without the guest's TLBI the write did not reach the old page: nothing was cached, the test cannot fail"
        );
        unchanged(&new, 902, "the new page before the guest's TLBI")?;
        // The guest's TLBI_NH_VA, its ASID, the host's VMID: the new page.
        let inv = tlbi_nh_va(GUEST_ASID, GUEST_IOVA);
        let out = tryx!(
            e.core
                .invalidate_user(nested, INVALIDATE_DATA_ARM_SMMUV3, &inv, 16, 1),
            "invalidate_user"
        );
        check_eq!((out.handled, out.error), (1, None), "the guest's TLBI");
        e.dma_write(0, GUEST_IOVA, BUF_SIZE)?;
        holds(&new, 900, "after the guest's TLBI")?;
        // A malformed command, then one naming a device the guest does not
        // have: each refused at its index, nothing after it queued.
        for (bad, field) in [
            ([0xffu8; 16], "cmd[0].OPCODE"),
            (cfgi_cd(0x99), "cmd[0].SID"),
        ] {
            let mut array = [0u8; 48];
            array[..16].copy_from_slice(&tlbi_nh_va(GUEST_ASID, GUEST_IOVA));
            array[16..32].copy_from_slice(&bad);
            array[32..].copy_from_slice(&cfgi_cd(0x42));
            let before = unit(e, 0)?.cmdq.as_ref().map_or(0, |q| q.stats.commands);
            let out = tryx!(
                e.core
                    .invalidate_user(nested, INVALIDATE_DATA_ARM_SMMUV3, &array, 16, 3),
                "invalidate_user"
            );
            check_eq!(out.handled, 1, "handled before the bad command");
            match out.error {
                Some((1, Error::InvalidField { field: f, .. })) => {
                    check_eq!(f, field, "the field named")
                }
                other => check!(false, "refusal {:?}", other),
            }
            let after = unit(e, 0)?.cmdq.as_ref().map_or(0, |q| q.stats.commands);
            check_eq!(
                after - before,
                1,
                "commands queued: only the one before the bad one"
            );
        }
        tryx!(e.core.detach(dev), "detach");
        tryx!(e.core.clear_virtual_id(dev), "clear virtual ID");
        tryx!(e.core.free_domain(nested), "free nested");
        tryx!(
            e.core.unmap_sync(parent, Iova(start + IPA_OFFSET), len),
            "unmap guest memory"
        );
        tryx!(e.core.free_domain(parent), "free parent");
        drop(table);
        Ok(())
    })
}
