//! VT-d's part in the isolation tests ([`crate::isolation`]): its fault
//! reasons (which depend on the unit's mode), the one fault record a
//! blocked device's write leaves, and the driver's flushes to skip.

use crate::dma_env::{Env, check_fault};
use crate::edu::BUF_SIZE;
use crate::harness::{Ctx, Failure, TestResult};
use crate::isolation::{self, Isolation};
use crate::vtd_dma::{BLOCKED, Mode};
use crate::vtd_env::{Driver, unit, with_env};
use crate::{check_eq, tryx};

impl Isolation for Driver {
    // A unit records one fault per request, whatever its size.
    const FAULTING: usize = BUF_SIZE;
    const LOG: &'static str = "vtd_dma";
    const UNIT: &'static str = "unit";
    const INVALIDATIONS: &'static str = "flushes";

    fn not_mapped(e: &mut Env<Self>, d: usize, write: bool) -> Result<&'static [u16], Failure> {
        Ok(Mode::of(e, d)?.not_mapped(write))
    }

    fn read_only(e: &mut Env<Self>, d: usize) -> Result<&'static [u16], Failure> {
        Ok(Mode::of(e, d)?.read_only())
    }

    fn blocked_write(e: &mut Env<Self>, d: usize, target: u64) -> TestResult {
        e.dma_write(d, target, 64)?;
        let raw = e.raw_faults(d)?;
        check_eq!(
            raw.len(),
            1,
            "fault records of a blocked device at {:#x}",
            target
        );
        check_fault(&raw[0], e.devs[d].id.id, target, true, BLOCKED)
    }

    fn skip_invalidations(e: &mut Env<Self>, d: usize, skip: bool) -> TestResult {
        unit(e, d)?.set_skip_flush(skip);
        Ok(())
    }

    fn invalidate_all(e: &mut Env<Self>, d: usize) -> TestResult {
        let hal = e.hal();
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
