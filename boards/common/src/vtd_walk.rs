//! An independent reader of what a VT-d unit walks, written from the
//! specification's tables (chapter 9) with its own bit positions: the
//! suites read the driver's entries back through it, so that a field the
//! driver puts in the wrong place shows up as a mismatch here rather than
//! agreeing with itself.

/// RTADDR_REG offset.
const RTADDR: usize = 0x20;

/// How a device's requests without PASID (or at a PASID) are translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Entry {
    /// Not present somewhere on the way (which structure).
    Absent(&'static str),
    /// Legacy context entry.
    Legacy {
        /// Translation type (0 second level, 1 with ATS, 2 pass-through).
        tt: u8,
        /// Address width field.
        aw: u8,
        /// Domain ID.
        did: u16,
        /// Second-level root.
        root: u64,
    },
    /// Scalable-mode PASID-table entry.
    Pasid {
        /// PASID-granular translation type (1 first level, 2 second level,
        /// 3 nested, 4 pass-through).
        pgtt: u8,
        /// Address width field.
        aw: u8,
        /// Domain ID.
        did: u16,
        /// Second-level root.
        sl_root: u64,
        /// First-level root.
        fl_root: u64,
    },
}

fn read64(addr: u64) -> u64 {
    // SAFETY: the suites pass table addresses the unit walks: identity-mapped
    // RAM (the page pool) or the unit's register block.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The entry the unit at `regs` uses for `sid` (at `pasid` in scalable
/// mode; `None` = the context entry's RID_PASID).
pub fn entry(regs: u64, sid: u16, pasid: Option<u32>) -> Entry {
    let rtaddr = read64(regs + RTADDR as u64);
    let scalable = bits(rtaddr, 11, 10) == 1;
    let root = rtaddr & ADDR_MASK;
    let (bus, devfn) = (u64::from(sid >> 8), u64::from(sid & 0xff));
    let re = [read64(root + bus * 16), read64(root + bus * 16 + 8)];
    if !scalable {
        if re[0] & 1 == 0 {
            return Entry::Absent("root entry");
        }
        let ce = (re[0] & ADDR_MASK) + devfn * 16;
        let (lo, hi) = (read64(ce), read64(ce + 8));
        if lo & 1 == 0 {
            return Entry::Absent("context entry");
        }
        return Entry::Legacy {
            tt: bits(lo, 3, 2) as u8,
            aw: bits(hi, 2, 0) as u8,
            did: bits(hi, 23, 8) as u16,
            root: lo & ADDR_MASK,
        };
    }
    let half = if devfn >= 128 { re[1] } else { re[0] };
    if half & 1 == 0 {
        return Entry::Absent("scalable root entry");
    }
    let ce = (half & ADDR_MASK) + (devfn % 128) * 32;
    let (c0, c1) = (read64(ce), read64(ce + 8));
    if c0 & 1 == 0 {
        return Entry::Absent("scalable context entry");
    }
    let pasid = u64::from(pasid.unwrap_or(bits(c1, 19, 0) as u32));
    let dir_entries = 1u64 << (bits(c0, 11, 9) + 7);
    if pasid >> 6 >= dir_entries {
        return Entry::Absent("PASID beyond the directory");
    }
    let de = read64((c0 & ADDR_MASK) + (pasid >> 6) * 8);
    if de & 1 == 0 {
        return Entry::Absent("PASID directory entry");
    }
    let pe = (de & ADDR_MASK) + (pasid % 64) * 64;
    let (p0, p1, p2) = (read64(pe), read64(pe + 8), read64(pe + 16));
    if p0 & 1 == 0 {
        return Entry::Absent("PASID-table entry");
    }
    Entry::Pasid {
        pgtt: bits(p0, 8, 6) as u8,
        aw: bits(p0, 4, 2) as u8,
        did: bits(p1, 15, 0) as u16,
        sl_root: p0 & ADDR_MASK,
        fl_root: p2 & ADDR_MASK,
    }
}

/// Where `iova` lands through the table at `root`: (physical address,
/// leaf size), or `None` if not mapped. `first_level`: x86-64 paging
/// (present bit 0) rather than second level (read bit 0, write bit 1);
/// `levels`: 3 or 4 (second level), 4 (first level).
pub fn translate(root: u64, iova: u64, levels: u32, first_level: bool) -> Option<(u64, u64)> {
    let mut table = root;
    for level in (0..levels).rev() {
        let shift = 12 + 9 * level;
        let pte = read64(table + ((iova >> shift) & 511) * 8);
        let present = if first_level {
            pte & 1 != 0
        } else {
            pte & 3 != 0
        };
        if !present {
            return None;
        }
        let leaf = level == 0 || pte & (1 << 7) != 0;
        if leaf {
            let size = 1u64 << shift;
            return Some(((pte & ADDR_MASK & !(size - 1)) | (iova & (size - 1)), size));
        }
        table = pte & ADDR_MASK;
    }
    None
}
