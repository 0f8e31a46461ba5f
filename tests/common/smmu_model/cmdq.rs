//! Commands as the model's command queue decodes them (4.1-4.7, "Commands"):
//! the opcode, every field at its specification position, and what makes
//! one illegal (CERROR_ILL): an unknown opcode, a reserved field set, a
//! command for a feature the SMMU does not have.

use super::spec::{SmmuConfig, bit, bits, mask};

/// TLBI address and range fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbiAddr {
    pub addr: u64,
    pub leaf: bool,
    pub tg: u8,
    pub num: u8,
    pub scale: u8,
    pub ttl: u8,
}

impl TlbiAddr {
    /// The input range the command names: one address (TG = 0), or NUM + 1
    /// blocks of 2^SCALE granules.
    pub fn range(&self) -> (u64, u64) {
        if self.tg == 0 {
            return (self.addr, self.addr + 1);
        }
        let granule = 4096u64 << (2 * (u32::from(self.tg) - 1));
        let len = (u64::from(self.num) + 1) * (granule << self.scale);
        (self.addr, self.addr.saturating_add(len))
    }

    /// Pages of 4 KiB the range covers (TG = 1), or 1.
    pub fn pages(&self) -> u64 {
        let (s, e) = self.range();
        (e - s).div_ceil(4096)
    }
}

/// A decoded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    PrefetchConfig {
        sid: u32,
    },
    PrefetchAddr {
        sid: u32,
    },
    CfgiSte {
        sid: u32,
        leaf: bool,
    },
    /// CFGI_STE_RANGE; `range` 31 is CFGI_ALL.
    CfgiSteRange {
        sid: u32,
        range: u8,
    },
    CfgiCd {
        sid: u32,
        ssid: u32,
        leaf: bool,
    },
    CfgiCdAll {
        sid: u32,
    },
    TlbiNhAll {
        vmid: u16,
    },
    TlbiNhAsid {
        vmid: u16,
        asid: u16,
    },
    TlbiNhVa {
        vmid: u16,
        asid: u16,
        a: TlbiAddr,
    },
    TlbiNhVaa {
        vmid: u16,
        a: TlbiAddr,
    },
    TlbiS12Vmall {
        vmid: u16,
    },
    TlbiS2Ipa {
        vmid: u16,
        a: TlbiAddr,
    },
    TlbiNsnhAll,
    AtcInv {
        sid: u32,
        ssid: Option<u32>,
        global: bool,
        addr: u64,
        size: u8,
    },
    PriResp {
        sid: u32,
        ssid: Option<u32>,
        grpid: u16,
        resp: u8,
    },
    /// RESUME: Ac (retry) and Ab (abort when terminated).
    Resume {
        sid: u32,
        stag: u16,
        retry: bool,
        abort: bool,
    },
    StallTerm {
        sid: u32,
    },
    Sync {
        cs: u8,
    },
}

impl Cmd {
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::PrefetchConfig { .. } => "PREFETCH_CONFIG",
            Cmd::PrefetchAddr { .. } => "PREFETCH_ADDR",
            Cmd::CfgiSte { .. } => "CFGI_STE",
            Cmd::CfgiSteRange { range: 31, .. } => "CFGI_ALL",
            Cmd::CfgiSteRange { .. } => "CFGI_STE_RANGE",
            Cmd::CfgiCd { .. } => "CFGI_CD",
            Cmd::CfgiCdAll { .. } => "CFGI_CD_ALL",
            Cmd::TlbiNhAll { .. } => "TLBI_NH_ALL",
            Cmd::TlbiNhAsid { .. } => "TLBI_NH_ASID",
            Cmd::TlbiNhVa { .. } => "TLBI_NH_VA",
            Cmd::TlbiNhVaa { .. } => "TLBI_NH_VAA",
            Cmd::TlbiS12Vmall { .. } => "TLBI_S12_VMALL",
            Cmd::TlbiS2Ipa { .. } => "TLBI_S2_IPA",
            Cmd::TlbiNsnhAll => "TLBI_NSNH_ALL",
            Cmd::AtcInv { .. } => "ATC_INV",
            Cmd::PriResp { .. } => "PRI_RESP",
            Cmd::Resume { .. } => "RESUME",
            Cmd::StallTerm { .. } => "STALL_TERM",
            Cmd::Sync { .. } => "CMD_SYNC",
        }
    }

    pub fn is_sync(&self) -> bool {
        matches!(self, Cmd::Sync { .. })
    }

    pub fn is_tlbi(&self) -> bool {
        self.name().starts_with("TLBI")
    }

    pub fn is_cfgi(&self) -> bool {
        self.name().starts_with("CFGI")
    }
}

/// The opcode's defined fields: (word 0 mask, word 1 mask).
fn defined(op: u8) -> Option<(u64, u64)> {
    const OP: u64 = mask(7, 0);
    const SID: u64 = mask(63, 32);
    const SSID: u64 = mask(31, 12) | (1 << 11);
    const VMID: u64 = mask(47, 32);
    const ASID: u64 = mask(63, 48);
    const RANGE0: u64 = mask(16, 12) | mask(24, 20);
    const RANGE1: u64 = 1 | mask(9, 8) | mask(11, 10) | mask(63, 12);
    Some(match op {
        0x01 => (OP | SSID | SID, 0),
        0x02 => (OP | SSID | SID, mask(4, 0) | mask(63, 12)),
        0x03 => (OP | SID, 1),
        0x04 => (OP | SID, mask(4, 0)),
        0x05 => (OP | mask(31, 12) | SID, 1),
        0x06 => (OP | SID, 0),
        0x10 => (OP | VMID, 0),
        0x11 => (OP | VMID | ASID, 0),
        0x12 => (OP | RANGE0 | VMID | ASID, RANGE1),
        0x13 => (OP | RANGE0 | VMID, RANGE1),
        0x28 => (OP | VMID, 0),
        0x2a => (
            OP | RANGE0 | VMID,
            1 | mask(9, 8) | mask(11, 10) | mask(51, 12),
        ),
        0x30 => (OP, 0),
        0x40 => (OP | (1 << 9) | SSID | SID, mask(5, 0) | mask(63, 12)),
        0x41 => (OP | SSID | SID, mask(8, 0) | mask(13, 12)),
        0x44 => (OP | (1 << 12) | (1 << 13) | SID, mask(15, 0)),
        0x45 => (OP | SID, 0),
        0x46 => (
            OP | mask(13, 12) | mask(23, 22) | mask(27, 24) | SID,
            mask(51, 2),
        ),
        _ => return None,
    })
}

fn tlbi_addr(w: [u64; 2]) -> TlbiAddr {
    TlbiAddr {
        addr: w[1] & mask(63, 12),
        leaf: bit(w[1], 0),
        tg: bits(w[1], 11, 10) as u8,
        num: bits(w[0], 16, 12) as u8,
        scale: bits(w[0], 24, 20) as u8,
        ttl: bits(w[1], 9, 8) as u8,
    }
}

/// Decode a command; `Err` names why the SMMU refuses it (CERROR_ILL).
pub fn decode(w: [u64; 2], id: &SmmuConfig) -> Result<Cmd, String> {
    let op = bits(w[0], 7, 0) as u8;
    let (m0, m1) = defined(op).ok_or_else(|| format!("unknown opcode {op:#04x}"))?;
    if w[0] & !m0 != 0 || w[1] & !m1 != 0 {
        return Err(format!(
            "opcode {op:#04x}: reserved bits {:#x} / {:#x}",
            w[0] & !m0,
            w[1] & !m1
        ));
    }
    let sid = bits(w[0], 63, 32) as u32;
    let ssv = bit(w[0], 11);
    let ssid = bits(w[0], 31, 12) as u32;
    let vmid = bits(w[0], 47, 32) as u16;
    let asid = bits(w[0], 63, 48) as u16;
    let ranged = matches!(op, 0x12 | 0x13 | 0x2a);
    if ranged {
        let a = tlbi_addr(w);
        if !id.has_ril() && (a.tg != 0 || a.num != 0 || a.scale != 0 || a.ttl != 0) {
            return Err("range fields without IDR3.RIL".into());
        }
    }
    let cmd = match op {
        0x01 => Cmd::PrefetchConfig { sid },
        0x02 => Cmd::PrefetchAddr { sid },
        0x03 => Cmd::CfgiSte {
            sid,
            leaf: bit(w[1], 0),
        },
        0x04 => Cmd::CfgiSteRange {
            sid,
            range: bits(w[1], 4, 0) as u8,
        },
        0x05 => Cmd::CfgiCd {
            sid,
            ssid,
            leaf: bit(w[1], 0),
        },
        0x06 => Cmd::CfgiCdAll { sid },
        0x10 => Cmd::TlbiNhAll { vmid },
        0x11 => Cmd::TlbiNhAsid { vmid, asid },
        0x12 => Cmd::TlbiNhVa {
            vmid,
            asid,
            a: tlbi_addr(w),
        },
        0x13 => Cmd::TlbiNhVaa {
            vmid,
            a: tlbi_addr(w),
        },
        0x28 | 0x2a if !id.s2p() => return Err("stage-2 TLBI without S2P".into()),
        0x28 => Cmd::TlbiS12Vmall { vmid },
        0x2a => Cmd::TlbiS2Ipa {
            vmid,
            a: tlbi_addr(w),
        },
        0x30 => Cmd::TlbiNsnhAll,
        0x40 if !id.has_ats() => return Err("ATC_INV without IDR0.ATS".into()),
        0x40 => Cmd::AtcInv {
            sid,
            ssid: ssv.then_some(ssid),
            global: bit(w[0], 9),
            addr: w[1] & mask(63, 12),
            size: bits(w[1], 5, 0) as u8,
        },
        0x41 if !id.has_pri() => return Err("PRI_RESP without IDR0.PRI".into()),
        0x41 if bits(w[1], 13, 12) == 3 => return Err("PRI_RESP Resp 0b11".into()),
        0x41 => Cmd::PriResp {
            sid,
            ssid: ssv.then_some(ssid),
            grpid: bits(w[1], 8, 0) as u16,
            resp: bits(w[1], 13, 12) as u8,
        },
        0x44 | 0x45 if id.stall() == 1 => return Err("stall commands without stalls".into()),
        0x44 => Cmd::Resume {
            sid,
            stag: bits(w[1], 15, 0) as u16,
            retry: bit(w[0], 12),
            abort: bit(w[0], 13),
        },
        0x45 => Cmd::StallTerm { sid },
        _ => {
            let cs = bits(w[0], 13, 12) as u8;
            if cs == 3 {
                return Err("CMD_SYNC CS 0b11".into());
            }
            Cmd::Sync { cs }
        }
    };
    Ok(cmd)
}
