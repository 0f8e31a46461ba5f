//! Smoke test of the core over the mock driver.

mod common;

use common::TestHal;
use common::mock::{Call, Mock, Seen};
use iommu::core::{DeviceId, DeviceInfo, DomainId, Iommu, PagingFlags};
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};

#[test]
fn attach_map_unmap_sync() {
    let pool = TestHal::new(256);
    let mut core: Box<Iommu<Mock, &TestHal, 8, 8>> =
        Box::new(Iommu::new(Mock::new(2).with_pool(&pool), &pool));
    core.add_instance(0).unwrap();
    let dev = DeviceId {
        instance: 0,
        id: 0x10,
    };
    core.register_device(DeviceInfo {
        dev,
        pasid_bits: 8,
        ats: false,
    })
    .unwrap();
    let d = core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    core.attach(dev, d).unwrap();
    core.map(
        d,
        Iova(0x10_0000),
        PhysAddr(0x20_0000),
        0x1000,
        Prot::READ | Prot::WRITE,
    )
    .unwrap();
    assert_eq!(
        core.iova_to_phys(d, Iova(0x10_0000)).unwrap(),
        Some(PhysAddr(0x20_0000))
    );
    core.driver_mut().clear();
    core.unmap_sync(d, Iova(0x10_0000), 0x1000).unwrap();
    assert_eq!(core.driver().waits(), vec![0]);
    core.detach(dev).unwrap();
    assert!(matches!(
        core.driver().calls.last(),
        Some(Call::Attach {
            new: Seen::Blocked,
            ..
        })
    ));
    assert_eq!(core.attached(dev, None).unwrap(), Some(DomainId::BLOCKED));
    core.free_domain(d).unwrap();
    assert!(core.driver().live.is_empty());
    drop(core);
    assert_eq!(pool.counts().live_pages(), 0);
}

mod in_a_static {
    use std::sync::Mutex;

    use iommu::core::{
        CacheTag, DeviceId, DeviceInfo, DomainDesc, DomainHw, DomainRequest, Fault, FaultResponder,
        HwInfo, InvalidateOutcome, Iommu, IommuDriver, Response, TagInvalidate, UserArray,
        VirtualIds,
    };
    use iommu::hal::Hal;
    use iommu::{Error, Object, PhysAddr};

    /// A driver with no instances: every call is refused.
    struct Absent;

    const NONE: Error = Error::NotFound {
        what: Object::Instance,
    };

    impl TagInvalidate for Absent {
        fn invalidate(
            &mut self,
            _: &CacheTag,
            _: Option<(u64, u64)>,
            _: u64,
            _: bool,
        ) -> Result<(), Error> {
            Err(NONE)
        }
        fn wait(&mut self, _: u16) -> Result<(), Error> {
            Err(NONE)
        }
    }

    impl FaultResponder for Absent {
        fn respond(
            &mut self,
            _: u16,
            _: u32,
            _: Option<u32>,
            _: u16,
            _: Response,
        ) -> Result<(), Error> {
            Err(NONE)
        }
    }

    impl IommuDriver for Absent {
        type DomainData = ();
        fn probe(&mut self, _: u16) -> Result<HwInfo, Error> {
            Err(NONE)
        }
        fn enable(&mut self, _: u16) -> Result<(), Error> {
            Err(NONE)
        }
        fn hw_info(&self, _: u16) -> Result<HwInfo, Error> {
            Err(NONE)
        }
        fn domain_alloc(
            &mut self,
            _: &DeviceInfo,
            _: &DomainRequest<'_, ()>,
        ) -> Result<DomainHw<()>, Error> {
            Err(NONE)
        }
        fn domain_free(&mut self, _: u16, _: &DomainHw<()>) {}
        fn attach(
            &mut self,
            _: &DeviceInfo,
            _: Option<u32>,
            _: &DomainDesc<'_, ()>,
            _: &DomainDesc<'_, ()>,
        ) -> Result<(), Error> {
            Err(NONE)
        }
        fn detach_pasid(
            &mut self,
            _: &DeviceInfo,
            _: u32,
            _: &DomainDesc<'_, ()>,
        ) -> Result<(), Error> {
            Err(NONE)
        }
        fn invalidate_user(
            &mut self,
            _: &DomainDesc<'_, ()>,
            _: &UserArray<'_>,
            _: &dyn VirtualIds,
        ) -> InvalidateOutcome {
            InvalidateOutcome {
                handled: 0,
                error: Some((0, NONE)),
            }
        }
        fn drain_faults(&mut self, _: u16, _: &mut [Fault]) -> Result<usize, Error> {
            Err(NONE)
        }
    }

    /// A Hal with no memory.
    struct NoMemory;

    // SAFETY: it hands out no page, so it has nothing to keep valid.
    unsafe impl Hal for NoMemory {
        fn alloc_pages(&self, _: usize) -> Option<PhysAddr> {
            None
        }
        unsafe fn free_pages(&self, _: PhysAddr, _: usize) {
            unreachable!("nothing was allocated")
        }
        fn phys_to_virt(&self, _: PhysAddr) -> *mut u8 {
            core::ptr::null_mut()
        }
    }

    static HAL: NoMemory = NoMemory;
    /// The core is built at compile time: an embedder can place it in a
    /// `static` behind its own lock, with no heap.
    static CORE: Mutex<Iommu<Absent, &'static NoMemory, 4, 4>> =
        Mutex::new(Iommu::new(Absent, &HAL));

    #[test]
    fn the_core_lives_in_a_static_and_reports_a_missing_instance() {
        let mut core = CORE.lock().unwrap();
        assert_eq!(core.add_instance(0), Err(NONE));
        let info = DeviceInfo {
            dev: DeviceId { instance: 0, id: 1 },
            pasid_bits: 0,
            ats: false,
        };
        // The refused instance was not recorded.
        assert_eq!(
            core.register_device(info),
            Err(Error::NotFound {
                what: Object::Instance
            })
        );
        assert_eq!(core.process_faults(), Ok(0));
    }
}

/// The layering rule: the hardware-agnostic layer (and iommufd above it)
/// never names a driver, nor any of a driver's formats (user data, STEs,
/// commands, table entries): drivers depend on the core, not the reverse.
/// The page-table formats are the engine's (`pgtable`), not a driver's, and
/// may be named.
#[test]
fn core_and_iommufd_name_no_driver() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // (token, whether any identifier starting with it counts)
    let forbidden = [
        ("drivers::", true),
        ("smmu", true),
        ("vtd", true),
        ("ste", false),
        ("iommu_hwpt", true),
        ("cmdq", true),
    ];
    let mut files = 0;
    for dir in ["core", "iommufd"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            files += 1;
            for (n, line) in text.lines().enumerate() {
                // Code only: comments may give examples.
                let code = line.split("//").next().unwrap_or("");
                // The engine's page-table format of that name is allowed.
                let code = code.replace("VtdSl", "");
                let words: Vec<String> = code
                    .split(|c: char| !c.is_alphanumeric() && c != '_' && c != ':')
                    .map(|w| w.to_lowercase())
                    .collect();
                for w in &words {
                    for (f, prefix) in forbidden {
                        let hit = w
                            .split(['_', ':'])
                            .any(|p| if prefix { p.starts_with(f) } else { p == f })
                            || w.contains(f) && f.contains("::");
                        assert!(!hit, "{}:{}: names `{f}`: {line}", path.display(), n + 1);
                    }
                }
            }
        }
    }
    assert!(files >= 8, "only {files} files read");
}
