//! Reference table walkers, written from the specifications' bit layouts and
//! sharing nothing with `src/pgtable` (no crate type is used here).
//!
//! Heights: a table of height 1 is a last-level table (its entries map 4 KiB),
//! height 2 entries map 2 MiB, 3 → 1 GiB, 4 → 512 GiB, 5 → 256 TiB.
//! Intel levels: PT = 1, PD = 2, PDPT = 3, PML4 = 4, PML5 = 5.
//! Arm levels: L3 = 1, L2 = 2, L1 = 3, L0 = 4.
//!
//! References:
//! - [VT-d] Intel Virtualization Technology for Directed I/O, rev 4.x/5.x,
//!   section 9.8 "Second-Level Paging Entries" (SL-PML5E .. SL-PTE formats),
//!   section 3.7.1 / 3.6 for access rights.
//! - [SDM] Intel SDM vol. 3A, 4.5 "4-Level Paging and 5-Level Paging"
//!   (Tables 4-15 .. 4-20), 4.6 "Access Rights", 4.9.2 / 11.12 (PAT).
//! - [ARM] Arm ARM (DDI 0487) D8.3 "Translation table descriptor formats"
//!   (D8.3.1 table descriptors, D8.3.2 block/page descriptors), D8.2.x for
//!   translation granule / start level / concatenation (VTCR_EL2.SL0, T0SZ),
//!   D8.4 access permissions (AP, APTable, XN), D8.6 memory attributes
//!   (AttrIndx, stage 2 MemAttr, SH).

use super::pool::{PAGE, PhysMem};

/// Bits of a 4 KiB page offset.
const PAGE_SHIFT: u32 = 12;
/// Each table level resolves 9 bits with 4 KiB granule and 8-byte entries.
const BITS_PER_LEVEL: u32 = 9;

/// Bytes mapped by one entry of a table of height `h`.
pub fn entry_span(h: u32) -> u64 {
    1u64 << (PAGE_SHIFT + BITS_PER_LEVEL * (h - 1))
}

/// Memory type as decoded from a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal, write-back cacheable.
    WriteBack,
    /// Normal, non-cacheable.
    NonCacheable,
    /// Device memory (Arm Device-nGnRE; x86 UC).
    Device,
    /// x86 PAT index (PAT:PCD:PWT) as written, interpreted by the caller.
    X86PatIndex(u8),
    /// Some other encoding (raw field value).
    Other(u8),
}

/// Permissions and attributes decoded from a leaf (and, where the format
/// has hierarchical controls, the tables above it). `None`: the format has no
/// such field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable (for the privilege it is accessible at).
    pub exec: bool,
    /// Supervisor / EL1-only.
    pub privileged: Option<bool>,
    /// Global (x86 G, Arm nG = 0).
    pub global: Option<bool>,
    /// Memory type.
    pub mem: Option<MemType>,
    /// VT-d snoop (SNP).
    pub snoop: Option<bool>,
    /// Arm shareability field SH[1:0].
    pub shareability: Option<u8>,
    /// Arm access flag.
    pub access_flag: Option<bool>,
}

impl Attrs {
    fn bare(read: bool, write: bool, exec: bool) -> Self {
        Attrs {
            read,
            write,
            exec,
            privileged: None,
            global: None,
            mem: None,
            snoop: None,
            shareability: None,
            access_flag: None,
        }
    }
}

/// Result of translating one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Output address of the translated address itself (page offset kept).
    pub phys: u64,
    /// Bytes mapped by the leaf entry.
    pub size: u64,
    /// Height of the table holding the leaf.
    pub height: u32,
    /// Raw leaf entry.
    pub pte: u64,
    /// Physical address of the leaf entry.
    pub pte_addr: u64,
    /// Decoded attributes.
    pub attrs: Attrs,
}

/// One leaf found by a full scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafEntry {
    /// First input address it maps.
    pub iova: u64,
    /// First output address.
    pub out: u64,
    /// Bytes.
    pub size: u64,
    /// Raw entry.
    pub pte: u64,
    /// Decoded attributes.
    pub attrs: Attrs,
}

/// Everything reachable from a root.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Leaves by input address.
    pub leaves: Vec<LeafEntry>,
    /// Every table page reached (root pages included), 4 KiB each, sorted.
    pub tables: Vec<u64>,
}

/// The formats, with the parameters a hardware walker is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefFormat {
    /// VT-d second-level tables; `levels` = 3 (39-bit), 4 (48), 5 (57).
    VtdSl {
        /// Table levels (SAGAW / AGAW).
        levels: u32,
    },
    /// Intel IA-32e paging (VT-d first level); `levels` = 4 or 5.
    X86 {
        /// 4 or 5.
        levels: u32,
    },
    /// Arm VMSAv8-64 stage 1, 4 KiB granule, 48-bit input (T0SZ = 16), start
    /// at L0. The three MAIR indices the format programs.
    ArmS1 {
        /// AttrIndx of normal write-back memory.
        idx_wb: u8,
        /// AttrIndx of normal non-cacheable memory.
        idx_nc: u8,
        /// AttrIndx of device memory.
        idx_dev: u8,
    },
    /// Arm VMSAv8-64 stage 2, 4 KiB granule, `ias`-bit IPA.
    ArmS2 {
        /// Input (IPA) size in bits.
        ias: u32,
    },
}

/// Kinds of entry.
enum Entry {
    Invalid,
    Table {
        next: u64,
        hier: Hier,
    },
    Leaf {
        out: u64,
        size: u64,
        attrs_of: fn(u64, u64, Hier, &RefFormat) -> Attrs,
    },
}

/// Hierarchical restrictions accumulated from table entries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hier {
    no_read: bool,
    no_write: bool,
    no_exec: bool,
    no_user: bool,
    no_priv_exec: bool,
}

impl Hier {
    fn and(self, o: Hier) -> Hier {
        Hier {
            no_read: self.no_read || o.no_read,
            no_write: self.no_write || o.no_write,
            no_exec: self.no_exec || o.no_exec,
            no_user: self.no_user || o.no_user,
            no_priv_exec: self.no_priv_exec || o.no_priv_exec,
        }
    }
}

const fn bit(pte: u64, n: u32) -> bool {
    pte >> n & 1 == 1
}

/// Mask of address bits [hi:lo].
const fn bits(hi: u32, lo: u32) -> u64 {
    ((u64::MAX) >> (63 - hi)) & !((1u64 << lo) - 1)
}

impl RefFormat {
    /// Height of the root table.
    pub fn top(&self) -> u32 {
        match *self {
            RefFormat::VtdSl { levels } | RefFormat::X86 { levels } => levels,
            RefFormat::ArmS1 { .. } => 4,
            RefFormat::ArmS2 { ias } => s2_start(ias).0,
        }
    }

    /// Number of concatenated root pages.
    pub fn root_pages(&self) -> usize {
        match *self {
            RefFormat::ArmS2 { ias } => s2_start(ias).1,
            _ => 1,
        }
    }

    /// Input addresses translated: [0, 2^bits).
    pub fn input_bits(&self) -> u32 {
        match *self {
            RefFormat::VtdSl { levels } | RefFormat::X86 { levels } => {
                PAGE_SHIFT + BITS_PER_LEVEL * levels
            }
            // [ARM] D8.2: T0SZ = 16 → 48-bit input range.
            RefFormat::ArmS1 { .. } => 48,
            RefFormat::ArmS2 { ias } => ias,
        }
    }

    /// Entries in the root table (all concatenated pages).
    fn root_entries(&self) -> u64 {
        let top = self.top();
        let span = entry_span(top);
        let covered = 1u64 << self.input_bits();
        covered.div_ceil(span)
    }

    fn index(&self, iova: u64, h: u32) -> u64 {
        let i = iova >> (PAGE_SHIFT + BITS_PER_LEVEL * (h - 1));
        if h == self.top() { i } else { i & 0x1ff }
    }

    /// Is the entry present? (non-present entries may hold anything else)
    pub fn present(&self, pte: u64) -> bool {
        match self {
            // [VT-d] 9.8: "an entry is not present if R (bit 0) and W (bit 1) are both 0".
            RefFormat::VtdSl { .. } => pte & 0b11 != 0,
            // [SDM] 4.5: bit 0 P.
            RefFormat::X86 { .. } => bit(pte, 0),
            // [ARM] D8.3: bit 0 valid.
            RefFormat::ArmS1 { .. } | RefFormat::ArmS2 { .. } => bit(pte, 0),
        }
    }

    fn decode(&self, pte: u64, h: u32) -> Entry {
        if !self.present(pte) {
            return Entry::Invalid;
        }
        match *self {
            RefFormat::VtdSl { levels } => {
                // [VT-d] 9.8: bit 7 PS in SL-PDPE (1 GiB) and SL-PDE (2 MiB);
                // reserved (0) in SL-PML4E/SL-PML5E; SL-PTE is always a leaf.
                let ps = bit(pte, 7);
                let hier = Hier {
                    no_read: !bit(pte, 0),  // [VT-d] 9.8 bit 0 R
                    no_write: !bit(pte, 1), // [VT-d] 9.8 bit 1 W
                    no_exec: !bit(pte, 2),  // [VT-d] 9.8 bit 2 X
                    ..Hier::default()
                };
                assert!(
                    !(ps && h > 3),
                    "VT-d: PS set in a height-{h} entry {pte:#x} (reserved) levels={levels}"
                );
                if h == 1 || ps {
                    // [VT-d] 9.8: address bits HAW-1:12 (51:12 at most); for a
                    // 2 MiB page bits 20:12 and for 1 GiB bits 29:12 are reserved.
                    let size = entry_span(h);
                    assert!(
                        pte & bits(51, 12) & (size - 1) == 0,
                        "VT-d: reserved address bits set in {size:#x} leaf {pte:#x}"
                    );
                    Entry::Leaf {
                        out: pte & bits(51, 12) & !(size - 1),
                        size,
                        attrs_of: vtd_attrs,
                    }
                } else {
                    Entry::Table {
                        next: pte & bits(51, 12),
                        hier,
                    }
                }
            }
            RefFormat::X86 { .. } => {
                // [SDM] Table 4-15..4-20: bit 7 PS in PDPTE (1 GiB) and PDE (2 MiB),
                // must be 0 in PML5E/PML4E; in a PTE bit 7 is PAT.
                let ps = bit(pte, 7);
                assert!(!(ps && h > 3), "x86: PS set in height-{h} entry {pte:#x}");
                let hier = Hier {
                    no_write: !bit(pte, 1), // [SDM] bit 1 R/W
                    no_user: !bit(pte, 2),  // [SDM] bit 2 U/S
                    no_exec: bit(pte, 63),  // [SDM] bit 63 XD (IA32_EFER.NXE = 1)
                    ..Hier::default()
                };
                if h == 1 || ps {
                    let size = entry_span(h);
                    // [SDM] Table 4-17/4-18: 1 GiB page address 51:30, bits 29:13
                    // reserved, bit 12 PAT; 2 MiB page address 51:21, 20:13 reserved.
                    if h > 1 {
                        assert!(
                            pte & bits(51, 13) & (size - 1) == 0,
                            "x86: reserved bits in {size:#x} leaf {pte:#x}"
                        );
                    }
                    Entry::Leaf {
                        out: pte & bits(51, 12) & !(size - 1),
                        size,
                        attrs_of: x86_attrs,
                    }
                } else {
                    Entry::Table {
                        next: pte & bits(51, 12),
                        hier,
                    }
                }
            }
            RefFormat::ArmS1 { .. } | RefFormat::ArmS2 { .. } => {
                let s1 = matches!(self, RefFormat::ArmS1 { .. });
                // [ARM] D8.3: bits[1:0] = 0b11 table (L0-L2) / page (L3);
                // 0b01 block (L1, L2 with 4 KiB granule); 0b01 at L0 or L3 is
                // reserved (faults) — the engine must never write it.
                let table_or_page = bit(pte, 1);
                if h == 1 {
                    assert!(
                        table_or_page,
                        "Arm: reserved 0b01 descriptor at L3: {pte:#x}"
                    );
                } else if !table_or_page {
                    assert!(h <= 3, "Arm: block descriptor at L0: {pte:#x}");
                }
                if h == 1 || !table_or_page {
                    let size = entry_span(h);
                    // [ARM] D8.3.2: OA[47:12] page, [47:21] L2 block, [47:30] L1
                    // block; lower OA bits of a block are RES0 (bit 16 nT aside).
                    assert!(
                        pte & bits(47, 12) & (size - 1) & !(1 << 16) == 0,
                        "Arm: RES0 address bits in {size:#x} block {pte:#x}"
                    );
                    Entry::Leaf {
                        out: pte & bits(47, 12) & !(size - 1),
                        size,
                        attrs_of: if s1 { arm_s1_attrs } else { arm_s2_attrs },
                    }
                } else {
                    // [ARM] D8.3.1 table descriptor: next-level address [47:12].
                    // Stage 1 hierarchical controls: APTable[1:0] bits 62:61,
                    // UXNTable bit 60, PXNTable bit 59 (D8.4.x). Stage 2 has none.
                    let hier = if s1 {
                        Hier {
                            no_write: bit(pte, 62),
                            no_user: bit(pte, 61),
                            no_exec: bit(pte, 60),
                            no_priv_exec: bit(pte, 59),
                            ..Hier::default()
                        }
                    } else {
                        Hier::default()
                    };
                    Entry::Table {
                        next: pte & bits(47, 12),
                        hier,
                    }
                }
            }
        }
    }

    fn check_table(&self, mem: &impl PhysMem, page: u64, what: &str) {
        assert!(
            page.is_multiple_of(PAGE) && mem.is_table_page(page),
            "{self:?}: {what} {page:#x} is not a live table page of the pool"
        );
    }

    /// Translate one input address, as the hardware would.
    pub fn walk(&self, mem: &impl PhysMem, root: u64, iova: u64) -> Option<Leaf> {
        if self.input_bits() < 64 && iova >> self.input_bits() != 0 {
            return None;
        }
        for p in 0..self.root_pages() as u64 {
            self.check_table(mem, root + p * PAGE, "root page");
        }
        // [ARM] D8.2: concatenated start-level tables must be aligned to their
        // total size.
        assert!(
            root.is_multiple_of(self.root_pages() as u64 * PAGE),
            "root {root:#x} not aligned to its {} concatenated pages",
            self.root_pages()
        );
        let mut table = root;
        let mut hier = Hier::default();
        let mut h = self.top();
        loop {
            let addr = table + self.index(iova, h) * 8;
            let pte = mem.read(addr);
            match self.decode(pte, h) {
                Entry::Invalid => return None,
                Entry::Table { next, hier: th } => {
                    assert!(h > 1);
                    self.check_table(mem, next, "next-level table");
                    hier = hier.and(th);
                    table = next;
                    h -= 1;
                }
                Entry::Leaf {
                    out,
                    size,
                    attrs_of,
                } => {
                    return Some(Leaf {
                        phys: out + (iova & (size - 1)),
                        size,
                        height: h,
                        pte,
                        pte_addr: addr,
                        attrs: attrs_of(pte, size, hier, self),
                    });
                }
            }
        }
    }

    /// Every leaf and table page reachable from `root`. Panics on a malformed
    /// table (reserved encodings, pointers outside live pool pages, a table
    /// page reached twice, present entries beyond the input range).
    pub fn scan(&self, mem: &impl PhysMem, root: u64) -> Scan {
        let mut out = Scan::default();
        for p in 0..self.root_pages() as u64 {
            self.check_table(mem, root + p * PAGE, "root page");
            out.tables.push(root + p * PAGE);
        }
        let n = self.root_entries();
        for i in 0..(self.root_pages() as u64 * 512) {
            let pte = mem.read(root + i * 8);
            if i >= n {
                assert!(
                    !self.present(pte),
                    "{self:?}: present root entry {i} = {pte:#x} beyond the input range"
                );
                continue;
            }
            self.scan_entry(
                mem,
                pte,
                self.top(),
                i * entry_span(self.top()),
                Hier::default(),
                &mut out,
            );
        }
        out.tables.sort_unstable();
        let len = out.tables.len();
        out.tables.dedup();
        assert_eq!(
            len,
            out.tables.len(),
            "{self:?}: a table page is reachable twice"
        );
        out.leaves.sort_by_key(|l| l.iova);
        out
    }

    fn scan_entry(
        &self,
        mem: &impl PhysMem,
        pte: u64,
        h: u32,
        iova: u64,
        hier: Hier,
        out: &mut Scan,
    ) {
        match self.decode(pte, h) {
            Entry::Invalid => {}
            Entry::Table { next, hier: th } => {
                self.check_table(mem, next, "next-level table");
                out.tables.push(next);
                let hier = hier.and(th);
                for i in 0..512u64 {
                    let pte = mem.read(next + i * 8);
                    self.scan_entry(mem, pte, h - 1, iova + i * entry_span(h - 1), hier, out);
                }
            }
            Entry::Leaf {
                out: o,
                size,
                attrs_of,
            } => out.leaves.push(LeafEntry {
                iova,
                out: o,
                size,
                pte,
                attrs: attrs_of(pte, size, hier, self),
            }),
        }
    }
}

/// [ARM] D8.2.x (VTCR_EL2.SL0 / T0SZ with 4 KiB granule): the start level is
/// the highest one needed to resolve `ias` bits; when that level would resolve
/// 4 bits or fewer, start one level lower with 2^bits concatenated tables
/// (at most 16), except that the walk never starts at level 3 (SL0 = 0b11
/// needs FEAT_TTST). Returns (height of the start table, root pages).
pub fn s2_start(ias: u32) -> (u32, usize) {
    assert!((25..=48).contains(&ias), "IPA size {ias} outside 25..=48");
    let va_bits = ias - PAGE_SHIFT;
    let levels = va_bits.div_ceil(BITS_PER_LEVEL);
    let top_bits = va_bits - BITS_PER_LEVEL * (levels - 1);
    // Height 2 is Arm level 2: the lowest allowed start level.
    if top_bits <= 4 && levels > 2 {
        (levels - 1, 1 << top_bits)
    } else {
        (levels, 1)
    }
}

fn vtd_attrs(pte: u64, _size: u64, hier: Hier, _: &RefFormat) -> Attrs {
    // [VT-d] 9.8 / 3.6: access rights are the AND over all levels of R, W, X.
    let mut a = Attrs::bare(
        bit(pte, 0) && !hier.no_read,
        bit(pte, 1) && !hier.no_write,
        bit(pte, 2) && !hier.no_exec,
    );
    // [VT-d] 9.8: bit 11 SNP (snoop behaviour) in leaf entries.
    a.snoop = Some(bit(pte, 11));
    a
}

fn x86_attrs(pte: u64, size: u64, hier: Hier, _: &RefFormat) -> Attrs {
    // [SDM] 4.6: writes need R/W = 1 at every level; user access needs U/S = 1
    // at every level; instruction fetch is refused if XD = 1 at any level.
    let mut a = Attrs::bare(
        true,
        bit(pte, 1) && !hier.no_write,
        !bit(pte, 63) && !hier.no_exec,
    );
    a.privileged = Some(!bit(pte, 2) || hier.no_user);
    // [SDM] Tables 4-18..4-20: bit 8 G in leaf entries.
    a.global = Some(bit(pte, 8));
    // [SDM] 4.9.2: PAT index = PAT:PCD:PWT; PAT is bit 7 in a PTE, bit 12 in
    // a 2 MiB / 1 GiB leaf; PCD bit 4, PWT bit 3.
    a.mem = Some(MemType::X86PatIndex(x86_pat_index(pte, size)));
    a
}

/// PAT index of an x86 leaf of the given size ([SDM] 4.9.2).
pub fn x86_pat_index(pte: u64, size: u64) -> u8 {
    let pat = if size == PAGE {
        bit(pte, 7)
    } else {
        bit(pte, 12)
    };
    ((pat as u8) << 2) | ((bit(pte, 4) as u8) << 1) | bit(pte, 3) as u8
}

fn arm_s1_attrs(pte: u64, _size: u64, hier: Hier, f: &RefFormat) -> Attrs {
    let RefFormat::ArmS1 {
        idx_wb,
        idx_nc,
        idx_dev,
    } = *f
    else {
        unreachable!()
    };
    // [ARM] D8.4: AP[2:1] = bits 7:6. AP[2] = 1 read-only; AP[1] = 1 EL0 access.
    // Reads at EL1 are always allowed for a valid entry. APTable[1] forbids
    // writes below, APTable[0] forbids EL0 access below.
    let ro = bit(pte, 7) || hier.no_write;
    let user = bit(pte, 6) && !hier.no_user;
    // [ARM] D8.4: PXN bit 53, UXN bit 54 (XN), PXNTable / UXNTable. "exec"
    // here means: executable at the privilege the page is accessible at, and
    // not executable at EL1 either (the engine sets both or neither).
    let uxn = bit(pte, 54) || hier.no_exec;
    let pxn = bit(pte, 53) || hier.no_priv_exec;
    let mut a = Attrs::bare(true, !ro, !uxn && !pxn);
    a.privileged = Some(!user);
    // [ARM] D8.3.2: nG bit 11.
    a.global = Some(!bit(pte, 11));
    // [ARM] D8.3.2: AttrIndx[2:0] bits 4:2, indexing MAIR.
    let idx = (pte >> 2 & 7) as u8;
    a.mem = Some(if idx == idx_wb {
        MemType::WriteBack
    } else if idx == idx_nc {
        MemType::NonCacheable
    } else if idx == idx_dev {
        MemType::Device
    } else {
        MemType::Other(idx)
    });
    // [ARM] D8.3.2: SH[1:0] bits 9:8; AF bit 10.
    a.shareability = Some((pte >> 8 & 3) as u8);
    a.access_flag = Some(bit(pte, 10));
    a
}

fn arm_s2_attrs(pte: u64, _size: u64, _hier: Hier, _: &RefFormat) -> Attrs {
    // [ARM] D8.4 stage 2: S2AP[1:0] bits 7:6: bit 6 read, bit 7 write.
    // XN[1:0] bits 54:53 (XN[0] only with FEAT_XNX): 0b00 executable.
    let mut a = Attrs::bare(bit(pte, 6), bit(pte, 7), pte >> 53 & 3 == 0);
    // [ARM] D8.6 stage 2 MemAttr[3:0] bits 5:2 (FEAT_S2FWB off):
    // 0b00dd Device (dd: 00 nGnRnE, 01 nGnRE, 10 nGRE, 11 GRE);
    // otherwise outer[3:2] / inner[1:0]: 01 NC, 10 WT, 11 WB.
    let m = (pte >> 2 & 0xf) as u8;
    a.mem = Some(match m {
        0b1111 => MemType::WriteBack,
        0b0101 => MemType::NonCacheable,
        0b0001 => MemType::Device,
        other => MemType::Other(other),
    });
    // [ARM] D8.3.2: SH[1:0] bits 9:8; AF bit 10.
    a.shareability = Some((pte >> 8 & 3) as u8);
    a.access_flag = Some(bit(pte, 10));
    a
}
