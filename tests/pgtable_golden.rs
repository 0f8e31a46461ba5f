//! Golden encodings: map one 4 KiB page, one 2 MiB and one 1 GiB block per
//! format and compare the raw entry words at every level with values written
//! out by hand from the specifications (not from the engine's constants).
//!
//! [VT-d] VT-d spec 9.8 (second-level paging entries); [SDM] Intel SDM vol. 3A
//! 4.5, tables 4-15..4-20; [ARM] Arm ARM DDI 0487 D8.3 (descriptors), D8.4
//! (AP, S2AP, XN), D8.6 (AttrIndx, MemAttr, SH).

mod common;

use common::TestHal;
use common::pool::PAGE;
use iommu::drivers::vtd::regs::LargePages;
use iommu::pgtable::{ArmS1, ArmS2, Format, MairIndices, PageTable, Prot, VtdSl, X86_64};
use iommu::{Iova, PhysAddr};

const R: Prot = Prot::READ;
const W: Prot = Prot::WRITE;
const X: Prot = Prot::EXEC;
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;
/// Address field of every format for the addresses used here (bits 47:12).
const ADDR: u64 = 0x0000_ffff_ffff_f000;

/// Bits hardware ignores in table (non-leaf) entries, where software may keep
/// its own data: [VT-d] 9.8 SL-PML5E..SL-PDE bits 61:52; [SDM] tables 4-15 ..
/// 4-18 bits 62:52, 11:8 and 6; [ARM] D8.3.1 table descriptor bits 58:51 and
/// 11:2.
const IGN_VTD: u64 = 0x3ff << 52;
const IGN_X86: u64 = 0x7ff << 52 | 0xf << 8 | 1 << 6;
const IGN_ARM: u64 = 0xff << 51 | 0x3ff << 2;

/// Raw entries from the root down to the leaf at height `leaf_h`, checking
/// that every table entry above is exactly `table_bits` plus the address of a
/// live pool page, apart from bits the hardware ignores. `top` is the root's
/// height; concatenated root pages are contiguous, so the root index is
/// simply iova >> shift.
fn path(hal: &TestHal, root: u64, top: u32, iova: u64, leaf_h: u32, tb: (u64, u64)) -> u64 {
    let (table_bits, ign) = tb;
    let mut table = root;
    let mut h = top;
    loop {
        let shift = 12 + 9 * (h - 1);
        let idx = if h == top {
            iova >> shift
        } else {
            (iova >> shift) & 0x1ff
        };
        let pte = hal.read_u64(table + idx * 8);
        if h == leaf_h {
            return pte;
        }
        assert_eq!(
            pte & !ADDR & !ign,
            table_bits,
            "table entry at height {h} for {iova:#x}: {pte:#x}"
        );
        table = pte & ADDR;
        assert!(
            hal.is_live(table),
            "table entry {pte:#x} points outside the pool"
        );
        h -= 1;
    }
}

fn table<F: Format>(f: F, hal: &TestHal) -> PageTable<F, &TestHal> {
    PageTable::new(f, hal).unwrap()
}

// ---------------------------------------------------------------- VT-d SL

/// [VT-d] 9.8: bit 0 R, bit 1 W, bit 2 X, bit 7 PS, bit 11 SNP.
const VR: u64 = 1 << 0;
const VW: u64 = 1 << 1;
const VX: u64 = 1 << 2;
const VPS: u64 = 1 << 7;
const VSNP: u64 = 1 << 11;

#[test]
fn vtd_sl_4_level_golden() {
    let hal = TestHal::new(64);
    let f = VtdSl::new(48, LargePages::SIZE_2M | LargePages::SIZE_1G)
        .unwrap()
        .with_snoop(true)
        .with_execute(true);
    assert_eq!(
        f.agaw(),
        2,
        "[VT-d] 9.3 context entry AW: 010b = 48-bit, 4-level"
    );
    let mut pt = table(f, &hal);
    let root = pt.root_phys().0;
    // Non-leaf entries: R|W, and X because execute is enabled ([VT-d] 9.8,
    // rights AND across levels).
    let tb = (VR | VW | VX, IGN_VTD);

    // 4 KiB: non-zero index at every level.
    let iova = (1u64 << 39) + 2 * G1 + 3 * M2 + 4 * PAGE;
    pt.map(
        Iova(iova),
        PhysAddr(0x1_2345_6000),
        PAGE,
        R | W | Prot::CACHE,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova, 1, tb),
        0x1_2345_6000 | VR | VW | VSNP
    );
    pt.map(Iova(iova + PAGE), PhysAddr(0x1_2345_7000), PAGE, R | X)
        .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova + PAGE, 1, tb),
        0x1_2345_7000 | VR | VX
    );
    // MMIO wins over CACHE: no snoop.
    pt.map(
        Iova(iova + 2 * PAGE),
        PhysAddr(0x1_2345_8000),
        PAGE,
        W | Prot::CACHE | Prot::MMIO,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova + 2 * PAGE, 1, tb),
        0x1_2345_8000 | VW
    );

    // 2 MiB: PS in the SL-PDE.
    pt.map(Iova(2 * M2), PhysAddr(0x2_0020_0000), M2, R)
        .unwrap();
    assert_eq!(path(&hal, root, 4, 2 * M2, 2, tb), 0x2_0020_0000 | VR | VPS);

    // 1 GiB: PS in the SL-PDPE.
    pt.map(Iova(3 * G1), PhysAddr(0x40_0000_0000), G1, R | W)
        .unwrap();
    assert_eq!(
        path(&hal, root, 4, 3 * G1, 3, tb),
        0x40_0000_0000 | VR | VW | VPS
    );
    assert_eq!(
        hal.counts().live_pages(),
        6,
        "root + L3/L2/L1 for the pages + L3/L2 for the blocks"
    );
}

#[test]
fn vtd_sl_3_and_5_level_golden() {
    let hal = TestHal::new(64);
    // 39-bit: the root is the SL-PDPT (height 3). No snoop, no execute: X and
    // SNP never set.
    let f = VtdSl::new(39, LargePages::SIZE_2M | LargePages::SIZE_1G).unwrap();
    assert_eq!(f.agaw(), 1);
    let mut pt = table(f, &hal);
    let iova = 5 * G1 + 6 * M2 + 7 * PAGE;
    pt.map(Iova(iova), PhysAddr(0x7000), PAGE, R | W | X | Prot::CACHE)
        .unwrap();
    assert_eq!(
        path(&hal, pt.root_phys().0, 3, iova, 1, (VR | VW, IGN_VTD)),
        0x7000 | VR | VW
    );
    pt.map(Iova(G1), PhysAddr(0x8000_0000), G1, R).unwrap();
    assert_eq!(
        path(&hal, pt.root_phys().0, 3, G1, 3, (0, 0)),
        0x8000_0000 | VR | VPS
    );
    drop(pt);

    // 57-bit, 2 MiB only: a 1 GiB-aligned GiB is mapped as 512 PDEs.
    let f = VtdSl::new(57, LargePages::SIZE_2M).unwrap();
    assert_eq!(f.agaw(), 3);
    let mut pt = table(f, &hal);
    let iova = (1u64 << 48) * 3 + G1;
    pt.map(Iova(iova), PhysAddr(0x80_0000_0000), G1, W).unwrap();
    for k in [0, 1, 511] {
        assert_eq!(
            path(
                &hal,
                pt.root_phys().0,
                5,
                iova + k * M2,
                2,
                (VR | VW, IGN_VTD)
            ),
            (0x80_0000_0000 + k * M2) | VW | VPS
        );
    }
    // No large pages at all: 4 KiB entries only.
    drop(pt);
    let mut pt = table(VtdSl::new(48, LargePages::empty()).unwrap(), &hal);
    pt.map(Iova(0), PhysAddr(0), M2, R).unwrap();
    assert_eq!(
        path(&hal, pt.root_phys().0, 4, M2 - PAGE, 1, (VR | VW, IGN_VTD)),
        (M2 - PAGE) | VR
    );
}

// ---------------------------------------------------------------- x86-64

/// [SDM] 4.5: P 0, R/W 1, U/S 2, PWT 3, PCD 4, A 5, D 6, PS 7, G 8, PAT 12
/// (large pages), XD 63.
const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const XD: u64 = 1 << 63;

#[test]
fn x86_64_golden() {
    let hal = TestHal::new(64);
    let mut pt = table(X86_64::new(false).with_1g_pages(true), &hal);
    let root = pt.root_phys().0;
    // Tables grant everything (P, R/W, U/S, no XD); the engine presets A.
    let tb = (P | RW | US | A, IGN_X86);
    let iova = (1u64 << 39) + 2 * G1 + 3 * M2 + 4 * PAGE;
    // User, writable, executable, WB (PAT index 0), non-global. D preset on
    // writable leaves, A always.
    pt.map(
        Iova(iova),
        PhysAddr(0x1_2345_6000),
        PAGE,
        R | W | X | Prot::CACHE,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova, 1, tb),
        0x1_2345_6000 | P | RW | US | A | D
    );
    // Supervisor, read-only, global, UC (PCD|PWT: PAT index 3), XD.
    pt.map(
        Iova(iova + PAGE),
        PhysAddr(0x1_2345_7000),
        PAGE,
        R | Prot::PRIV | Prot::GLOBAL | Prot::MMIO,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova + PAGE, 1, tb),
        0x1_2345_7000 | P | A | PCD | PWT | G | XD
    );
    // Normal non-cacheable: PCD only (PAT index 2, UC- in the default PAT).
    pt.map(Iova(iova + 2 * PAGE), PhysAddr(0x1_2345_8000), PAGE, R | W)
        .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova + 2 * PAGE, 1, tb),
        0x1_2345_8000 | P | RW | US | A | D | PCD | XD
    );
    // 2 MiB: PS in the PDE, PAT (bit 12) clear.
    pt.map(
        Iova(2 * M2),
        PhysAddr(0x2_0020_0000),
        M2,
        R | W | Prot::CACHE,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, 2 * M2, 2, tb),
        0x2_0020_0000 | P | RW | US | A | D | PS | XD
    );
    // 1 GiB: PS in the PDPTE.
    pt.map(
        Iova(3 * G1),
        PhysAddr(0x40_0000_0000),
        G1,
        R | X | Prot::CACHE | Prot::GLOBAL,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, 3 * G1, 3, tb),
        0x40_0000_0000 | P | US | A | PS | G
    );
}

#[test]
fn x86_64_5_level_and_no_1g_golden() {
    let hal = TestHal::new(64);
    let mut pt = table(X86_64::new(true), &hal);
    let iova = (1u64 << 48) * 5 + G1;
    pt.map(Iova(iova), PhysAddr(0x4000_0000), G1, R | W | Prot::CACHE)
        .unwrap();
    // Without 1 GiB pages a GiB becomes 512 2 MiB PDEs.
    assert_eq!(
        path(
            &hal,
            pt.root_phys().0,
            5,
            iova + 511 * M2,
            2,
            (P | RW | US | A, IGN_X86)
        ),
        (0x4000_0000 + 511 * M2) | P | RW | US | A | D | PS | XD
    );
}

// ---------------------------------------------------------------- Arm S1

/// [ARM] D8.3.2: valid 0, table/page 1, AttrIndx 4:2, AP[2:1] 7:6, SH 9:8,
/// AF 10, nG 11, PXN 53, UXN 54.
const AV: u64 = 1 << 0;
const AT: u64 = 1 << 1;
const AP_EL0: u64 = 1 << 6;
const AP_RO: u64 = 1 << 7;
const SH_IS: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

fn attr(i: u64) -> u64 {
    i << 2
}

#[test]
fn arm_s1_golden() {
    let hal = TestHal::new(64);
    let mair = MairIndices::default();
    assert_eq!((mair.normal_nc, mair.normal, mair.device), (0, 1, 2));
    let f = ArmS1::new(mair, 48).unwrap();
    assert_eq!(f.t0sz(), 16, "[ARM] D8.2: 48-bit input");
    // [ARM] D19 MAIR_EL1: 0xff normal WB RW-allocate, 0x44 normal NC, 0x04
    // Device-nGnRE; slot n is bits 8n+7:8n.
    assert_eq!(f.mair(), 0x04_ff_44);
    let mut pt = table(f, &hal);
    let root = pt.root_phys().0;
    // Table descriptors: 0b11, no APTable/XNTable/PXNTable/NSTable.
    let tb = (AV | AT, IGN_ARM);
    let iova = (1u64 << 39) + 2 * G1 + 3 * M2 + 4 * PAGE;
    pt.map(
        Iova(iova),
        PhysAddr(0x1_2345_6000),
        PAGE,
        R | W | X | Prot::CACHE,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova, 1, tb),
        0x1_2345_6000 | AV | AT | attr(1) | AP_EL0 | SH_IS | AF | NG
    );
    // Device: never executable; SH left 0 (ignored for Device memory).
    pt.map(
        Iova(iova + PAGE),
        PhysAddr(0x1_2345_7000),
        PAGE,
        R | X | Prot::PRIV | Prot::GLOBAL | Prot::MMIO,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, iova + PAGE, 1, tb),
        0x1_2345_7000 | AV | AT | attr(2) | AP_RO | AF | PXN | UXN
    );
    // 2 MiB block at L2: bits[1:0] = 0b01.
    pt.map(
        Iova(2 * M2),
        PhysAddr(0x2_0020_0000),
        M2,
        R | W | Prot::CACHE,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 4, 2 * M2, 2, tb),
        0x2_0020_0000 | AV | attr(1) | AP_EL0 | SH_IS | AF | NG | PXN | UXN
    );
    // 1 GiB block at L1, normal non-cacheable, read-only.
    pt.map(Iova(3 * G1), PhysAddr(0x40_0000_0000), G1, R)
        .unwrap();
    assert_eq!(
        path(&hal, root, 4, 3 * G1, 3, tb),
        0x40_0000_0000 | AV | attr(0) | AP_EL0 | AP_RO | SH_IS | AF | NG | PXN | UXN
    );
}

#[test]
fn arm_s1_custom_mair_golden() {
    let hal = TestHal::new(16);
    let mair = MairIndices {
        normal: 3,
        normal_nc: 5,
        device: 7,
    };
    let f = ArmS1::new(mair, 40).unwrap();
    assert_eq!(f.mair(), 0x04 << 56 | 0x44 << 40 | 0xff << 24);
    let mut pt = table(f, &hal);
    pt.map(
        Iova(0),
        PhysAddr(0x8000_0000),
        PAGE,
        R | W | Prot::CACHE | X,
    )
    .unwrap();
    pt.map(Iova(PAGE), PhysAddr(0x8000_1000), PAGE, R | W)
        .unwrap();
    pt.map(
        Iova(2 * PAGE),
        PhysAddr(0x8000_2000),
        PAGE,
        R | W | Prot::MMIO,
    )
    .unwrap();
    let root = pt.root_phys().0;
    assert_eq!(
        path(&hal, root, 4, 0, 1, (AV | AT, IGN_ARM)) & (7 << 2),
        attr(3)
    );
    assert_eq!(
        path(&hal, root, 4, PAGE, 1, (AV | AT, IGN_ARM)) & (7 << 2),
        attr(5)
    );
    assert_eq!(
        path(&hal, root, 4, 2 * PAGE, 1, (AV | AT, IGN_ARM)) & (7 << 2),
        attr(7)
    );
    assert!(
        ArmS1::new(
            MairIndices {
                normal: 8,
                normal_nc: 0,
                device: 1
            },
            48
        )
        .is_err()
    );
}

// ---------------------------------------------------------------- Arm S2

/// [ARM] D8.3.2 stage 2: MemAttr[3:0] bits 5:2, S2AP bits 7:6 (6 read,
/// 7 write), SH 9:8, AF 10, XN bit 54.
const S2_WB: u64 = 0b1111 << 2;
const S2_NC: u64 = 0b0101 << 2;
const S2_DEV: u64 = 0b0001 << 2;
const S2R: u64 = 1 << 6;
const S2W: u64 = 1 << 7;
const S2XN: u64 = 1 << 54;

#[test]
fn arm_s2_ste_fields() {
    // (ias, T0SZ, SL0, concatenated) per [ARM] D8.2 / SMMUv3 STE.S2T0SZ/S2SL0:
    // SL0 with 4 KiB granule: 0 = start at L2, 1 = L1, 2 = L0.
    for (ias, t0sz, sl0, start, concat) in [
        (48, 16, 2, 0, 1),
        (44, 20, 2, 0, 1),
        (42, 22, 1, 1, 8),
        (40, 24, 1, 1, 2),
        (39, 25, 1, 1, 1),
        (36, 28, 1, 1, 1),
        (34, 30, 0, 2, 16),
        (32, 32, 0, 2, 4),
        (30, 34, 0, 2, 1),
    ] {
        let f = ArmS2::new(ias, 48).unwrap();
        assert_eq!(
            (f.t0sz(), f.sl0(), f.start_level(), f.concatenated()),
            (t0sz, sl0, start, concat),
            "ias {ias}"
        );
    }
    assert!(ArmS2::new(24, 48).is_err());
    assert!(ArmS2::new(49, 48).is_err());
}

#[test]
fn arm_s2_golden_40_bit() {
    let hal = TestHal::new(64);
    let mut pt = table(ArmS2::new(40, 48).unwrap(), &hal);
    let root = pt.root_phys().0;
    assert_eq!(root % (2 * PAGE), 0, "2 concatenated root pages, aligned");
    assert_eq!(hal.sizes_asked(), vec![2]);
    let tb = (AV | AT, IGN_ARM);
    // IPA bit 39 selects the second root page: L1 index 512 + 2.
    let ipa = (1u64 << 39) + 2 * G1 + 3 * M2 + 4 * PAGE;
    pt.map(
        Iova(ipa),
        PhysAddr(0x1_2345_6000),
        PAGE,
        R | W | X | Prot::CACHE,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 3, ipa, 1, tb),
        0x1_2345_6000 | AV | AT | S2_WB | S2R | S2W | SH_IS | AF
    );
    assert_ne!(
        hal.read_u64(root + PAGE + 2 * 8),
        0,
        "entry in the 2nd root page"
    );
    // Device-nGnRE, read-only, never executable.
    pt.map(
        Iova(ipa + PAGE),
        PhysAddr(0x1_2345_7000),
        PAGE,
        R | X | Prot::MMIO,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 3, ipa + PAGE, 1, tb),
        0x1_2345_7000 | AV | AT | S2_DEV | S2R | AF | S2XN
    );
    // 2 MiB block, write-only, NC.
    pt.map(Iova(2 * M2), PhysAddr(0x2_0020_0000), M2, W)
        .unwrap();
    assert_eq!(
        path(&hal, root, 3, 2 * M2, 2, tb),
        0x2_0020_0000 | AV | S2_NC | S2W | SH_IS | AF | S2XN
    );
    // 1 GiB block in the concatenated root (start level L1).
    let ipa = (1u64 << 39) + G1;
    pt.map(
        Iova(ipa),
        PhysAddr(0x40_0000_0000),
        G1,
        R | W | X | Prot::CACHE,
    )
    .unwrap();
    assert_eq!(
        path(&hal, root, 3, ipa, 3, tb),
        0x40_0000_0000 | AV | S2_WB | S2R | S2W | SH_IS | AF
    );
    assert_eq!(
        hal.read_u64(root + PAGE + 8),
        0x40_0000_0000 | AV | S2_WB | S2R | S2W | SH_IS | AF
    );
}

#[test]
fn arm_s2_golden_32_and_48_bit() {
    let hal = TestHal::new(64);
    // 32-bit: start at L2 with 4 concatenated pages; 2 MiB blocks in the root,
    // no 1 GiB blocks.
    let mut pt = table(ArmS2::new(32, 48).unwrap(), &hal);
    let root = pt.root_phys().0;
    assert_eq!(root % (4 * PAGE), 0);
    pt.map(Iova(3 * G1), PhysAddr(0x8000_0000), G1, R | W | Prot::CACHE)
        .unwrap();
    // Root index 3*512 + 7 (4th page).
    let e = hal.read_u64(root + (3 * 512 + 7) * 8);
    assert_eq!(
        e,
        (0x8000_0000 + 7 * M2) | AV | S2_WB | S2R | S2W | SH_IS | AF | S2XN
    );
    assert_eq!(
        hal.counts().live_pages(),
        4,
        "no table below the root for blocks"
    );
    assert!(
        pt.map(Iova(4 * G1), PhysAddr(0), PAGE, R).is_err(),
        "IPA beyond 32 bits"
    );
    drop(pt);
    // 48-bit: start at L0, single root page.
    let mut pt = table(ArmS2::new(48, 48).unwrap(), &hal);
    let ipa = (0x1ffu64 << 39) + 511 * G1 + 511 * M2 + 511 * PAGE;
    pt.map(Iova(ipa), PhysAddr(0xffff_ffff_f000), PAGE, R)
        .unwrap();
    assert_eq!(
        path(&hal, pt.root_phys().0, 4, ipa, 1, (AV | AT, IGN_ARM)),
        0xffff_ffff_f000 | AV | AT | S2_NC | S2R | SH_IS | AF | S2XN
    );
}

#[test]
fn vtd_sl_execute_needs_x_in_table_entries() {
    // [VT-d] 9.8: in SL-PML5E..SL-PDE, bit 2 X = 0 means "instruction fetches
    // are not allowed from the region this entry controls" (when execute
    // requests are enabled). Rights combine across levels, so with execute
    // enabled the table entries must grant X as they grant R and W.
    let hal = TestHal::new(16);
    let f = VtdSl::new(48, LargePages::SIZE_2M)
        .unwrap()
        .with_execute(true);
    let mut pt = table(f, &hal);
    pt.map(Iova(0), PhysAddr(0x10_0000), PAGE, R | X).unwrap();
    assert_eq!(
        path(&hal, pt.root_phys().0, 4, 0, 1, (VR | VW | VX, IGN_VTD)),
        0x10_0000 | VR | VX
    );
}
