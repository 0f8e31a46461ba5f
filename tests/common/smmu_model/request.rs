//! What the model's walker is asked and answers: a device's transaction,
//! the translation it gets, and the event a real SMMU records when it
//! faults (7.3 "Event records", encoded from the specification's layout).

use super::spec::mask;

/// A transaction as a device issues it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Req {
    pub sid: u32,
    pub ssid: Option<u32>,
    pub addr: u64,
    pub write: bool,
    pub exec: bool,
    pub privileged: bool,
}

impl Req {
    pub fn read(sid: u32, addr: u64) -> Self {
        Req {
            sid,
            ssid: None,
            addr,
            write: false,
            exec: false,
            privileged: false,
        }
    }

    pub fn write(sid: u32, addr: u64) -> Self {
        Req {
            write: true,
            ..Self::read(sid, addr)
        }
    }

    pub fn ssid(mut self, s: u32) -> Self {
        self.ssid = Some(s);
        self
    }

    pub fn exec(mut self) -> Self {
        self.exec = true;
        self
    }

    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }
}

/// How a transaction was translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// SMMUEN = 0 with GBPA bypass: the address is used as is.
    Untranslated,
    /// STE bypass (or S1DSS bypass on a stage-1-only STE).
    Bypass,
    Stage1,
    Stage2,
    Nested,
}

/// What one stage lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Perm {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// Stage 1: unprivileged (EL0) access allowed (AP[1]).
    pub el0: bool,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translated {
    pub pa: u64,
    pub kind: Kind,
    /// The VMID it is cached under (stage 2, nested; stage 1 on an SMMU
    /// with stage 2).
    pub vmid: Option<u16>,
    /// The ASID it is cached under (stage 1, nested).
    pub asid: Option<u16>,
    /// Size of the block or page it came from.
    pub page: u64,
    /// Level of the leaf (stage 1 for stage-1 and nested translations).
    pub level: u8,
    /// Stage-1 permissions, where stage 1 applied.
    pub s1: Option<Perm>,
    /// Stage-2 permissions, where stage 2 applied.
    pub s2: Option<Perm>,
    /// Stage 1: a global entry (nG = 0), matched under every ASID.
    pub global: bool,
}

impl Translated {
    pub fn untranslated(req: &Req, kind: Kind) -> Self {
        let all = Perm {
            read: true,
            write: true,
            exec: true,
            el0: true,
        };
        Translated {
            pa: req.addr,
            kind,
            vmid: None,
            asid: None,
            page: 4096,
            level: 3,
            s1: Some(all),
            s2: None,
            global: false,
        }
    }
}

/// Event record CLASS: what the faulting access was.
pub mod class {
    pub const CD: u8 = 0b00;
    pub const TT: u8 = 0b01;
    pub const IN: u8 = 0b10;
}

/// An event record as the SMMU writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRec {
    pub id: u8,
    pub sid: u32,
    pub ssid: Option<u32>,
    /// Translation faults: the access.
    pub read: bool,
    pub exec: bool,
    pub privileged: bool,
    /// Translation faults: stage 2 faulted.
    pub s2: bool,
    pub class: u8,
    /// Translation faults: the input address.
    pub addr: u64,
    /// Stage-2 faults: the IPA.
    pub ipa: u64,
    /// A stalled transaction's tag.
    pub stag: Option<u16>,
    /// Whether this is a translation fault (with access and addresses) or
    /// a configuration error (StreamID and SubstreamID only).
    pub translation: bool,
}

impl EventRec {
    /// A configuration error (C_BAD_*, F_STE_FETCH, F_STREAM_DISABLED...).
    pub fn config(id: u8, req: &Req) -> Self {
        EventRec {
            id,
            sid: req.sid,
            ssid: req.ssid,
            read: false,
            exec: false,
            privileged: false,
            s2: false,
            class: 0,
            addr: 0,
            ipa: 0,
            stag: None,
            translation: false,
        }
    }

    /// A translation fault of `req` at `stage` 2 or not, on `class`, with
    /// the IPA for stage 2.
    pub fn translation(id: u8, req: &Req, s2: bool, class: u8, ipa: u64) -> Self {
        EventRec {
            read: !req.write,
            exec: req.exec,
            privileged: req.privileged,
            s2,
            class,
            addr: req.addr,
            ipa: if s2 { ipa } else { 0 },
            translation: true,
            ..Self::config(id, req)
        }
    }

    /// The record's four words.
    pub fn encode(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        w[0] = u64::from(self.id) | (u64::from(self.sid) << 32);
        if let Some(s) = self.ssid {
            w[0] |= (1 << 11) | ((u64::from(s) & 0xf_ffff) << 12);
        }
        if let Some(t) = self.stag {
            w[1] |= u64::from(t) | (1 << 31);
        }
        if self.translation {
            w[1] |= u64::from(self.privileged) << 33
                | u64::from(self.exec) << 34
                | u64::from(self.read) << 35
                | u64::from(self.s2) << 39
                | u64::from(self.class) << 40;
            w[2] = self.addr;
            w[3] = self.ipa & mask(51, 3);
        }
        w
    }
}

/// Why a transaction did not translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// Terminated without an event (STE abort, GBPA abort).
    Abort(&'static str),
    /// A fault or configuration error: the event the SMMU records when
    /// `record`, stalling the transaction when `stall`.
    Event {
        rec: EventRec,
        record: bool,
        stall: bool,
    },
}

impl WalkFault {
    /// The event type, for an event.
    pub fn id(&self) -> Option<u8> {
        match self {
            WalkFault::Event { rec, .. } => Some(rec.id),
            WalkFault::Abort(_) => None,
        }
    }

    pub fn rec(&self) -> Option<EventRec> {
        match self {
            WalkFault::Event { rec, .. } => Some(*rec),
            WalkFault::Abort(_) => None,
        }
    }
}
