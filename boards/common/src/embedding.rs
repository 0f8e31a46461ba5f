//! The embedding suite: the README's minimal example run on target, and the
//! stack each public core call needs, measured by painting the stack.
//!
//! The stack is painted with a pattern below the current stack pointer, the
//! call is made, and the lowest byte it changed says how deep it went. The
//! calls go through a permissive test driver ([`Tour`]) that accepts every
//! domain kind, PASIDs, nesting and faults, so that every path of the core
//! is taken; table pages come from the example's static pool.

use iommu::core::{
    Access, AddressSpace, CacheTag, Caps, CpuFormat, DeviceId, DeviceInfo, DomainDesc, DomainHw,
    DomainId, DomainRequest, Fault, FaultHandler, FaultKind, FaultResponder, FaultTarget,
    HW_INFO_TYPE_NONE, HwInfo, InvalidateOutcome, Iommu, IommuDriver, PagingFlags, Response,
    TagInvalidate, TagView, UserArray, UserFault, VirtualIds,
};
use iommu::drivers::vtd::user::{self as vtd_user, HWPT_DATA_VTD_S1, INVALIDATE_DATA_VTD_S1};
use iommu::iommufd::Ioas;
use iommu::pgtable::{AnyFormat, LargePages, Prot, VtdSl};
use iommu::{Error, Iova, Object, PhysAddr};
use iommu_minimal::StaticHal;

use crate::harness::{Ctx, Suite, Test, TestResult};
use crate::{check, check_eq, tryx};

// ---------------------------------------------------------------- stack painting

/// How far below the current stack pointer the stack is painted (the boards
/// give Rust a 256 KiB stack; the suite runs a few frames deep).
const PAINT: usize = 32 * 1024;
/// Bytes left alone just below the stack pointer (this frame's callees).
const SKIP: usize = 256;
const PATTERN: u8 = 0xa5;

#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer into a register; no memory touched.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        sp = 0;
    }
    sp
}

#[inline(never)]
fn paint(bottom: usize, top: usize) {
    for a in bottom..top {
        // SAFETY: `[bottom, top)` is the unused part of this CPU's own stack,
        // below every live frame (see `depth`): nothing lives there.
        unsafe { core::ptr::write_volatile(a as *mut u8, PATTERN) };
    }
}

#[inline(never)]
fn lowest_touched(bottom: usize, top: usize) -> usize {
    (bottom..top)
        // SAFETY: as in `paint`: our own stack, read back.
        .find(|&a| unsafe { core::ptr::read_volatile(a as *const u8) } != PATTERN)
        .unwrap_or(top)
}

/// Run `f` and return what it gave and how many bytes of stack below the
/// caller's stack pointer it used (at least; up to `PAINT`).
#[inline(never)]
pub fn depth<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let sp = stack_pointer();
    let top = sp - SKIP;
    let bottom = top - PAINT;
    paint(bottom, top);
    let r = core::hint::black_box(f());
    let low = lowest_touched(bottom, top);
    (r, sp - low)
}

// ---------------------------------------------------------------- the tour driver

/// A driver that accepts everything and keeps nothing: every path of the
/// core runs over it. Faults it is told to report come back from
/// `drain_faults`.
pub struct Tour {
    next_tag: u32,
    queued: heapless::Vec<Fault, 8>,
    /// Responses sent.
    pub responses: u32,
}

impl Tour {
    const fn new() -> Self {
        Tour {
            next_tag: 0,
            queued: heapless::Vec::new(),
            responses: 0,
        }
    }
}

impl TagInvalidate for Tour {
    fn invalidate(
        &mut self,
        _: &CacheTag,
        _: Option<(u64, u64)>,
        _: u64,
        _: bool,
    ) -> Result<(), Error> {
        Ok(())
    }
    fn wait(&mut self, _: u16) -> Result<(), Error> {
        Ok(())
    }
}

impl FaultResponder for Tour {
    fn respond(
        &mut self,
        _: u16,
        _: u32,
        _: Option<u32>,
        _: u16,
        _: Response,
    ) -> Result<(), Error> {
        self.responses += 1;
        Ok(())
    }
}

impl IommuDriver for Tour {
    type DomainData = ();
    type Format = AnyFormat;

    fn probe(&mut self, instance: u16) -> Result<HwInfo, Error> {
        self.hw_info(instance)
    }
    fn enable(&mut self, _: u16) -> Result<(), Error> {
        Ok(())
    }
    fn hw_info(&self, _: u16) -> Result<HwInfo, Error> {
        Ok(HwInfo {
            ty: HW_INFO_TYPE_NONE,
            regs: [0; 8],
            len: 0,
        })
    }
    fn domain_alloc(
        &mut self,
        _: &DeviceInfo,
        req: &DomainRequest<'_, (), AnyFormat>,
    ) -> Result<DomainHw<(), AnyFormat>, Error> {
        self.next_tag += 1;
        let format = match req {
            DomainRequest::Paging { .. } => {
                Some(AnyFormat::VtdSl(VtdSl::new(48, LargePages::SIZE_2M)?))
            }
            DomainRequest::Nested { data, .. } if data.data_type == HWPT_DATA_VTD_S1 => None,
            DomainRequest::Nested { .. } => {
                return Err(Error::InvalidField {
                    field: "data_type",
                    value: 0,
                });
            }
            DomainRequest::Sva { .. } => None,
        };
        Ok(DomainHw::new(self.next_tag, format, ()))
    }
    fn domain_free(&mut self, _: u16, _: &DomainHw<(), AnyFormat>) {}
    fn attach(
        &mut self,
        _: &DeviceInfo,
        _: Option<u32>,
        _: &DomainDesc<'_, (), AnyFormat>,
        _: &DomainDesc<'_, (), AnyFormat>,
    ) -> Result<(), Error> {
        Ok(())
    }
    fn detach_pasid(
        &mut self,
        _: &DeviceInfo,
        _: u32,
        _: &DomainDesc<'_, (), AnyFormat>,
    ) -> Result<(), Error> {
        Ok(())
    }
    fn invalidate_user(
        &mut self,
        _: &DomainDesc<'_, (), AnyFormat>,
        _: TagView<'_>,
        array: &UserArray<'_>,
        _: &dyn VirtualIds,
    ) -> InvalidateOutcome {
        vtd_user::for_each_invalidation(array, |_| Ok(()))
    }
    fn drain_faults(&mut self, _: u16, out: &mut [Fault]) -> Result<usize, Error> {
        let n = self.queued.len().min(out.len());
        for (o, f) in out.iter_mut().zip(self.queued.drain(..n)) {
            *o = f;
        }
        Ok(n)
    }
}

/// The capacities of the tour: 8 domains, 8 devices, 64 PASIDs.
type TourCaps = Caps<8, 8, 1>;
type TourCore = Iommu<Tour, StaticHal, TourCaps>;

static TOUR: spin::Mutex<TourCore> = spin::Mutex::new(Iommu::new(Tour::new(), StaticHal));

fn accept(_: usize, _: DomainId, _: &[Fault]) -> Response {
    Response::Success
}

/// The deepest stack any of the calls needs, with the call's name.
struct Deepest {
    bytes: usize,
    call: &'static str,
}

impl Deepest {
    fn take<R>(&mut self, call: &'static str, f: impl FnOnce() -> R) -> R {
        let (r, bytes) = depth(f);
        defmt::println!("stack: {=str}: {=usize} bytes", call, bytes);
        if bytes > self.bytes {
            self.bytes = bytes;
            self.call = call;
        }
        r
    }
}

/// The bound the README states for every public core call.
pub const STACK_BOUND: usize = 8 * 1024;

fn fault(dev: DeviceId, pasid: Option<u32>, group: u16, last: bool, kind: FaultKind) -> Fault {
    Fault {
        instance: dev.instance,
        device: dev.id,
        pasid,
        addr: 0x4000,
        access: Access::READ,
        group,
        last,
        kind,
        reason: 0,
    }
}

fn core_calls(_: &Ctx) -> TestResult {
    let mut guard = TOUR.lock();
    let c = &mut *guard;
    let mut d = Deepest { bytes: 0, call: "" };
    let a = DeviceId { instance: 0, id: 8 };
    let b = DeviceId {
        instance: 0,
        id: 16,
    };
    tryx!(d.take("add_instance", || c.add_instance(0)), "add_instance");
    for dev in [a, b] {
        let info = DeviceInfo {
            dev,
            pasid_bits: 6,
            ats: true,
        };
        tryx!(
            d.take("register_device", || c.register_device(info)),
            "register"
        );
    }
    let dom = tryx!(
        d.take("alloc_paging", || c
            .alloc_paging(a, PagingFlags::NEST_PARENT)),
        "alloc"
    );
    let rw = Prot::READ | Prot::WRITE;
    tryx!(
        d.take("map 4K", || c.map(
            dom,
            Iova(0x1000),
            PhysAddr(0x8000_0000),
            0x1000,
            rw
        )),
        "map"
    );
    tryx!(
        d.take("map 2M", || c.map(
            dom,
            Iova(0x20_0000),
            PhysAddr(0x8020_0000),
            0x20_0000,
            rw
        )),
        "map 2M"
    );
    let h = FaultTarget::Handler(FaultHandler {
        func: accept,
        cookie: 0,
    });
    tryx!(
        d.take("set_fault_target", || c.set_fault_target(dom, h)),
        "target"
    );
    tryx!(d.take("attach", || c.attach(a, dom)), "attach");
    let p = tryx!(d.take("alloc_pasid", || c.alloc_pasid(b)), "pasid");
    tryx!(
        d.take("attach_pasid", || c.attach_pasid(b, p, dom)),
        "attach_pasid"
    );
    // Faults: a partial group, its last, an event.
    for f in [
        fault(a, None, 1, false, FaultKind::PageRequest),
        fault(a, None, 1, true, FaultKind::PageRequest),
        fault(b, Some(p), 2, true, FaultKind::PageRequest),
        fault(a, None, 0, true, FaultKind::Unrecoverable),
    ] {
        let _ = c.driver_mut().queued.push(f);
    }
    let handled = tryx!(d.take("process_faults", || c.process_faults()), "process");
    check_eq!(handled, 3, "groups and events handled");
    check_eq!(c.driver().responses, 2, "one response per group");
    // A fault object.
    let o = tryx!(
        d.take("alloc_fault_object", || c.alloc_fault_object()),
        "object"
    );
    tryx!(
        c.set_fault_target(dom, FaultTarget::Object(o)),
        "object target"
    );
    let _ = c
        .driver_mut()
        .queued
        .push(fault(a, None, 3, true, FaultKind::PageRequest));
    tryx!(
        d.take("process_faults to an object", || c.process_faults()),
        "process"
    );
    let mut out = [UserFault {
        cookie: 0,
        fault: Fault::EMPTY,
    }; 4];
    let n = tryx!(d.take("fault_read", || c.fault_read(o, &mut out)), "read");
    check_eq!(n, 1, "one fault read");
    let cookie = out[0].cookie;
    tryx!(
        d.take("fault_respond", || c.fault_respond(
            o,
            cookie,
            Response::Success
        )),
        "respond"
    );
    tryx!(c.set_fault_target(dom, FaultTarget::None), "untarget");
    tryx!(
        d.take("free_fault_object", || c.free_fault_object(o)),
        "free object"
    );
    // Nested, user invalidation.
    let s1 = {
        let mut v = [0u8; 24];
        v[8..16].copy_from_slice(&0x5000u64.to_le_bytes());
        v[16..20].copy_from_slice(&48u32.to_le_bytes());
        v
    };
    let n1 = tryx!(
        d.take("alloc_nested", || c.alloc_nested(
            b,
            dom,
            HWPT_DATA_VTD_S1,
            &s1
        )),
        "nested"
    );
    let inv = {
        let mut v = [0u8; 24];
        v[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        v
    };
    let outcome = tryx!(
        d.take("invalidate_user", || c.invalidate_user(
            n1,
            INVALIDATE_DATA_VTD_S1,
            &inv,
            24,
            1
        )),
        "invalidate_user"
    );
    check_eq!(outcome.handled, 1, "user invalidation handled");
    tryx!(
        d.take("free_domain (nested)", || c.free_domain(n1)),
        "free nested"
    );
    // SVA.
    let space = AddressSpace {
        root: PhysAddr(0x10_0000),
        format: CpuFormat::X86_64 { five_level: false },
        asid: 0,
    };
    let sp = tryx!(
        d.take("register_space", || c.register_space(space, h)),
        "space"
    );
    let bond = tryx!(d.take("bind", || c.bind(a, sp)), "bind");
    tryx!(
        d.take("invalidate_range", || c
            .invalidate_range(sp, 0x1000, 0x2000)),
        "range"
    );
    tryx!(d.take("unbind", || c.unbind(bond)), "unbind");
    tryx!(d.take("detach", || c.detach(b)), "detach b");
    tryx!(
        d.take("bind_device", || c.bind_device(b, sp)),
        "bind_device"
    );
    tryx!(
        d.take("teardown_space", || c.teardown_space(sp)),
        "teardown"
    );
    // iommufd: an IOAS mirrored into a second paging domain.
    let mut ioas: Ioas<4, 2> = Ioas::new();
    let hwpt = tryx!(
        d.take("iommufd alloc_hwpt_paging", || {
            iommu::iommufd::alloc_hwpt_paging(c, &mut ioas, b, PagingFlags::empty())
        }),
        "hwpt"
    );
    tryx!(
        d.take("Ioas::map", || ioas.map(
            c,
            Iova(0x40_0000),
            PhysAddr(0x9000_0000),
            0x2000,
            rw
        )),
        "ioas map"
    );
    tryx!(
        d.take("Ioas::unmap", || ioas.unmap(c, Iova(0x40_0000), 0x2000)),
        "ioas unmap"
    );
    tryx!(
        d.take("free_hwpt_paging", || iommu::iommufd::free_hwpt_paging(
            c, &mut ioas, hwpt
        )),
        "free hwpt"
    );
    // Take it all down.
    tryx!(
        d.take("detach_pasid", || c.detach_pasid(b, p)),
        "detach_pasid"
    );
    tryx!(d.take("free_pasid", || c.free_pasid(p)), "free_pasid");
    tryx!(
        d.take("unmap_sync", || c.unmap_sync(
            dom,
            Iova(0x20_0000),
            0x20_0000
        )),
        "unmap"
    );
    tryx!(c.detach(a), "detach a");
    tryx!(d.take("free_domain", || c.free_domain(dom)), "free");
    for dev in [a, b] {
        tryx!(d.take("remove_device", || c.remove_device(dev)), "remove");
    }
    defmt::println!(
        "stack: deepest public core call: {=str}, {=usize} bytes (bound {=usize})",
        d.call,
        d.bytes,
        STACK_BOUND
    );
    check!(d.bytes > 0, "the painting saw no call at all");
    check!(
        d.bytes <= STACK_BOUND,
        "{} needs {} bytes of stack, over {}",
        d.call,
        d.bytes,
        STACK_BOUND
    );
    check_eq!(
        iommu_minimal::pool_pages_in_use(),
        0,
        "every table page went back to the pool"
    );
    Ok(())
}

/// A big core (64 domains, 64 devices, the whole PASID space: about 160 KiB)
/// built at run time in memory reserved for it.
type BigCore = Iommu<Tour, StaticHal, Caps<64, 64, 16384>>;

struct BigSlot(core::cell::UnsafeCell<core::mem::MaybeUninit<BigCore>>);

// SAFETY: only the single-threaded embedding suite touches it, once.
unsafe impl Sync for BigSlot {}

static BIG: BigSlot = BigSlot(core::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()));

fn init_in_place(_: &Ctx) -> TestResult {
    // SAFETY: the suite runs once, single-threaded: no other reference to
    // `BIG` exists.
    let slot = unsafe { &mut *BIG.0.get() };
    let (pasids, bytes) = depth(|| {
        let core = Iommu::init(slot, Tour::new(), StaticHal);
        core.pasids().limit()
    });
    defmt::println!(
        "stack: Iommu::init of a {=usize}-byte core: {=usize} bytes",
        core::mem::size_of::<BigCore>(),
        bytes
    );
    check_eq!(pasids, 1 << 20, "the whole PASID space");
    check!(bytes <= STACK_BOUND, "init needs {} bytes of stack", bytes);
    // SAFETY: initialised just above.
    let core = unsafe { slot.assume_init_mut() };
    tryx!(core.add_instance(0), "add_instance on the built core");
    let dev = DeviceId { instance: 0, id: 1 };
    let info = DeviceInfo {
        dev,
        pasid_bits: 20,
        ats: false,
    };
    tryx!(core.register_device(info), "register");
    check_eq!(core.alloc_pasid(dev), Ok(1), "the first PASID");
    Ok(())
}

fn readme_example(_: &Ctx) -> TestResult {
    let (r, bytes) = depth(iommu_minimal::run);
    defmt::println!("stack: the README example (run): {=usize} bytes", bytes);
    check_eq!(r, Ok(0x8000_0000), "the example's translation");
    check!(
        bytes <= STACK_BOUND,
        "the example needs {} bytes of stack",
        bytes
    );
    check_eq!(iommu_minimal::pool_pages_in_use(), 0, "pool pages back");
    let err = Error::NotFound {
        what: Object::Instance,
    };
    check_eq!(
        iommu_minimal::CORE.lock().add_instance(1).err(),
        Some(err),
        "the toy has one instance"
    );
    Ok(())
}

/// The embedding suite.
pub static EMBEDDING: Suite = Suite {
    name: "embedding",
    tests: &[
        Test {
            name: "readme_example_runs",
            run: readme_example,
        },
        Test {
            name: "core_calls_stack_depth",
            run: core_calls,
        },
        Test {
            name: "init_in_place_stack_depth",
            run: init_in_place,
        },
    ],
};
