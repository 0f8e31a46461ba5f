//! Stream Table Entries and Context Descriptors decoded from the
//! specification's layouts (5.2 "Stream Table Entry", 5.4 "Context
//! Descriptor"), the checks that make one ILLEGAL (C_BAD_STE / C_BAD_CD),
//! and which bits the SMMU uses in each configuration (13.5 and the field
//! descriptions): what an entry writer may change without the SMMU seeing
//! a mix of old and new.

use super::spec::{SmmuConfig, bit, bits, mask, pa_bits};

/// STE.Config values.
pub mod config {
    pub const ABORT: u8 = 0b000;
    pub const BYPASS: u8 = 0b100;
    pub const S1: u8 = 0b101;
    pub const S2: u8 = 0b110;
    pub const NESTED: u8 = 0b111;
}

/// STE.S1DSS values.
pub mod dss {
    pub const TERMINATE: u8 = 0;
    pub const BYPASS: u8 = 1;
    pub const SSID0: u8 = 2;
}

/// An STE, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ste {
    pub raw: [u64; 8],
    pub valid: bool,
    pub config: u8,
    pub s1fmt: u8,
    pub s1_ctx_ptr: u64,
    pub s1_cd_max: u8,
    pub s1dss: u8,
    pub s1cir: u8,
    pub s1cor: u8,
    pub s1csh: u8,
    pub s1stalld: bool,
    pub eats: u8,
    pub strw: u8,
    pub shcfg: u8,
    pub s2vmid: u16,
    pub s2t0sz: u8,
    pub s2sl0: u8,
    pub s2ir0: u8,
    pub s2or0: u8,
    pub s2sh0: u8,
    pub s2tg: u8,
    pub s2ps: u8,
    pub s2aa64: bool,
    pub s2endi: bool,
    pub s2affd: bool,
    pub s2ptw: bool,
    pub s2s: bool,
    pub s2r: bool,
    pub s2ttb: u64,
}

impl Ste {
    pub fn decode(w: [u64; 8]) -> Self {
        Ste {
            raw: w,
            valid: bit(w[0], 0),
            config: bits(w[0], 3, 1) as u8,
            s1fmt: bits(w[0], 5, 4) as u8,
            s1_ctx_ptr: w[0] & mask(51, 6),
            s1_cd_max: bits(w[0], 63, 59) as u8,
            s1dss: bits(w[1], 1, 0) as u8,
            s1cir: bits(w[1], 3, 2) as u8,
            s1cor: bits(w[1], 5, 4) as u8,
            s1csh: bits(w[1], 7, 6) as u8,
            s1stalld: bit(w[1], 27),
            eats: bits(w[1], 29, 28) as u8,
            strw: bits(w[1], 31, 30) as u8,
            shcfg: bits(w[1], 45, 44) as u8,
            s2vmid: bits(w[2], 15, 0) as u16,
            s2t0sz: bits(w[2], 37, 32) as u8,
            s2sl0: bits(w[2], 39, 38) as u8,
            s2ir0: bits(w[2], 41, 40) as u8,
            s2or0: bits(w[2], 43, 42) as u8,
            s2sh0: bits(w[2], 45, 44) as u8,
            s2tg: bits(w[2], 47, 46) as u8,
            s2ps: bits(w[2], 50, 48) as u8,
            s2aa64: bit(w[2], 51),
            s2endi: bit(w[2], 52),
            s2affd: bit(w[2], 53),
            s2ptw: bit(w[2], 54),
            s2s: bit(w[2], 57),
            s2r: bit(w[2], 58),
            s2ttb: w[3] & mask(51, 4),
        }
    }

    /// Stage 1 is enabled (Config 0b101 / 0b111).
    pub fn s1(&self) -> bool {
        self.config & 0b101 == 0b101
    }

    /// Stage 2 is enabled (Config 0b110 / 0b111).
    pub fn s2(&self) -> bool {
        self.config & 0b110 == 0b110
    }

    /// Why the SMMU would refuse this valid-or-not STE (C_BAD_STE), if it
    /// would.
    pub fn illegal(&self, id: &SmmuConfig) -> Option<String> {
        if !self.valid {
            return Some("V = 0".into());
        }
        let c = self.config;
        if c != config::ABORT && c & 0b100 == 0 {
            return Some(format!("reserved Config {c:#05b}"));
        }
        if self.s1() && !id.s1p() {
            return Some("stage 1 on an SMMU without S1P".into());
        }
        if self.s2() && !id.s2p() {
            return Some("stage 2 on an SMMU without S2P".into());
        }
        if c == config::ABORT || c == config::BYPASS {
            return None;
        }
        if self.eats == 0b11 {
            return Some("EATS 0b11".into());
        }
        if self.s1() {
            if u32::from(self.s1_cd_max) > id.ssids() {
                return Some(format!(
                    "S1CDMax {} above SSIDSIZE {}",
                    self.s1_cd_max,
                    id.ssids()
                ));
            }
            if self.s1_cd_max > 0 {
                match self.s1fmt {
                    0 => {}
                    1 | 2 if id.has_cd2l() => {}
                    1 | 2 => return Some("two-level CD table without CD2L".into()),
                    _ => return Some("S1Fmt 0b11".into()),
                }
                if self.s1dss == 0b11 {
                    return Some("S1DSS 0b11".into());
                }
            }
            if self.s1stalld && id.stall() != 0 {
                return Some("S1STALLD set with STALL_MODEL != 0b00".into());
            }
            if self.strw != 0 {
                return Some(format!("STRW {:#04b} (no EL2 regime)", self.strw));
            }
        }
        if self.s2() {
            if !self.s2aa64 && !id.aarch32() {
                return Some("S2AA64 = 0 on an AArch64-only SMMU".into());
            }
            match self.s2tg {
                0 if id.has_gran4k() => {}
                1 if id.has_gran64k() => {}
                2 if id.has_gran16k() => {}
                g => return Some(format!("S2TG {g} not supported")),
            }
            if self.s2tg == 0 {
                if let Err(why) = s2_geometry(self.s2t0sz, self.s2sl0, id.ias_bits()) {
                    return Some(why);
                }
            }
            if self.s2endi && id.ttendian() == 2 {
                return Some("S2ENDI big-endian on a little-endian-only SMMU".into());
            }
        }
        None
    }

    /// The bits the SMMU uses in this entry.
    pub fn used(w: &[u64; 8]) -> [u64; 8] {
        let e = Ste::decode(*w);
        let mut u = [0u64; 8];
        u[0] = 1;
        if !e.valid {
            return u;
        }
        u[0] |= mask(3, 1);
        if e.s1() {
            u[0] |= mask(5, 4) | mask(51, 6) | mask(63, 59);
            // S1DSS, S1CIR/COR/CSH, S1STALLD, EATS, STRW.
            u[1] |= mask(7, 0) | (1 << 27) | mask(29, 28) | mask(31, 30);
            u[2] |= mask(15, 0);
            if e.s1dss == dss::BYPASS {
                u[1] |= mask(45, 44);
            }
        }
        if e.s2() {
            u[1] |= mask(29, 28) | mask(45, 44);
            // S2VMID, VTCR fields, S2AA64..S2R.
            u[2] |= mask(15, 0) | mask(50, 32) | mask(54, 51) | mask(58, 57);
            u[3] |= mask(51, 4);
        }
        if e.config == config::BYPASS {
            // The attribute and permission overrides.
            u[1] |= mask(51, 32);
        }
        u
    }
}

/// Check a stage-2 input size and starting level (4 KiB granule): the
/// starting level (S2SL0 0: level 2, 1: level 1, 2: level 0) must resolve at
/// least one bit and at most 16 concatenated tables (no concatenation at
/// level 0); the input size 25..=IAS bits. Returns (start level, bits
/// resolved at it).
pub fn s2_geometry(t0sz: u8, sl0: u8, ias: u32) -> Result<(u32, u32), String> {
    let ia = 64u32.saturating_sub(t0sz.into());
    if !(25..=ias.min(48)).contains(&ia) {
        return Err(format!("S2T0SZ {t0sz}: {ia}-bit IPA outside 25..={ias}"));
    }
    let level = match sl0 {
        0 => 2,
        1 => 1,
        2 => 0,
        _ => return Err("S2SL0 0b11".into()),
    };
    let below = 12 + 9 * (3 - level);
    if ia <= below {
        return Err(format!("S2SL0 {sl0} (level {level}) above a {ia}-bit IPA"));
    }
    let r = ia - below;
    let max = if level == 0 { 9 } else { 13 };
    if r > max {
        return Err(format!(
            "S2SL0 {sl0} with a {ia}-bit IPA needs more than 16 concatenated tables"
        ));
    }
    Ok((level, r))
}

/// A CD, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cd {
    pub raw: [u64; 8],
    pub t0sz: u8,
    pub tg0: u8,
    pub ir0: u8,
    pub or0: u8,
    pub sh0: u8,
    pub epd0: bool,
    pub endi: bool,
    pub epd1: bool,
    pub valid: bool,
    pub ips: u8,
    pub affd: bool,
    pub aa64: bool,
    pub ha: bool,
    pub hd: bool,
    pub s: bool,
    pub r: bool,
    pub a: bool,
    pub aset: bool,
    pub asid: u16,
    pub ttb0: u64,
    pub ttb1: u64,
    pub mair: u64,
}

impl Cd {
    pub fn decode(w: [u64; 8]) -> Self {
        Cd {
            raw: w,
            t0sz: bits(w[0], 5, 0) as u8,
            tg0: bits(w[0], 7, 6) as u8,
            ir0: bits(w[0], 9, 8) as u8,
            or0: bits(w[0], 11, 10) as u8,
            sh0: bits(w[0], 13, 12) as u8,
            epd0: bit(w[0], 14),
            endi: bit(w[0], 15),
            epd1: bit(w[0], 30),
            valid: bit(w[0], 31),
            ips: bits(w[0], 34, 32) as u8,
            affd: bit(w[0], 35),
            aa64: bit(w[0], 41),
            hd: bit(w[0], 42),
            ha: bit(w[0], 43),
            s: bit(w[0], 44),
            r: bit(w[0], 45),
            a: bit(w[0], 46),
            aset: bit(w[0], 47),
            asid: bits(w[0], 63, 48) as u16,
            ttb0: w[1] & mask(51, 4),
            ttb1: w[2] & mask(51, 4),
            mair: w[3],
        }
    }

    /// Output size in bits (IPS, at most the SMMU's OAS).
    pub fn ips_bits(&self, id: &SmmuConfig) -> u32 {
        pa_bits(self.ips.into()).min(id.oas_bits())
    }

    /// Why the SMMU would refuse this CD (C_BAD_CD), if it would.
    pub fn illegal(&self, id: &SmmuConfig) -> Option<String> {
        if !self.valid {
            return Some("V = 0".into());
        }
        if !self.aa64 && !id.aarch32() {
            return Some("AA64 = 0 on an AArch64-only SMMU".into());
        }
        if !self.epd0 {
            match self.tg0 {
                0 if id.has_gran4k() => {}
                1 if id.has_gran64k() => {}
                2 if id.has_gran16k() => {}
                g => return Some(format!("TG0 {g} not supported")),
            }
            if self.tg0 == 0 && !(16..=39).contains(&self.t0sz) {
                return Some(format!("T0SZ {} out of range", self.t0sz));
            }
        }
        if self.ips == 7 {
            return Some("IPS 0b111".into());
        }
        if self.endi && id.ttendian() == 2 {
            return Some("ENDI big-endian on a little-endian-only SMMU".into());
        }
        match id.stall() {
            1 if self.s => return Some("S set on an SMMU without stalls".into()),
            2 if !self.s => return Some("S clear where stalls are forced".into()),
            _ => {}
        }
        None
    }

    /// The bits the SMMU uses in this CD.
    pub fn used(w: &[u64; 8]) -> [u64; 8] {
        let c = Cd::decode(*w);
        let mut u = [0u64; 8];
        if !c.valid {
            u[0] = 1 << 31;
            return u;
        }
        u[0] = u64::MAX;
        u[1] = mask(51, 4);
        if !c.epd1 {
            u[2] = mask(51, 4);
        }
        u[3] = u64::MAX;
        u
    }
}

/// A level-1 stream table descriptor: (SPAN, L2Ptr).
pub fn l1std(d: u64) -> (u8, u64) {
    (bits(d, 4, 0) as u8, d & mask(51, 6))
}

/// A level-1 CD descriptor: (V, L2Ptr).
pub fn l1cd(d: u64) -> (bool, u64) {
    (bit(d, 0), d & mask(51, 12))
}
