//! Command-queue entries (SMMUv3 architecture, "Commands"): two 64-bit
//! words each, an opcode in the low byte.
//!
//! Every field the crate reads or writes is named here once; the command
//! builder and the validator of a guest's commands (`super::user`) both use
//! these definitions.

use crate::drivers::bits::Field;

/// Words in a command.
pub const DWORDS: usize = 2;

/// Opcodes ([`OPCODE`]).
pub mod op {
    /// Invalidate the cached STE of one StreamID.
    pub const CFGI_STE: u64 = 0x03;
    /// Invalidate cached STEs of a range of StreamIDs (Range 31: all).
    pub const CFGI_STE_RANGE: u64 = 0x04;
    /// Invalidate one cached CD.
    pub const CFGI_CD: u64 = 0x05;
    /// Invalidate every cached CD of a StreamID.
    pub const CFGI_CD_ALL: u64 = 0x06;
    /// Stage-1 TLB entries of one VMID.
    pub const TLBI_NH_ALL: u64 = 0x10;
    /// Stage-1 TLB entries of one ASID.
    pub const TLBI_NH_ASID: u64 = 0x11;
    /// Stage-1 TLB entries of one ASID for an address or range.
    pub const TLBI_NH_VA: u64 = 0x12;
    /// Stage-1 TLB entries of every ASID for an address or range.
    pub const TLBI_NH_VAA: u64 = 0x13;
    /// Stage-1 and stage-2 TLB entries of one VMID.
    pub const TLBI_S12_VMALL: u64 = 0x28;
    /// Stage-2 TLB entries of one VMID for an address or range.
    pub const TLBI_S2_IPA: u64 = 0x2a;
    /// Every non-secure, non-hyp TLB entry.
    pub const TLBI_NSNH_ALL: u64 = 0x30;
    /// A device's ATS translation cache.
    pub const ATC_INV: u64 = 0x40;
    /// Answer a PRI page request group.
    pub const PRI_RESP: u64 = 0x41;
    /// Retry or terminate a stalled transaction.
    pub const RESUME: u64 = 0x44;
    /// Wait for every earlier command.
    pub const CMD_SYNC: u64 = 0x46;
}

/// Opcode.
pub const OPCODE: Field = Field::new(0, 7, 0);
/// ATC_INV: also global entries of every PASID.
pub const GLOBAL: Field = Field::bit(0, 9);
/// SubstreamID valid.
pub const SSV: Field = Field::bit(0, 11);
/// SubstreamID.
pub const SSID: Field = Field::new(0, 31, 12);
/// StreamID.
pub const SID: Field = Field::new(0, 63, 32);
/// TLBI range: number of blocks minus one.
pub const NUM: Field = Field::new(0, 16, 12);
/// TLBI range: log2 of the block size in granules.
pub const SCALE: Field = Field::new(0, 24, 20);
/// TLBI: VMID.
pub const VMID: Field = Field::new(0, 47, 32);
/// TLBI: ASID.
pub const ASID: Field = Field::new(0, 63, 48);
/// RESUME: the answer, bits Ac (12, retry) and Ab (13, abort when
/// terminated): [`RESUME_TERM`], [`RESUME_RETRY`] or [`RESUME_ABORT`].
pub const RESUME_RESP: Field = Field::new(0, 13, 12);
/// RESUME: terminate the transaction silently (RAZ/WI).
pub const RESUME_TERM: u64 = 0b00;
/// RESUME: retry the transaction (Ac).
pub const RESUME_RETRY: u64 = 0b01;
/// RESUME: terminate the transaction with an abort to the device (Ab).
pub const RESUME_ABORT: u64 = 0b10;
/// CMD_SYNC: completion signal (0: none, poll CONS; 1: IRQ; 2: SEV).
pub const SYNC_CS: Field = Field::new(0, 13, 12);

/// Leaf only (TLBI, CFGI_CD).
pub const LEAF: Field = Field::bit(1, 0);
/// TLBI: level of the leaf entries (0: unknown).
pub const TTL: Field = Field::new(1, 9, 8);
/// TLBI: range granule (0: single address, 1: 4 KiB, 2: 16 KiB, 3: 64 KiB).
pub const TG: Field = Field::new(1, 11, 10);
/// Address (TLBI VA / IPA, ATC_INV), bits 63:12 in place.
pub const ADDR: Field = Field::new(1, 63, 12);
/// ATC_INV: log2 of the range in 4 KiB pages (52: everything).
pub const ATC_SIZE: Field = Field::new(1, 5, 0);
/// CFGI_STE_RANGE: log2 of the number of StreamIDs minus one.
pub const STE_RANGE: Field = Field::new(1, 4, 0);
/// PRI_RESP: page request group index.
pub const PRI_GRPID: Field = Field::new(1, 8, 0);
/// PRI_RESP: the answer (0: denied, 1: failure, 2: success).
pub const PRI_RESP: Field = Field::new(1, 13, 12);
/// RESUME: the stall tag.
pub const RESUME_STAG: Field = Field::new(1, 15, 0);

/// ATC_INV Size meaning "every address" (2^52 pages of 4 KiB).
pub const ATC_SIZE_ALL: u64 = 52;

/// One command, built field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Command {
    words: [u64; DWORDS],
}

impl Command {
    /// A command with opcode `op` and every other field zero.
    pub fn new(op: u64) -> Self {
        Command::from_words([OPCODE.encode(op), 0])
    }

    /// A command from its words.
    pub const fn from_words(words: [u64; DWORDS]) -> Self {
        Command { words }
    }

    /// With `field` set to `value` (truncated to the field).
    pub fn with(mut self, field: Field, value: u64) -> Self {
        field.set(&mut self.words, value);
        self
    }

    /// The value of `field`.
    pub fn get(&self, field: Field) -> u64 {
        field.get(&self.words)
    }

    /// The opcode.
    pub fn opcode(&self) -> u64 {
        self.get(OPCODE)
    }

    /// The words, as the queue takes them.
    pub const fn words(&self) -> [u64; DWORDS] {
        self.words
    }
}

/// CMDQ_CONS.ERR: the error of the command at CONS ([`cerror`]).
pub const CONS_ERR: Field = Field::new(0, 30, 24);

/// Values of [`CONS_ERR`].
pub mod cerror {
    /// No error.
    pub const NONE: u64 = 0;
    /// The command is illegal (unknown opcode, reserved fields, a form the
    /// SMMU does not implement).
    pub const ILL: u64 = 1;
    /// Fetching the command aborted.
    pub const ABT: u64 = 2;
    /// An ATC invalidation before this CMD_SYNC timed out.
    pub const ATC_INV_SYNC: u64 = 3;
}

/// CMD_SYNC polled through CONS (no interrupt, no event).
pub fn sync() -> Command {
    Command::new(op::CMD_SYNC).with(SYNC_CS, 0)
}

/// Invalidate the cached STE of `sid`.
pub fn cfgi_ste(sid: u32) -> Command {
    Command::new(op::CFGI_STE)
        .with(SID, sid.into())
        .with(LEAF, 1)
}

/// Invalidate every cached STE (and the CDs reached through them).
pub fn cfgi_all() -> Command {
    Command::new(op::CFGI_STE_RANGE).with(STE_RANGE, 31)
}

/// Invalidate the cached CD of (`sid`, `ssid`).
pub fn cfgi_cd(sid: u32, ssid: u32, leaf: bool) -> Command {
    Command::new(op::CFGI_CD)
        .with(SID, sid.into())
        .with(SSID, ssid.into())
        .with(LEAF, leaf.into())
}

/// Invalidate every cached CD (and level-1 CD descriptor) of `sid`.
pub fn cfgi_cd_all(sid: u32) -> Command {
    Command::new(op::CFGI_CD_ALL).with(SID, sid.into())
}

/// Every non-secure, non-hypervisor TLB entry (stage 1 and stage 2).
pub fn tlbi_nsnh_all() -> Command {
    Command::new(op::TLBI_NSNH_ALL)
}

/// Stage-1 entries of `asid` under `vmid`.
pub fn tlbi_nh_asid(vmid: u16, asid: u16) -> Command {
    Command::new(op::TLBI_NH_ASID)
        .with(VMID, vmid.into())
        .with(ASID, asid.into())
}

/// Every stage-1 entry under `vmid`.
pub fn tlbi_nh_all(vmid: u16) -> Command {
    Command::new(op::TLBI_NH_ALL).with(VMID, vmid.into())
}

/// Stage-1 and stage-2 entries of `vmid`.
pub fn tlbi_s12_vmall(vmid: u16) -> Command {
    Command::new(op::TLBI_S12_VMALL).with(VMID, vmid.into())
}

/// A TLBI address: one address, or (TG != 0) NUM + 1 blocks of 2^SCALE
/// granules from it, with the leaf level TTL (0: unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First address.
    pub addr: u64,
    /// Only leaf entries.
    pub leaf: bool,
    /// Range granule (0: a single address, 1: 4 KiB).
    pub tg: u8,
    /// Blocks minus one.
    pub num: u8,
    /// log2 of the block in granules.
    pub scale: u8,
    /// Level of the leaves (0 unknown, 1-3).
    pub ttl: u8,
}

fn with_range(c: Command, r: &Range) -> Command {
    c.with(ADDR, r.addr >> ADDR.lo)
        .with(LEAF, r.leaf.into())
        .with(TG, r.tg.into())
        .with(NUM, r.num.into())
        .with(SCALE, r.scale.into())
        .with(TTL, r.ttl.into())
}

/// Stage-1 entries of `asid` under `vmid` for `r`.
pub fn tlbi_nh_va(vmid: u16, asid: u16, r: &Range) -> Command {
    with_range(
        Command::new(op::TLBI_NH_VA)
            .with(VMID, vmid.into())
            .with(ASID, asid.into()),
        r,
    )
}

/// Stage-2 entries of `vmid` for `r` (input: IPA).
pub fn tlbi_s2_ipa(vmid: u16, r: &Range) -> Command {
    with_range(Command::new(op::TLBI_S2_IPA).with(VMID, vmid.into()), r)
}

/// The ATS translation cache of `sid` (at `ssid`), for 2^`size` pages at
/// `addr` (aligned to them; [`ATC_SIZE_ALL`]: everything).
pub fn atc_inv(sid: u32, ssid: Option<u32>, addr: u64, size: u8) -> Command {
    Command::new(op::ATC_INV)
        .with(SID, sid.into())
        .with(SSV, ssid.is_some().into())
        .with(SSID, ssid.unwrap_or(0).into())
        .with(ATC_SIZE, size.into())
        .with(ADDR, addr >> ADDR.lo)
}

/// Answer page request group `grpid` of (`sid`, `ssid`) with `resp`
/// (0 denied, 1 failure, 2 success).
pub fn pri_resp(sid: u32, ssid: Option<u32>, grpid: u16, resp: u64) -> Command {
    Command::new(op::PRI_RESP)
        .with(SID, sid.into())
        .with(SSV, ssid.is_some().into())
        .with(SSID, ssid.unwrap_or(0).into())
        .with(PRI_GRPID, grpid.into())
        .with(PRI_RESP, resp)
}

/// Retry the transaction stalled with `stag` at `sid`, or (`abort`)
/// terminate it with an abort.
pub fn resume(sid: u32, stag: u16, abort: bool) -> Command {
    let resp = if abort { RESUME_ABORT } else { RESUME_RETRY };
    Command::new(op::RESUME)
        .with(SID, sid.into())
        .with(RESUME_RESP, resp)
        .with(RESUME_STAG, stag.into())
}
