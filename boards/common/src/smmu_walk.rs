//! An independent reader of what an SMMUv3 walks, written from the
//! architecture's tables with its own bit positions: the stream table (from
//! STRTAB_BASE / STRTAB_BASE_CFG), STEs, CDs and AArch64 stage-1 / stage-2
//! tables, so that the suites check the driver's entries against a second
//! reading rather than against themselves.

fn read64(addr: u64) -> u64 {
    // SAFETY: the suites pass the SMMU's registers and tables it walks:
    // identity-mapped device memory or RAM of the page pool.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn read32(addr: u64) -> u32 {
    // SAFETY: as in `read64`.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// How the stream table is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Layout {
    /// Linear, 2^n STEs.
    Linear(u32),
    /// Two-level, 2^n StreamIDs, level-2 tables of 2^split STEs.
    TwoLevel(u32, u32),
}

/// The stream table's layout, from the registers at `regs`.
pub fn layout(regs: u64) -> Layout {
    let cfg = read32(regs + 0x88);
    let log2 = cfg & 0x3f;
    if (cfg >> 16) & 3 == 1 {
        Layout::TwoLevel(log2, (cfg >> 6) & 0x1f)
    } else {
        Layout::Linear(log2)
    }
}

/// An STE, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Ste {
    /// Valid.
    pub v: bool,
    /// Config field (0 abort, 4 bypass, 5 stage 1, 6 stage 2, 7 nested).
    pub config: u8,
    /// S1ContextPtr.
    pub cd_table: u64,
    /// S1CDMax.
    pub cd_max: u8,
    /// S2VMID.
    pub vmid: u16,
    /// S2T0SZ.
    pub s2_t0sz: u8,
    /// S2SL0.
    pub s2_sl0: u8,
    /// S2AA64.
    pub s2_aa64: bool,
    /// S2TTB.
    pub s2_ttb: u64,
}

/// The STE of `sid`, or `None` where the table has none (a two-level
/// table's level-2 table not made, or `sid` beyond the table).
pub fn ste(regs: u64, sid: u32) -> Option<Ste> {
    let base = read64(regs + 0x80) & 0x000f_ffff_ffff_ffc0;
    let addr = match layout(regs) {
        Layout::Linear(n) => {
            if u64::from(sid) >> n != 0 {
                return None;
            }
            base + u64::from(sid) * 64
        }
        Layout::TwoLevel(n, split) => {
            if u64::from(sid) >> n != 0 {
                return None;
            }
            let d = read64(base + u64::from(sid >> split) * 8);
            if d & 0x1f == 0 {
                return None;
            }
            (d & 0x000f_ffff_ffff_ffc0) + u64::from(sid & ((1 << split) - 1)) * 64
        }
    };
    let w: [u64; 4] = core::array::from_fn(|i| read64(addr + 8 * i as u64));
    Some(Ste {
        v: w[0] & 1 != 0,
        config: bits(w[0], 3, 1) as u8,
        cd_table: w[0] & 0x000f_ffff_ffff_ffc0,
        cd_max: bits(w[0], 63, 59) as u8,
        vmid: bits(w[2], 15, 0) as u16,
        s2_t0sz: bits(w[2], 37, 32) as u8,
        s2_sl0: bits(w[2], 39, 38) as u8,
        s2_aa64: bits(w[2], 51, 51) != 0,
        s2_ttb: w[3] & 0x000f_ffff_ffff_fff0,
    })
}

/// A CD, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Cd {
    /// Valid.
    pub v: bool,
    /// T0SZ.
    pub t0sz: u8,
    /// AArch64.
    pub aa64: bool,
    /// ASID.
    pub asid: u16,
    /// TTB0.
    pub ttb0: u64,
}

/// CD 0 of a linear CD table at `table`.
pub fn cd0(table: u64) -> Cd {
    let (w0, w1) = (read64(table), read64(table + 8));
    Cd {
        v: bits(w0, 31, 31) != 0,
        t0sz: bits(w0, 5, 0) as u8,
        aa64: bits(w0, 41, 41) != 0,
        asid: bits(w0, 63, 48) as u16,
        ttb0: w1 & 0x000f_ffff_ffff_fff0,
    }
}

/// Where `ia` lands through the AArch64 4 KiB table at `root` walked from
/// `start_level` (0..=2), whose root resolves `root_bits` of input:
/// (output address, leaf size), or `None`.
pub fn translate(root: u64, ia: u64, start_level: u32, root_bits: u32) -> Option<(u64, u64)> {
    let mut table = root;
    for level in start_level..4 {
        let shift = 12 + 9 * (3 - level);
        let width = if level == start_level { root_bits } else { 9 };
        let index = (ia >> shift) & ((1 << width) - 1);
        let d = read64(table + index * 8);
        if d & 1 == 0 {
            return None;
        }
        let table_or_page = d & 2 != 0;
        if level == 3 || !table_or_page {
            if level == 3 && !table_or_page {
                return None;
            }
            let size = 1u64 << shift;
            return Some(((d & ADDR & !(size - 1)) | (ia & (size - 1)), size));
        }
        table = d & ADDR;
    }
    None
}
