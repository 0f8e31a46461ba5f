//! Glue between the engine under test, the model and the reference walkers:
//! what each format must encode for a `Prot` (from the specifications, not
//! from the engine), and a harness that runs one operation and checks every
//! invariant after it.

use iommu::Error;
use iommu::pgtable::{Format, Gather, PageTable, Prot};
use iommu::{Iova, PhysAddr};

use super::model::{MLeaf, Model, Refusal};
use super::pool::{DeviceView, PAGE, TestHal};
use super::walk::{Attrs, MemType, RefFormat, Scan};

/// 2 MiB.
pub const M2: u64 = 2 << 20;
/// 1 GiB.
pub const G1: u64 = 1 << 30;

/// A format as the tests see it: the parameters the hardware would be given
/// plus the options that change encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// VT-d second level.
    Vtd {
        /// 3, 4 or 5.
        levels: u32,
        /// 2 MiB leaves allowed.
        large_2m: bool,
        /// 1 GiB leaves allowed.
        large_1g: bool,
        /// SNP on cacheable leaves.
        snoop: bool,
        /// X bit honoured.
        execute: bool,
    },
    /// x86-64 paging.
    X86 {
        /// 4 or 5.
        levels: u32,
        /// 1 GiB pages allowed.
        gb: bool,
    },
    /// Arm stage 1 with MAIR indices (write-back, non-cacheable, device).
    ArmS1 {
        /// AttrIndx of normal WB.
        wb: u8,
        /// AttrIndx of normal NC.
        nc: u8,
        /// AttrIndx of device.
        dev: u8,
    },
    /// Arm stage 2 with this IPA size.
    ArmS2 {
        /// IPA bits.
        ias: u32,
    },
}

impl Kind {
    /// The reference walker for it.
    pub fn reference(&self) -> RefFormat {
        match *self {
            Kind::Vtd { levels, .. } => RefFormat::VtdSl { levels },
            Kind::X86 { levels, .. } => RefFormat::X86 { levels },
            Kind::ArmS1 { wb, nc, dev } => RefFormat::ArmS1 {
                idx_wb: wb,
                idx_nc: nc,
                idx_dev: dev,
            },
            Kind::ArmS2 { ias } => RefFormat::ArmS2 { ias },
        }
    }

    /// Leaf sizes the engine may use ("largest the format allows").
    pub fn sizes(&self) -> Vec<u64> {
        let mut v = vec![PAGE];
        match *self {
            Kind::Vtd {
                large_2m, large_1g, ..
            } => {
                if large_2m {
                    v.push(M2);
                }
                if large_1g {
                    v.push(G1);
                }
            }
            Kind::X86 { gb, .. } => {
                v.push(M2);
                if gb {
                    v.push(G1);
                }
            }
            // [ARM] D8.3: 4 KiB granule blocks at L2 (2 MiB) and L1 (1 GiB).
            Kind::ArmS1 { .. } => v.extend([M2, G1]),
            Kind::ArmS2 { .. } => {
                v.push(M2);
                // L1 blocks only if the walk starts at L1 or above.
                if self.reference().top() >= 3 {
                    v.push(G1);
                }
            }
        }
        v
    }

    /// What the reference walker must decode from a leaf mapped with `prot`
    /// (the specifications' reading of the brief's semantics).
    pub fn expected_attrs(&self, prot: Prot) -> Attrs {
        let r = prot.contains(Prot::READ);
        let w = prot.contains(Prot::WRITE);
        let x = prot.contains(Prot::EXEC);
        let mmio = prot.contains(Prot::MMIO);
        let cache = prot.contains(Prot::CACHE) && !mmio;
        let none = Attrs {
            read: r,
            write: w,
            exec: x,
            privileged: None,
            global: None,
            mem: None,
            snoop: None,
            shareability: None,
            access_flag: None,
        };
        let arm_mem = if mmio {
            MemType::Device
        } else if cache {
            MemType::WriteBack
        } else {
            MemType::NonCacheable
        };
        match *self {
            Kind::Vtd { snoop, execute, .. } => Attrs {
                exec: x && execute,
                snoop: Some(snoop && cache),
                ..none
            },
            // x86 cannot refuse reads of a present page.
            Kind::X86 { .. } => Attrs {
                read: true,
                privileged: Some(prot.contains(Prot::PRIV)),
                global: Some(prot.contains(Prot::GLOBAL)),
                // [SDM] 11.12.3 default PAT: 0 WB, 2 UC-, 3 UC.
                mem: Some(MemType::X86PatIndex(if mmio {
                    3
                } else if cache {
                    0
                } else {
                    2
                })),
                ..none
            },
            // Stage 1: EL1 can always read a valid page; device memory never
            // executable.
            Kind::ArmS1 { .. } => Attrs {
                read: true,
                exec: x && !mmio,
                privileged: Some(prot.contains(Prot::PRIV)),
                global: Some(prot.contains(Prot::GLOBAL)),
                mem: Some(arm_mem),
                shareability: Some(if mmio { 0 } else { 0b11 }),
                access_flag: Some(true),
                ..none
            },
            Kind::ArmS2 { .. } => Attrs {
                exec: x && !mmio,
                mem: Some(arm_mem),
                shareability: Some(if mmio { 0 } else { 0b11 }),
                access_flag: Some(true),
                ..none
            },
        }
    }

    /// What the engine's `translate` should report for a leaf mapped with
    /// `prot`: the bits of `prot` the format can store.
    pub fn expected_prot(&self, prot: Prot) -> Prot {
        let a = self.expected_attrs(prot);
        let mut p = Prot::empty();
        p.set(Prot::READ, a.read);
        p.set(Prot::WRITE, a.write);
        p.set(Prot::EXEC, a.exec);
        p.set(Prot::PRIV, a.privileged == Some(true));
        p.set(Prot::GLOBAL, a.global == Some(true));
        match a.mem {
            Some(MemType::WriteBack) | Some(MemType::X86PatIndex(0)) => p |= Prot::CACHE,
            Some(MemType::Device) | Some(MemType::X86PatIndex(3)) => p |= Prot::MMIO,
            _ => {}
        }
        if a.snoop == Some(true) {
            p |= Prot::CACHE;
        }
        p
    }

    /// Short name for messages.
    pub fn name(&self) -> String {
        format!("{self:?}")
    }
}

/// Prot values the property tests draw from (READ always, so every format
/// can express them as a present entry).
pub fn prot_from_bits(bits: u8) -> Prot {
    Prot::READ | Prot::from_bits_truncate(bits as u32 & 0x7e)
}

/// Engine + model + reference walker, checked after each operation.
pub struct Harness<'h, F: Format> {
    /// The table under test.
    pub pt: PageTable<F, &'h TestHal>,
    /// Its memory.
    pub hal: &'h TestHal,
    /// The model.
    pub model: Model<Prot>,
    /// Format parameters.
    pub kind: Kind,
    /// Reference walker.
    pub reff: RefFormat,
    /// Gathers not released yet.
    pub pending: Vec<Gather>,
    /// Steps run (for messages).
    pub step: usize,
}

impl<'h, F: Format> Harness<'h, F> {
    /// A fresh table in `hal`.
    pub fn new(format: F, kind: Kind, hal: &'h TestHal) -> Self {
        let before = hal.counts();
        let pt = PageTable::new(format, hal).expect("PageTable::new");
        let reff = kind.reference();
        let after = hal.counts();
        assert_eq!(
            after.allocs - before.allocs,
            1,
            "{kind:?}: new() must allocate once"
        );
        assert_eq!(
            after.pages_allocated - before.pages_allocated,
            reff.root_pages() as u64,
            "{kind:?}: root pages"
        );
        assert_eq!(
            pt.root_phys().0 % (reff.root_pages() as u64 * PAGE),
            0,
            "{kind:?}: root alignment"
        );
        Harness {
            pt,
            hal,
            model: Model::new(&kind.sizes()),
            kind,
            reff,
            pending: Vec::new(),
            step: 0,
        }
    }

    fn ctx(&self) -> String {
        format!("{:?} step {}", self.kind, self.step)
    }

    /// Map through the engine, predict with the model, compare, check.
    pub fn map(&mut self, iova: u64, paddr: u64, len: u64, prot: Prot) -> Result<(), Error> {
        self.step += 1;
        let before_snap = self.hal.snapshot();
        let before_counts = self.hal.counts();
        let expect = self.model.clone().map(iova, paddr, len, prot);
        let first_overlap = self.model.first_overlap_chunk(iova, paddr, len);
        let got = self.pt.map(Iova(iova), PhysAddr(paddr), len, prot);
        let ctx = self.ctx();
        match (&expect, &got) {
            (Ok(()), Ok(())) => {
                self.model.map(iova, paddr, len, prot).unwrap();
            }
            (Err(_), Err(Error::Overlap { iova: at })) => {
                assert_eq!(
                    Some(*at),
                    first_overlap,
                    "{ctx}: map({iova:#x}, {paddr:#x}, {len:#x}) reported overlap at the wrong address"
                );
            }
            _ => panic!(
                "{ctx}: map({iova:#x}, {paddr:#x}, {len:#x}, {prot:?}): engine {got:?}, model {expect:?}"
            ),
        }
        if got.is_err() {
            assert_eq!(
                self.hal.snapshot(),
                before_snap,
                "{ctx}: failed map changed table memory"
            );
            assert_eq!(
                self.hal.counts().live_pages(),
                before_counts.live_pages(),
                "{ctx}: failed map leaked or freed pages"
            );
        }
        self.check_range(iova, len);
        got
    }

    /// Unmap with a fresh gather; compare with the model and check the
    /// gather. The gather is kept pending (see [`Harness::release`]).
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(), Error> {
        self.step += 1;
        let ctx = self.ctx();
        let before_snap = self.hal.snapshot();
        let tables_before = self.scan().tables.len();
        let expect = self.model.check_unmap(iova, len);
        let mut g = Gather::new();
        let got = self.pt.unmap(Iova(iova), len, &mut g);
        match (&expect, &got) {
            (Ok(removed), Ok(())) => {
                self.model.unmap(iova, len).unwrap();
                assert_eq!(
                    g.range(),
                    Some((iova, iova + len)),
                    "{ctx}: gather range of unmap({iova:#x}, {len:#x})"
                );
                let min = removed.iter().map(|(_, l)| l.size).min().unwrap();
                assert_eq!(g.page_size(), min, "{ctx}: gather page size");
                let tables_after = self.scan().tables.len();
                assert_eq!(
                    g.freed_pages(),
                    tables_before - tables_after,
                    "{ctx}: gather freed_pages vs tables unlinked"
                );
            }
            (Err(r), Err(e)) => {
                let want = Model::<Prot>::first_refusal(*r, iova);
                let ok = match (want, e) {
                    (Refusal::NotMapped(a), Error::NotMapped { iova: b }) => a == *b,
                    (Refusal::Split(a, s), Error::SplitBlock { iova: b, size }) => {
                        a == *b && s == *size
                    }
                    _ => false,
                };
                assert!(
                    ok,
                    "{ctx}: unmap({iova:#x}, {len:#x}): engine {e:?}, model {want:?}"
                );
                assert_eq!(
                    self.hal.snapshot(),
                    before_snap,
                    "{ctx}: refused unmap changed memory"
                );
                assert_eq!(g.range(), None, "{ctx}: refused unmap gathered a range");
                assert_eq!(g.freed_pages(), 0);
            }
            _ => panic!("{ctx}: unmap({iova:#x}, {len:#x}): engine {got:?}, model {expect:?}"),
        }
        self.pending.push(g);
        self.check_range(iova, len);
        got
    }

    /// Release every pending gather (the caller's IOTLB sync is implied).
    pub fn release(&mut self) {
        for mut g in self.pending.drain(..) {
            let before = self.hal.counts();
            let n = g.freed_pages();
            g.release(&self.hal);
            let after = self.hal.counts();
            assert_eq!(
                after.pages_freed - before.pages_freed,
                n as u64,
                "release freed a different number of pages than freed_pages()"
            );
            assert_eq!(g.freed_pages(), 0);
            assert_eq!(g.range(), None);
        }
    }

    /// Reference scan of the whole table (CPU view).
    pub fn scan(&self) -> Scan {
        self.reff.scan(self.hal, self.pt.root_phys().0)
    }

    /// Compare the engine's software walk and the reference walker with the
    /// model at a few addresses of [iova, iova+len) and just around it.
    pub fn check_range(&self, iova: u64, len: u64) {
        let mut pts = vec![iova, iova + len - PAGE, (iova + len / 2) & !(PAGE - 1)];
        pts.push(iova.wrapping_sub(PAGE));
        pts.push(iova + len);
        // Leaves touched (first and last page of each; a sample of at most
        // ~64 when there are many: the whole-table scan sees all of them).
        let hit = self.model.overlapping(iova, iova + len);
        let stride = hit.len().div_ceil(64).max(1);
        for (i, (k, l)) in hit.iter().enumerate() {
            if i % stride == 0 || i + 1 == hit.len() {
                pts.push(*k);
                pts.push(k + l.size - PAGE);
            }
        }
        for p in pts {
            if p >> self.reff.input_bits() != 0 {
                continue;
            }
            self.check_point(p + 0x18);
        }
    }

    /// One address: engine, reference walker and model agree.
    pub fn check_point(&self, a: u64) {
        let ctx = self.ctx();
        let want = self.model.lookup(a);
        let got = self.pt.translate(Iova(a));
        let walked = self.reff.walk(self.hal, self.pt.root_phys().0, a);
        let dev = self
            .reff
            .walk(&DeviceView(self.hal), self.pt.root_phys().0, a);
        match want {
            None => {
                assert_eq!(got, None, "{ctx}: engine translates unmapped {a:#x}");
                assert_eq!(walked, None, "{ctx}: reference walks unmapped {a:#x}");
                assert_eq!(dev, None, "{ctx}: device view maps unmapped {a:#x}");
                assert_eq!(self.pt.iova_to_phys(Iova(a)), None);
            }
            Some((phys, size, prot)) => {
                let t = got.unwrap_or_else(|| panic!("{ctx}: engine misses {a:#x}"));
                assert_eq!(
                    (t.phys.0, t.size, t.prot),
                    (phys, size, self.kind.expected_prot(prot)),
                    "{ctx}: engine translate({a:#x})"
                );
                assert_eq!(self.pt.iova_to_phys(Iova(a)), Some(PhysAddr(phys)));
                let w = walked.unwrap_or_else(|| panic!("{ctx}: reference misses {a:#x}"));
                assert_eq!(
                    (w.phys, w.size, w.attrs),
                    (phys, size, self.kind.expected_attrs(prot)),
                    "{ctx}: reference walk({a:#x}), pte {:#x}",
                    w.pte
                );
                assert_eq!(
                    dev, walked,
                    "{ctx}: device view differs at {a:#x} (missing flush)"
                );
            }
        }
    }

    /// The whole-table invariants: leaves equal the model, table count is
    /// minimal, every reachable page is flushed, page balance adds up, and
    /// pending gathered pages hold only non-present entries.
    pub fn check_all(&self) {
        let ctx = self.ctx();
        let scan = self.scan();
        let want: Vec<_> = self
            .model
            .leaves()
            .iter()
            .map(|(&k, l): (&u64, &MLeaf<Prot>)| {
                (k, l.out, l.size, self.kind.expected_attrs(l.prot))
            })
            .collect();
        let got: Vec<_> = scan
            .leaves
            .iter()
            .map(|l| (l.iova, l.out, l.size, l.attrs))
            .collect();
        if want != got {
            let first = want
                .iter()
                .zip(&got)
                .position(|(a, b)| a != b)
                .unwrap_or(want.len().min(got.len()));
            panic!(
                "{ctx}: leaves differ from the model ({} vs {} leaves); first difference at #{first}: model {:x?} table {:x?}",
                want.len(),
                got.len(),
                want.get(first),
                got.get(first)
            );
        }
        assert_eq!(
            scan.tables.len(),
            self.model
                .expected_table_pages(self.reff.top(), self.reff.root_pages()),
            "{ctx}: table pages reachable vs minimal for the model"
        );
        let unflushed = self.hal.unflushed(scan.tables.iter().copied());
        assert!(
            unflushed.is_empty(),
            "{ctx}: entries written but not flushed (page, index): {unflushed:x?}"
        );
        let pending: usize = self.pending.iter().map(|g| g.freed_pages()).sum();
        assert_eq!(
            self.hal.counts().live_pages(),
            (scan.tables.len() + pending) as u64,
            "{ctx}: live pool pages != reachable tables + gathered pages"
        );
        // Gathered pages: live in the pool, not reachable, only non-present
        // entries (entry 0 may link the next page).
        let reachable: std::collections::BTreeSet<u64> = scan.tables.iter().copied().collect();
        let mut others = 0;
        for (phys, count) in self.hal.live() {
            for p in 0..count as u64 {
                let page = phys + p * PAGE;
                if reachable.contains(&page) {
                    continue;
                }
                others += 1;
                for (i, e) in self.hal.page_words(page).into_iter().enumerate() {
                    assert!(
                        !self.reff.present(e),
                        "{ctx}: gathered page {page:#x} entry {i} = {e:#x} is present"
                    );
                    if i == 0 && e != 0 {
                        assert!(
                            e.is_multiple_of(PAGE) && self.hal.is_live(e),
                            "{ctx}: gathered page link {e:#x} is not a live page"
                        );
                    }
                }
            }
        }
        assert_eq!(
            others, pending,
            "{ctx}: unreachable live pages != gathered pages"
        );
    }

    /// Release, drop the table, check the pool is back to empty.
    pub fn finish(mut self) {
        self.release();
        self.check_all();
        let hal = self.hal;
        let Harness { pt, .. } = self;
        drop(pt);
        let c = hal.counts();
        assert_eq!(c.live_pages(), 0, "pages leaked after drop: {c:?}");
        assert_eq!(c.allocs, c.frees, "alloc/free calls after drop: {c:?}");
    }
}
