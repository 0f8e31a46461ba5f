//! SMMUv3's part in the isolation tests ([`crate::isolation`]): faults are
//! events (F_TRANSLATION, F_PERMISSION), QEMU's SMMU writes one per 4-byte
//! burst so faulting transfers are 4 bytes, an aborting STE records no
//! event, and the driver's syncs (CFGI + CMD_SYNC) are what a replace
//! skips.

use iommu::drivers::smmuv3::evtq::id;

use crate::dma_env::{Env, no_fault};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, Failure, TestResult};
use crate::isolation::{self, Isolation};
use crate::smmu_dma::FAULTING;
use crate::smmu_env::{Driver, unit, with_env};
use crate::tryx;

impl Isolation for Driver {
    const FAULTING: usize = FAULTING;
    const LOG: &'static str = "smmu_dma";
    const UNIT: &'static str = "SMMU";
    const INVALIDATIONS: &'static str = "syncs";

    fn not_mapped(_: &mut Env<Self>, _: usize, _: bool) -> Result<&'static [u16], Failure> {
        Ok(&[id::F_TRANSLATION])
    }

    fn read_only(_: &mut Env<Self>, _: usize) -> Result<&'static [u16], Failure> {
        Ok(&[id::F_PERMISSION])
    }

    fn blocked_write(e: &mut Env<Self>, d: usize, target: u64) -> TestResult {
        e.dma_write(d, target, BUF_SIZE)?;
        no_fault(e, d)
    }

    fn skip_invalidations(e: &mut Env<Self>, d: usize, skip: bool) -> TestResult {
        unit(e, d)?.set_skip_sync(skip);
        Ok(())
    }

    fn invalidate_all(e: &mut Env<Self>, d: usize) -> TestResult {
        let hal = *e.core.hal();
        tryx!(unit(e, d)?.invalidate_all(&hal), "invalidate all");
        Ok(())
    }
}

pub(crate) fn isolation_matrix(c: &Ctx) -> TestResult {
    with_env(c, isolation::matrix)
}

pub(crate) fn stale_after_unmap(c: &Ctx) -> TestResult {
    with_env(c, isolation::stale_after_unmap)
}

pub(crate) fn stale_after_replace(c: &Ctx) -> TestResult {
    with_env(c, isolation::stale_after_replace)
}
