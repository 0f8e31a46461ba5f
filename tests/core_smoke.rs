//! Smoke test of the core over the mock driver.

mod common;

use common::TestHal;
use common::mock::{Call, Mock, Seen, TestCaps};
use iommu::core::{DeviceId, DeviceInfo, DomainId, Iommu, PagingFlags};
use iommu::pgtable::Prot;
use iommu::{Iova, PhysAddr};

#[test]
fn attach_map_unmap_sync() {
    let pool = TestHal::new(256);
    let mut core: Box<Iommu<Mock, &TestHal, TestCaps<8, 8>>> =
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

/// A core built in place in heap memory works like one from `new`.
#[test]
fn a_core_built_in_place_works() {
    let pool = TestHal::new(256);
    let mut slot: Box<core::mem::MaybeUninit<Iommu<Mock, &TestHal, TestCaps<8, 8>>>> =
        Box::new_uninit();
    let core = Iommu::init(&mut slot, Mock::new(1).with_pool(&pool), &pool);
    core.add_instance(0).unwrap();
    let dev = DeviceId {
        instance: 0,
        id: 0x10,
    };
    core.register_device(DeviceInfo {
        dev,
        pasid_bits: 20,
        ats: false,
    })
    .unwrap();
    assert_eq!(core.alloc_pasid(dev), Ok(1));
    let d = core.alloc_paging(dev, PagingFlags::empty()).unwrap();
    core.attach(dev, d).unwrap();
    core.detach(dev).unwrap();
    core.free_domain(d).unwrap();
    // SAFETY: initialised by `init`; dropped once, here.
    unsafe { slot.assume_init_drop() };
    assert_eq!(pool.counts().live_pages(), 0);
}

mod in_a_static {
    use iommu::core::{
        CacheTag, Caps, DeviceId, DeviceInfo, DomainDesc, DomainHw, DomainRequest, FaultResponder,
        HwInfo, Iommu, IommuDriver, TagInvalidate,
    };
    use iommu::hal::Hal;
    use iommu::pgtable::VtdSl;
    use iommu::{Error, Object, PhysAddr};

    /// A driver with no instances: every call is refused. Only the required
    /// methods: the optional ones keep their defaults.
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

    impl FaultResponder for Absent {}

    impl IommuDriver for Absent {
        type DomainData = ();
        type Format = VtdSl;
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
            _: &DomainRequest<'_, (), VtdSl>,
        ) -> Result<DomainHw<(), VtdSl>, Error> {
            Err(NONE)
        }
        fn domain_free(&mut self, _: u16, _: &DomainHw<(), VtdSl>) {}
        fn attach(
            &mut self,
            _: &DeviceInfo,
            _: Option<u32>,
            _: &DomainDesc<'_, (), VtdSl>,
            _: &DomainDesc<'_, (), VtdSl>,
        ) -> Result<(), Error> {
            Err(NONE)
        }
    }

    /// A Hal with no memory (zero-sized, as an embedder's static pool is).
    #[derive(Clone, Copy)]
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
        fn now_ns(&self) -> u64 {
            0
        }
    }

    /// The core is built at compile time: an embedder places it in a
    /// `static` behind its own lock, with no heap and no code run to build
    /// it. All of its tables start zero, so it lands in `.bss`: the image
    /// carries none of its bytes.
    static CORE_IN_BSS: spin::Mutex<Iommu<Absent, NoMemory, Caps<8, 8>>> =
        spin::Mutex::new(Iommu::new(Absent, NoMemory));
    /// The same with the whole 20-bit PASID space (128 KiB of bitmap).
    static BIG_CORE_IN_BSS: spin::Mutex<Iommu<Absent, NoMemory, Caps<64, 64, 16384>>> =
        spin::Mutex::new(Iommu::new(Absent, NoMemory));

    /// The section this test binary's symbol whose name contains `name`
    /// lives in, read back from the binary itself.
    fn section_of(name: &str) -> (String, u64) {
        use object::{Object, ObjectSection, ObjectSymbol};
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let file = object::File::parse(&*exe).unwrap();
        let sym = file
            .symbols()
            // Mangled: the name is prefixed with its length.
            .find(|s| {
                s.name()
                    .is_ok_and(|n| n.contains(&format!("{}{name}", name.len())))
            })
            .unwrap_or_else(|| panic!("no symbol {name} in the test binary"));
        let index = sym.section_index().expect("a defined symbol");
        let section = file.section_by_index(index).unwrap();
        (section.name().unwrap().to_string(), sym.size())
    }

    #[test]
    fn a_core_in_a_static_is_zero_initialised_and_lands_in_bss() {
        // Use them, so the linker keeps them.
        assert_eq!(CORE_IN_BSS.lock().pasids().in_use(), 0);
        assert_eq!(BIG_CORE_IN_BSS.lock().pasids().limit(), 1 << 20);
        for (name, size) in [
            (
                "CORE_IN_BSS",
                size_of::<spin::Mutex<Iommu<Absent, NoMemory, Caps<8, 8>>>>(),
            ),
            (
                "BIG_CORE_IN_BSS",
                size_of::<spin::Mutex<Iommu<Absent, NoMemory, Caps<64, 64, 16384>>>>(),
            ),
        ] {
            let (section, sym_size) = section_of(name);
            assert_eq!(section, ".bss", "{name} is in {section}, not .bss");
            assert_eq!(sym_size, size as u64, "{name}'s symbol is the whole core");
        }
    }

    #[test]
    fn the_core_lives_in_a_static_and_reports_a_missing_instance() {
        let mut core = CORE_IN_BSS.lock();
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
/// commands, table entries, page-table formats): drivers depend on the
/// core, not the reverse. A paging domain's table format is the driver's
/// associated `Format`.
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
        ("arms1", true),
        ("arms2", true),
        ("anyformat", true),
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
