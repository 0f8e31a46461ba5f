//! VT-d register offsets and bit positions as the specification (rev 4.x,
//! chapter 11) gives them, written here independently of the driver's
//! `regs.rs`, and the identification registers of the units the tests build.

/// Register offsets (table 11-1).
pub mod reg {
    pub const VER: usize = 0x00;
    pub const CAP: usize = 0x08;
    pub const ECAP: usize = 0x10;
    pub const GCMD: usize = 0x18;
    pub const GSTS: usize = 0x1c;
    pub const RTADDR: usize = 0x20;
    pub const FSTS: usize = 0x34;
    pub const IQH: usize = 0x80;
    pub const IQT: usize = 0x88;
    pub const IQA: usize = 0x90;
    pub const PQH: usize = 0xc0;
    pub const PQT: usize = 0xc8;
    pub const PQA: usize = 0xd0;
    pub const PRS: usize = 0xdc;
}

/// GCMD / GSTS bits (11.4.4).
pub mod gcmd {
    pub const TE: u32 = 1 << 31;
    pub const SRTP: u32 = 1 << 30;
    pub const SFL: u32 = 1 << 29;
    pub const EAFL: u32 = 1 << 28;
    pub const WBF: u32 = 1 << 27;
    pub const QIE: u32 = 1 << 26;
    pub const IRE: u32 = 1 << 25;
    pub const SIRTP: u32 = 1 << 24;
    pub const CFI: u32 = 1 << 23;
    /// Commands that stay on (their status bit follows the command bit).
    pub const PERSISTENT: u32 = TE | EAFL | QIE | IRE | CFI;
    /// One-shot commands (a 1 starts the operation).
    pub const ONE_SHOT: u32 = SRTP | SFL | WBF | SIRTP;
    /// Bits 22:0 are reserved.
    pub const RESERVED: u32 = (1 << 23) - 1;

    pub fn name(bit: u32) -> &'static str {
        match bit {
            TE => "TE",
            SRTP => "SRTP",
            SFL => "SFL",
            EAFL => "EAFL",
            WBF => "WBF",
            QIE => "QIE",
            IRE => "IRE",
            SIRTP => "SIRTP",
            CFI => "CFI",
            _ => "reserved",
        }
    }
}

/// FSTS bits (11.4.9.1).
pub mod fsts {
    pub const PFO: u32 = 1 << 0;
    pub const PPF: u32 = 1 << 1;
    pub const AFO: u32 = 1 << 2;
    pub const APF: u32 = 1 << 3;
    pub const IQE: u32 = 1 << 4;
    pub const ICE: u32 = 1 << 5;
    pub const ITE: u32 = 1 << 6;
    /// Write-1-to-clear bits.
    pub const W1C: u32 = PFO | AFO | APF | IQE | ICE | ITE;
    pub const FRI_SHIFT: u32 = 8;
}

/// PRS bits.
pub mod prs {
    pub const PPR: u32 = 1 << 0;
    pub const PRO: u32 = 1 << 1;
}

/// RTADDR: translation table mode, bits 11:10.
pub const RTADDR_TTM_SHIFT: u32 = 10;
/// IQA: descriptor width (256-bit), bit 11.
pub const IQA_DW: u64 = 1 << 11;

/// CAP_REG fields (11.4.2): (lowest bit, width).
pub mod cap {
    pub const ND: (u32, u32) = (0, 3);
    pub const CM: (u32, u32) = (7, 1);
    pub const SAGAW: (u32, u32) = (8, 5);
    pub const MGAW: (u32, u32) = (16, 6);
    pub const FRO: (u32, u32) = (24, 10);
    pub const SLLPS: (u32, u32) = (34, 4);
    pub const PSI: (u32, u32) = (39, 1);
    pub const NFR: (u32, u32) = (40, 8);
    pub const MAMV: (u32, u32) = (48, 6);
    pub const FL1GP: (u32, u32) = (56, 1);
    pub const FL5LP: (u32, u32) = (60, 1);
}

/// ECAP_REG fields (11.4.3).
pub mod ecap {
    pub const C: (u32, u32) = (0, 1);
    pub const QI: (u32, u32) = (1, 1);
    pub const DT: (u32, u32) = (2, 1);
    pub const PT: (u32, u32) = (6, 1);
    pub const NEST: (u32, u32) = (26, 1);
    pub const PRS: (u32, u32) = (29, 1);
    pub const SRS: (u32, u32) = (31, 1);
    pub const PSS: (u32, u32) = (35, 5);
    pub const PASID: (u32, u32) = (40, 1);
    pub const PDS: (u32, u32) = (42, 1);
    pub const SMTS: (u32, u32) = (43, 1);
    pub const SLTS: (u32, u32) = (46, 1);
    pub const FLTS: (u32, u32) = (47, 1);
}

pub fn field(v: u64, (lo, width): (u32, u32)) -> u64 {
    (v >> lo) & ((1u64 << width) - 1)
}

pub fn with_field(v: u64, (lo, width): (u32, u32), x: u64) -> u64 {
    let m = ((1u64 << width) - 1) << lo;
    (v & !m) | ((x << lo) & m)
}

pub fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

pub fn bit(v: u64, b: u32) -> bool {
    (v >> b) & 1 != 0
}

/// QEMU's intel-iommu CAP (docs: 0x00d2008c222f0606): ND 6, SAGAW 39/48,
/// MGAW 48, FRO 0x220, one fault record, SLLPS 2M/1G, PSI, MAMV 18.
pub const QEMU_CAP: u64 = 0x00d2_008c_222f_0606;
/// QEMU's ECAP (0xf00f4a): QI, IR, PT, IRO 0xf, MHMV 0xf.
pub const QEMU_ECAP: u64 = 0x00f0_0f4a;

/// The identification registers of one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitConfig {
    pub ver: u32,
    pub cap: u64,
    pub ecap: u64,
}

impl UnitConfig {
    /// QEMU's defaults: legacy mode only.
    pub fn legacy() -> Self {
        UnitConfig {
            ver: 0x10,
            cap: QEMU_CAP,
            ecap: QEMU_ECAP,
        }
    }

    /// Scalable mode with second- and first-level translation, 20-bit
    /// PASIDs, nesting, page requests (with drain), device TLBs and
    /// pass-through.
    pub fn scalable() -> Self {
        UnitConfig {
            ver: 0x30,
            ..Self::legacy()
        }
        .ecap_on(ecap::SMTS)
        .ecap_on(ecap::SLTS)
        .ecap_on(ecap::FLTS)
        .ecap_on(ecap::PASID)
        .ecap_set(ecap::PSS, 19)
        .ecap_on(ecap::NEST)
        .ecap_on(ecap::PRS)
        .ecap_on(ecap::PDS)
        .ecap_on(ecap::DT)
    }

    pub fn cap_set(mut self, f: (u32, u32), x: u64) -> Self {
        self.cap = with_field(self.cap, f, x);
        self
    }

    pub fn ecap_set(mut self, f: (u32, u32), x: u64) -> Self {
        self.ecap = with_field(self.ecap, f, x);
        self
    }

    pub fn cap_on(self, f: (u32, u32)) -> Self {
        self.cap_set(f, 1)
    }

    pub fn cap_off(self, f: (u32, u32)) -> Self {
        self.cap_set(f, 0)
    }

    pub fn ecap_on(self, f: (u32, u32)) -> Self {
        self.ecap_set(f, 1)
    }

    pub fn ecap_off(self, f: (u32, u32)) -> Self {
        self.ecap_set(f, 0)
    }

    pub fn cap(&self, f: (u32, u32)) -> u64 {
        field(self.cap, f)
    }

    pub fn ecap(&self, f: (u32, u32)) -> u64 {
        field(self.ecap, f)
    }

    pub fn has_cap(&self, f: (u32, u32)) -> bool {
        self.cap(f) != 0
    }

    pub fn has_ecap(&self, f: (u32, u32)) -> bool {
        self.ecap(f) != 0
    }

    /// Byte offset of the first fault recording register.
    pub fn fro(&self) -> usize {
        self.cap(cap::FRO) as usize * 16
    }

    /// Number of fault recording registers.
    pub fn records(&self) -> usize {
        self.cap(cap::NFR) as usize + 1
    }

    /// Widths (39, 48, 57) the unit walks second-level tables at.
    pub fn sagaw_widths(&self) -> Vec<u32> {
        let s = self.cap(cap::SAGAW);
        [(1, 39), (2, 48), (3, 57)]
            .into_iter()
            .filter(|(b, _)| s & (1 << b) != 0)
            .map(|(_, w)| w)
            .collect()
    }

    /// MGAW in bits.
    pub fn mgaw(&self) -> u32 {
        self.cap(cap::MGAW) as u32 + 1
    }

    /// Domain IDs the unit supports.
    pub fn domains(&self) -> u32 {
        1 << (4 + 2 * self.cap(cap::ND) as u32)
    }
}
