//! The SMMUv3 architecture as the model reads it (Arm IHI 0070): register
//! offsets and fields, and the identification registers a test gives a
//! model SMMU. Written from the specification, independent of the driver's
//! `regs.rs`.

/// Bytes of the register block: page 0 and page 1.
pub const BLOCK: usize = 0x2_0000;

/// Register offsets (page 1 at +64 KiB).
pub mod reg {
    pub const IDR0: usize = 0x00;
    pub const IDR1: usize = 0x04;
    pub const IDR2: usize = 0x08;
    pub const IDR3: usize = 0x0c;
    pub const IDR4: usize = 0x10;
    pub const IDR5: usize = 0x14;
    pub const IIDR: usize = 0x18;
    pub const AIDR: usize = 0x1c;
    pub const CR0: usize = 0x20;
    pub const CR0ACK: usize = 0x24;
    pub const CR1: usize = 0x28;
    pub const CR2: usize = 0x2c;
    pub const GBPA: usize = 0x44;
    pub const GERROR: usize = 0x60;
    pub const GERRORN: usize = 0x64;
    pub const STRTAB_BASE: usize = 0x80;
    pub const STRTAB_BASE_CFG: usize = 0x88;
    pub const CMDQ_BASE: usize = 0x90;
    pub const CMDQ_PROD: usize = 0x98;
    pub const CMDQ_CONS: usize = 0x9c;
    pub const EVENTQ_BASE: usize = 0xa0;
    pub const PRIQ_BASE: usize = 0xc0;
    pub const EVENTQ_PROD: usize = 0x1_00a8;
    pub const EVENTQ_CONS: usize = 0x1_00ac;
    pub const PRIQ_PROD: usize = 0x1_00c8;
    pub const PRIQ_CONS: usize = 0x1_00cc;
}

/// SMMU_CR0 / CR0ACK.
pub mod cr0 {
    pub const SMMUEN: u32 = 1 << 0;
    pub const PRIQEN: u32 = 1 << 1;
    pub const EVENTQEN: u32 = 1 << 2;
    pub const CMDQEN: u32 = 1 << 3;
    pub const ATSCHK: u32 = 1 << 4;
    pub const VMW: u32 = 7 << 6;
    pub const DEFINED: u32 = SMMUEN | PRIQEN | EVENTQEN | CMDQEN | ATSCHK | VMW;

    pub fn name(bit: u32) -> &'static str {
        match bit {
            SMMUEN => "SMMUEN",
            PRIQEN => "PRIQEN",
            EVENTQEN => "EVENTQEN",
            CMDQEN => "CMDQEN",
            ATSCHK => "ATSCHK",
            _ => "VMW",
        }
    }
}

/// SMMU_GBPA.
pub mod gbpa {
    pub const ABORT: u32 = 1 << 20;
    pub const UPDATE: u32 = 1 << 31;
}

/// SMMU_GERROR / GERRORN.
pub mod gerror {
    pub const CMDQ_ERR: u32 = 1 << 0;
    pub const EVTQ_ABT_ERR: u32 = 1 << 2;
    pub const PRIQ_ABT_ERR: u32 = 1 << 3;
    pub const DEFINED: u32 = 0x1fd;
}

/// CMDQ_CONS.ERR codes (bits 30:24).
pub mod cerror {
    pub const SHIFT: u32 = 24;
    pub const ILL: u32 = 1;
    pub const ABT: u32 = 2;
    pub const ATC_INV_SYNC: u32 = 3;
}

/// PROD.OVFLG / CONS.OVACKFLG of the event and PRI queues.
pub const OVFLG: u32 = 1 << 31;

/// An address size in bits from its encoding (IDR5.OAS, CD.IPS,
/// STE.S2PS): 0 = 32 bits ... 5 = 48 bits, 6 = 52 bits.
pub fn pa_bits(enc: u32) -> u32 {
    match enc {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

/// Bits `hi:lo` of `v`.
pub fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    let width = hi - lo + 1;
    let m = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    (v >> lo) & m
}

/// Bit `b` of `v`.
pub fn bit(v: u64, b: u32) -> bool {
    (v >> b) & 1 != 0
}

/// A mask of bits `hi:lo`.
pub const fn mask(hi: u32, lo: u32) -> u64 {
    let width = hi - lo + 1;
    let m = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    m << lo
}

/// IDR0.STALL_MODEL values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallModel {
    StallAndTerminate = 0,
    TerminateOnly = 1,
    StallForced = 2,
}

/// What a model SMMU identifies as (SMMU_IDR0-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuConfig {
    pub idr: [u32; 6],
}

fn put(v: u32, hi: u32, lo: u32, x: u32) -> u32 {
    let m = mask(hi, lo) as u32;
    (v & !m) | ((x << lo) & m)
}

impl SmmuConfig {
    /// QEMU's SMMUv3 (virt, `arm-smmuv3`): stage 1 and 2 (nested-capable),
    /// two-level stream table, 16-bit ASIDs and VMIDs, AArch64 tables,
    /// coherent, no stall, terminate model; SIDSIZE 16, no substreams,
    /// queues of 2^19; range invalidation; 4K/16K/64K granules. The OAS is
    /// 48 bits where QEMU's is 44: the model's memory is the host's heap,
    /// whose addresses reach 2^47.
    pub fn qemu() -> Self {
        SmmuConfig {
            idr: [0x0d44_101b, 0x0273_0010, 0, 1 << 10, 0, 0x75],
        }
    }

    fn idr0_bit(mut self, b: u32, on: bool) -> Self {
        self.idr[0] = (self.idr[0] & !(1 << b)) | (u32::from(on) << b);
        self
    }

    pub fn stage1(self, on: bool) -> Self {
        self.idr0_bit(1, on)
    }

    pub fn stage2(self, on: bool) -> Self {
        self.idr0_bit(0, on)
    }

    pub fn s1_only(self) -> Self {
        self.stage1(true).stage2(false)
    }

    pub fn s2_only(self) -> Self {
        self.stage1(false).stage2(true)
    }

    /// IDR0.TTF: 1 AArch32, 2 AArch64, 3 both.
    pub fn ttf(mut self, v: u32) -> Self {
        self.idr[0] = put(self.idr[0], 3, 2, v);
        self
    }

    pub fn ats(self, on: bool) -> Self {
        self.idr0_bit(10, on)
    }

    pub fn asid16(self, on: bool) -> Self {
        self.idr0_bit(12, on)
    }

    pub fn pri(self, on: bool) -> Self {
        self.idr0_bit(16, on)
    }

    pub fn vmid16(self, on: bool) -> Self {
        self.idr0_bit(18, on)
    }

    pub fn cd2l(self, on: bool) -> Self {
        self.idr0_bit(19, on)
    }

    pub fn stall_model(mut self, m: StallModel) -> Self {
        self.idr[0] = put(self.idr[0], 25, 24, m as u32);
        self
    }

    /// IDR0.ST_LEVEL: two-level stream tables.
    pub fn two_level(mut self, on: bool) -> Self {
        self.idr[0] = put(self.idr[0], 28, 27, on.into());
        self
    }

    pub fn sid_bits(mut self, n: u32) -> Self {
        self.idr[1] = put(self.idr[1], 5, 0, n);
        self
    }

    pub fn ssid_bits(mut self, n: u32) -> Self {
        self.idr[1] = put(self.idr[1], 10, 6, n);
        self
    }

    pub fn priq_log2(mut self, n: u32) -> Self {
        self.idr[1] = put(self.idr[1], 15, 11, n);
        self
    }

    pub fn evtq_log2(mut self, n: u32) -> Self {
        self.idr[1] = put(self.idr[1], 20, 16, n);
        self
    }

    pub fn cmdq_log2(mut self, n: u32) -> Self {
        self.idr[1] = put(self.idr[1], 25, 21, n);
        self
    }

    pub fn ril(mut self, on: bool) -> Self {
        self.idr[3] = (self.idr[3] & !(1 << 10)) | (u32::from(on) << 10);
        self
    }

    /// IDR5.OAS encoding (0 = 32 bits ... 5 = 48 bits).
    pub fn oas(mut self, enc: u32) -> Self {
        self.idr[5] = put(self.idr[5], 2, 0, enc);
        self
    }

    pub fn gran4k(mut self, on: bool) -> Self {
        self.idr[5] = (self.idr[5] & !(1 << 4)) | (u32::from(on) << 4);
        self
    }

    fn f(&self, r: usize, hi: u32, lo: u32) -> u32 {
        bits(self.idr[r].into(), hi, lo) as u32
    }

    pub fn s2p(&self) -> bool {
        self.f(0, 0, 0) != 0
    }

    pub fn s1p(&self) -> bool {
        self.f(0, 1, 1) != 0
    }

    pub fn aarch64(&self) -> bool {
        self.f(0, 3, 2) & 2 != 0
    }

    pub fn aarch32(&self) -> bool {
        self.f(0, 3, 2) & 1 != 0
    }

    pub fn has_ats(&self) -> bool {
        self.f(0, 10, 10) != 0
    }

    pub fn has_asid16(&self) -> bool {
        self.f(0, 12, 12) != 0
    }

    pub fn has_pri(&self) -> bool {
        self.f(0, 16, 16) != 0
    }

    pub fn has_vmid16(&self) -> bool {
        self.f(0, 18, 18) != 0
    }

    pub fn has_cd2l(&self) -> bool {
        self.f(0, 19, 19) != 0
    }

    /// IDR0.TTENDIAN: 0 mixed, 2 little, 3 big.
    pub fn ttendian(&self) -> u32 {
        self.f(0, 22, 21)
    }

    pub fn stall(&self) -> u32 {
        self.f(0, 25, 24)
    }

    pub fn has_two_level(&self) -> bool {
        self.f(0, 28, 27) == 1
    }

    pub fn sids(&self) -> u32 {
        self.f(1, 5, 0)
    }

    pub fn ssids(&self) -> u32 {
        self.f(1, 10, 6)
    }

    pub fn priqs(&self) -> u32 {
        self.f(1, 15, 11)
    }

    pub fn eventqs(&self) -> u32 {
        self.f(1, 20, 16)
    }

    pub fn cmdqs(&self) -> u32 {
        self.f(1, 25, 21)
    }

    pub fn has_ril(&self) -> bool {
        self.f(3, 10, 10) != 0
    }

    pub fn oas_bits(&self) -> u32 {
        pa_bits(self.f(5, 2, 0))
    }

    /// Intermediate address size: the OAS (40 bits at least with AArch32
    /// tables).
    pub fn ias_bits(&self) -> u32 {
        if self.aarch32() {
            self.oas_bits().max(40)
        } else {
            self.oas_bits()
        }
    }

    pub fn has_gran4k(&self) -> bool {
        self.f(5, 4, 4) != 0
    }

    pub fn has_gran16k(&self) -> bool {
        self.f(5, 5, 5) != 0
    }

    pub fn has_gran64k(&self) -> bool {
        self.f(5, 6, 6) != 0
    }
}

/// Event types (7.3, "Event records").
pub mod evt {
    pub const F_UUT: u8 = 0x01;
    pub const C_BAD_STREAMID: u8 = 0x02;
    pub const F_STE_FETCH: u8 = 0x03;
    pub const C_BAD_STE: u8 = 0x04;
    pub const F_STREAM_DISABLED: u8 = 0x06;
    pub const C_BAD_SUBSTREAMID: u8 = 0x08;
    pub const F_CD_FETCH: u8 = 0x09;
    pub const C_BAD_CD: u8 = 0x0a;
    pub const F_WALK_EABT: u8 = 0x0b;
    pub const F_TRANSLATION: u8 = 0x10;
    pub const F_ADDR_SIZE: u8 = 0x11;
    pub const F_ACCESS: u8 = 0x12;
    pub const F_PERMISSION: u8 = 0x13;

    pub fn name(id: u8) -> &'static str {
        match id {
            F_UUT => "F_UUT",
            C_BAD_STREAMID => "C_BAD_STREAMID",
            F_STE_FETCH => "F_STE_FETCH",
            C_BAD_STE => "C_BAD_STE",
            F_STREAM_DISABLED => "F_STREAM_DISABLED",
            C_BAD_SUBSTREAMID => "C_BAD_SUBSTREAMID",
            F_CD_FETCH => "F_CD_FETCH",
            C_BAD_CD => "C_BAD_CD",
            F_WALK_EABT => "F_WALK_EABT",
            F_TRANSLATION => "F_TRANSLATION",
            F_ADDR_SIZE => "F_ADDR_SIZE",
            F_ACCESS => "F_ACCESS",
            F_PERMISSION => "F_PERMISSION",
            _ => "another event",
        }
    }
}
