//! Cache tags and batched invalidation against a recording mock driver.

mod common;

use common::TestHal;
use iommu::core::tags::{CacheTag, CacheTags, FixedCacheTags, TagInvalidate, TagKind, sync};
use iommu::drivers::vtd::regs::LargePages;
use iommu::pgtable::{Gather, PageTable, Prot, VtdSl};
use iommu::{Error, Object};
use iommu::{Iova, PhysAddr};

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Inv {
        tag: CacheTag,
        range: Option<(u64, u64)>,
        page_size: u64,
        tables: bool,
    },
    Wait(u16),
}

/// Records every call; can fail the Nth one.
#[derive(Default)]
struct Mock<'a> {
    calls: Vec<Call>,
    fail_at: Option<usize>,
    /// Where to read live table pages at each wait (to prove nothing was freed before it).
    watch: Option<&'a TestHal>,
    live_at_wait: Vec<u64>,
}

impl Mock<'_> {
    fn step(&mut self, c: Call) -> Result<(), Error> {
        self.calls.push(c);
        if self.fail_at == Some(self.calls.len()) {
            return Err(Error::Timeout {
                what: "mock completion",
            });
        }
        Ok(())
    }
}

impl TagInvalidate for Mock<'_> {
    fn invalidate(
        &mut self,
        tag: &CacheTag,
        range: Option<(u64, u64)>,
        page_size: u64,
        tables: bool,
    ) -> Result<(), Error> {
        self.step(Call::Inv {
            tag: *tag,
            range,
            page_size,
            tables,
        })
    }
    fn wait(&mut self, instance: u16) -> Result<(), Error> {
        if let Some(h) = self.watch {
            self.live_at_wait.push(h.counts().live_pages());
        }
        self.step(Call::Wait(instance))
    }
}

fn tag(instance: u16, id: u32, kind: TagKind) -> CacheTag {
    CacheTag {
        instance,
        id,
        pasid: None,
        device: 0x18,
        kind,
    }
}

const RW: Prot = Prot::READ.union(Prot::WRITE);

/// A table with 1 MiB mapped at 0x20_0000, then unmapped into a gather that
/// holds the emptied leaf and upper tables.
fn gathered(hal: &TestHal) -> (PageTable<VtdSl, &TestHal>, Gather) {
    let mut pt = PageTable::new(VtdSl::new(48, LargePages::SIZE_2M).unwrap(), hal).unwrap();
    pt.map(Iova(0x20_0000), PhysAddr(0x8000_0000), 0x10_0000, RW)
        .unwrap();
    let mut g = Gather::new();
    pt.unmap(Iova(0x20_0000), 0x10_0000, &mut g).unwrap();
    assert_eq!(g.freed_pages(), 3);
    (pt, g)
}

#[test]
fn one_wait_per_instance_iotlb_before_devtlb_and_pages_freed_after() {
    let hal = TestHal::new(64);
    let (pt, mut g) = gathered(&hal);
    let mut tags: FixedCacheTags<8> = CacheTags::new();
    // Instance 1 has a device-TLB tag recorded before its IOTLB tag.
    tags.add(tag(1, 7, TagKind::DevTlb)).unwrap();
    tags.add(tag(0, 5, TagKind::Iotlb)).unwrap();
    tags.add(tag(1, 7, TagKind::Iotlb)).unwrap();
    tags.add(tag(0, 6, TagKind::NestedParent)).unwrap();
    let live_before = hal.counts().live_pages();
    let mut m = Mock {
        watch: Some(&hal),
        ..Mock::default()
    };
    sync(&tags, &mut g, &mut m, &hal).unwrap();
    let r = Some((0x20_0000, 0x30_0000));
    let inv = |t: CacheTag| Call::Inv {
        tag: t,
        range: r,
        page_size: 4096,
        tables: true,
    };
    assert_eq!(
        m.calls,
        vec![
            inv(tag(1, 7, TagKind::Iotlb)),
            inv(tag(1, 7, TagKind::DevTlb)),
            Call::Wait(1),
            inv(tag(0, 5, TagKind::Iotlb)),
            inv(tag(0, 6, TagKind::NestedParent)),
            Call::Wait(0),
        ]
    );
    assert!(
        m.live_at_wait.iter().all(|&n| n == live_before),
        "no page freed before a wait"
    );
    assert_eq!(
        hal.counts().live_pages(),
        live_before - 3,
        "released after the last wait"
    );
    assert_eq!(g.freed_pages(), 0);
    assert_eq!(g.range(), None);
    drop(pt);
}

#[test]
fn a_failed_invalidation_or_wait_frees_nothing_and_can_be_retried() {
    for fail_at in 1..=4 {
        let hal = TestHal::new(64);
        let (pt, mut g) = gathered(&hal);
        let mut tags: FixedCacheTags<4> = CacheTags::new();
        tags.add(tag(0, 1, TagKind::Iotlb)).unwrap();
        tags.add(tag(2, 9, TagKind::Iotlb)).unwrap();
        let live = hal.counts().live_pages();
        let mut m = Mock {
            fail_at: Some(fail_at),
            ..Mock::default()
        };
        assert!(matches!(
            sync(&tags, &mut g, &mut m, &hal),
            Err(Error::Timeout { .. })
        ));
        assert_eq!(m.calls.len(), fail_at, "stopped at the failure");
        assert_eq!(hal.counts().live_pages(), live, "nothing released");
        assert_eq!(g.freed_pages(), 3);
        // Retry succeeds and releases.
        let mut m = Mock::default();
        sync(&tags, &mut g, &mut m, &hal).unwrap();
        assert_eq!(
            m.calls
                .iter()
                .filter(|c| matches!(c, Call::Wait(_)))
                .count(),
            2
        );
        assert_eq!(hal.counts().live_pages(), live - 3);
        drop(pt);
    }
}

#[test]
fn an_empty_gather_sends_nothing() {
    let hal = TestHal::new(8);
    let mut tags: FixedCacheTags<2> = CacheTags::new();
    tags.add(tag(0, 1, TagKind::Iotlb)).unwrap();
    let mut m = Mock::default();
    sync(&tags, &mut Gather::new(), &mut m, &hal).unwrap();
    assert!(m.calls.is_empty());
}

#[test]
fn tags_are_counted_per_user_and_bounded() {
    let mut tags: FixedCacheTags<2> = CacheTags::new();
    let a = tag(0, 1, TagKind::Iotlb);
    let b = tag(0, 2, TagKind::Iotlb);
    tags.add(a).unwrap();
    tags.add(a).unwrap();
    tags.add(b).unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(
        tags.add(tag(1, 3, TagKind::DevTlb)),
        Err(Error::Exhausted {
            what: Object::CacheTag
        })
    );
    tags.remove(&a).unwrap();
    assert_eq!(tags.len(), 2, "a still has one user");
    tags.remove(&a).unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(
        tags.remove(&a),
        Err(Error::NotFound {
            what: Object::CacheTag
        })
    );
    assert_eq!(tags.iter().copied().collect::<Vec<_>>(), vec![b]);
    tags.remove(&b).unwrap();
    assert!(tags.is_empty());
}
