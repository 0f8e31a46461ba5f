//! The edu suite: the DMA engine's driver, and untranslated DMA both ways
//! before any IOMMU translates.

use core::cell::UnsafeCell;

use crate::edu::{self, Edu, EduError};
use crate::harness::{Ctx, Suite, Test, TestResult};
use crate::suites::{smmu_units, vtd_units};
use crate::{check, check_eq, tryx};

// ---------------------------------------------------------------- edu DMA

#[repr(C, align(4096))]
struct DmaPage(UnsafeCell<[u8; edu::BUF_SIZE]>);
// SAFETY: the tests run on one core, one at a time; the pages are only touched
// through volatile accesses below and by the device while a test waits for it.
unsafe impl Sync for DmaPage {}

static SRC: DmaPage = DmaPage(UnsafeCell::new([0; edu::BUF_SIZE]));
static DST: DmaPage = DmaPage(UnsafeCell::new([0; edu::BUF_SIZE]));

impl DmaPage {
    /// Bus address: physical, as no IOMMU translates yet (identity-mapped board).
    fn bus(&self) -> u64 {
        self.0.get() as u64
    }
    fn set(&self, i: usize, v: u8) {
        // SAFETY: `i` is checked by the slice bound below; single-threaded access.
        unsafe { core::ptr::write_volatile(&mut (*self.0.get())[i], v) }
    }
    fn get(&self, i: usize) -> u8 {
        // SAFETY: as in `set`; volatile because the device writes behind the compiler's back.
        unsafe { core::ptr::read_volatile(&(*self.0.get())[i]) }
    }
    fn fill(&self, seed: u32) {
        let mut x = seed | 1;
        for i in 0..edu::BUF_SIZE {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.set(i, x as u8);
        }
    }
    fn fill_const(&self, v: u8) {
        for i in 0..edu::BUF_SIZE {
            self.set(i, v);
        }
    }
}

/// First index in `range` where DST differs from `want(i)`.
fn first_mismatch(
    range: core::ops::Range<usize>,
    want: impl Fn(usize) -> u8,
) -> Option<(usize, u8, u8)> {
    range.into_iter().find_map(|i| {
        let (got, w) = (DST.get(i), want(i));
        (got != w).then_some((i, got, w))
    })
}

const DMA_TIMEOUT_NS: u64 = 5_000_000_000;

fn edus(c: &Ctx) -> Result<heapless::Vec<Edu, 8>, crate::harness::Failure> {
    let all = Edu::all(c.pci);
    if all.is_empty() {
        return Err(crate::harness::Failure::skip(format_args!(
            "no edu device with BAR0"
        )));
    }
    Ok(all)
}

fn iommus_not_translating(c: &Ctx) -> TestResult {
    for (_, v) in vtd_units(c) {
        check!(!v.translation_enabled(), "VT-d translation enabled");
    }
    for (_, s) in smmu_units(c) {
        check!(!s.enabled(), "SMMU enabled");
        check!(
            !s.bypass_aborts(),
            "SMMU GBPA aborts traffic while disabled"
        );
    }
    Ok(())
}

fn edu_identity(c: &Ctx) -> TestResult {
    for e in edus(c)? {
        check_eq!(e.id(), edu::ID_VALUE, "edu ID register at {:?}", e.bdf);
        for v in [0u32, 0x1234_5678, 0xffff_ffff] {
            check_eq!(e.liveness(v), !v, "edu liveness inverts");
        }
    }
    Ok(())
}

fn edu_dma_untranslated(c: &Ctx) -> TestResult {
    iommus_not_translating(c)?;
    let now = c.ops.now_ns;
    for (n, e) in edus(c)?.iter().enumerate() {
        e.set_bus_master(true);
        // Whole buffer: RAM -> device -> RAM.
        SRC.fill(0x9e37_79b9 ^ n as u32);
        DST.fill_const(0xa5);
        tryx!(
            e.copy_to_device(SRC.bus(), 0, edu::BUF_SIZE, now, DMA_TIMEOUT_NS),
            "RAM->edu"
        );
        tryx!(
            e.copy_from_device(0, DST.bus(), edu::BUF_SIZE, now, DMA_TIMEOUT_NS),
            "edu->RAM"
        );
        if let Some((i, got, want)) = first_mismatch(0..edu::BUF_SIZE, |i| SRC.get(i)) {
            check!(
                false,
                "{:?} full round trip: byte {} is {:#x}, want {:#x}",
                e.bdf,
                i,
                got,
                want
            );
        }
        // Offsets and lengths: 300 bytes from SRC+100 into the device at 200.
        let mut before = [0u8; edu::BUF_SIZE];
        for (i, b) in before.iter_mut().enumerate() {
            *b = SRC.get(i);
        }
        SRC.fill(0x51ed_270b ^ n as u32);
        tryx!(
            e.copy_to_device(SRC.bus() + 100, 200, 300, now, DMA_TIMEOUT_NS),
            "partial RAM->edu"
        );
        DST.fill_const(0x5a);
        tryx!(
            e.copy_from_device(0, DST.bus(), edu::BUF_SIZE, now, DMA_TIMEOUT_NS),
            "edu->RAM after partial"
        );
        let want = |i: usize| {
            if (200..500).contains(&i) {
                SRC.get(i - 100)
            } else {
                before[i]
            }
        };
        if let Some((i, got, w)) = first_mismatch(0..edu::BUF_SIZE, want) {
            check!(
                false,
                "{:?} partial copy: byte {} is {:#x}, want {:#x}",
                e.bdf,
                i,
                got,
                w
            );
        }
        // Device -> RAM lands exactly where asked: 100 bytes to DST+1000, neighbours untouched.
        DST.fill_const(0x3c);
        tryx!(
            e.copy_from_device(0, DST.bus() + 1000, 100, now, DMA_TIMEOUT_NS),
            "edu->RAM at offset"
        );
        let want = |i: usize| {
            if (1000..1100).contains(&i) {
                before[i - 1000]
            } else {
                0x3c
            }
        };
        if let Some((i, got, w)) = first_mismatch(0..edu::BUF_SIZE, want) {
            check!(
                false,
                "{:?} placed copy: byte {} is {:#x}, want {:#x}",
                e.bdf,
                i,
                got,
                w
            );
        }
        e.set_bus_master(false);
    }
    Ok(())
}

fn edu_bus_master_gates_dma(c: &Ctx) -> TestResult {
    let now = c.ops.now_ns;
    for e in edus(c)? {
        e.set_bus_master(true);
        SRC.fill(0x0bad_f00d);
        tryx!(
            e.copy_to_device(SRC.bus(), 0, 64, now, DMA_TIMEOUT_NS),
            "RAM->edu"
        );
        e.set_bus_master(false);
        DST.fill_const(0x77);
        tryx!(
            e.copy_from_device(0, DST.bus(), 64, now, DMA_TIMEOUT_NS),
            "edu->RAM without bus master"
        );
        if let Some((i, got, _)) = first_mismatch(0..64, |_| 0x77) {
            check!(
                false,
                "{:?} wrote RAM with bus mastering off: byte {} = {:#x}",
                e.bdf,
                i,
                got
            );
        }
    }
    Ok(())
}

fn edu_refuses_bad_requests(c: &Ctx) -> TestResult {
    let now = c.ops.now_ns;
    let e = &edus(c)?[0];
    check_eq!(
        e.start_to_device(SRC.bus(), 0, 0),
        Err(EduError::BadLength(0)),
        "zero length"
    );
    check_eq!(
        e.start_to_device(SRC.bus(), 0, 4097),
        Err(EduError::BadLength(4097)),
        "too long"
    );
    check_eq!(
        e.start_from_device(4000, DST.bus(), 200),
        Err(EduError::OutsideBuffer {
            offset: 4000,
            len: 200
        }),
        "past the device buffer"
    );
    check_eq!(
        e.start_from_device(usize::MAX, DST.bus(), 1),
        Err(EduError::OutsideBuffer {
            offset: usize::MAX,
            len: 1
        }),
        "offset overflow"
    );
    check!(!e.busy(), "a refused request started a transfer");
    // A transfer takes ~100 ms of virtual time: a zero timeout must report Timeout,
    // a second start must report Busy, and a real wait must then succeed.
    e.set_bus_master(true);
    tryx!(e.start_to_device(SRC.bus(), 0, 16), "start");
    let r = e.wait(now, 0);
    check!(
        matches!(r, Err(EduError::Timeout { .. })),
        "zero-timeout wait gave {:?}",
        r
    );
    check_eq!(
        e.start_to_device(SRC.bus(), 0, 16),
        Err(EduError::Busy),
        "start while running"
    );
    tryx!(e.wait(now, DMA_TIMEOUT_NS), "wait after timeout");
    e.set_bus_master(false);
    Ok(())
}

pub(crate) static EDU: Suite = Suite {
    name: "edu",
    tests: &[
        Test {
            name: "identity_and_liveness",
            run: edu_identity,
        },
        Test {
            name: "dma_untranslated_both_ways",
            run: edu_dma_untranslated,
        },
        Test {
            name: "bus_master_gates_dma",
            run: edu_bus_master_gates_dma,
        },
        Test {
            name: "refuses_bad_requests_and_times_out",
            run: edu_refuses_bad_requests,
        },
    ],
};
