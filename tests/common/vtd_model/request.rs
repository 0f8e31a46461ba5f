//! What the model's walker is asked and answers: a device's DMA request,
//! the translation it gets, and why it faults (with the fault reason the
//! unit records for it).

/// A DMA request as a device issues it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Req {
    pub sid: u16,
    pub pasid: Option<u32>,
    pub addr: u64,
    pub write: bool,
    pub privileged: bool,
}

impl Req {
    pub fn read(sid: u16, addr: u64) -> Self {
        Req {
            sid,
            pasid: None,
            addr,
            write: false,
            privileged: false,
        }
    }

    pub fn write(sid: u16, addr: u64) -> Self {
        Req {
            write: true,
            ..Self::read(sid, addr)
        }
    }

    pub fn pasid(mut self, p: u32) -> Self {
        self.pasid = Some(p);
        self
    }

    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }
}

/// How a request was translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Translation is off (GSTS.TES clear): the address is used as is.
    Untranslated,
    PassThrough,
    SecondLevel,
    FirstLevel,
    Nested,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translated {
    pub pa: u64,
    pub kind: Kind,
    /// The domain ID the translation is cached under.
    pub did: Option<u16>,
    /// Size of the page it came from.
    pub page: u64,
    pub read: bool,
    pub write: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Second,
    First,
}

/// Why a request faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    RootNotPresent,
    RootReserved,
    ContextNotPresent,
    ContextInvalid(&'static str),
    /// A request with a PASID where PASIDs are not enabled.
    PasidBlocked,
    PasidBeyondDirectory,
    PasidDirNotPresent,
    PasidEntryNotPresent,
    PasidEntryInvalid(&'static str),
    AddressBeyond,
    NotPresent {
        stage: Stage,
        level: u32,
    },
    Reserved {
        stage: Stage,
        level: u32,
    },
    Denied {
        stage: Stage,
        write: bool,
    },
    NonCanonical,
    SupervisorDenied,
    /// A table pointer outside the memory the driver was given.
    BadPointer {
        addr: u64,
    },
}

impl WalkFault {
    /// The fault reason the model records (the specification's numbering
    /// for legacy mode; scalable-mode codes from 30h, approximated).
    pub fn reason(&self, scalable: bool) -> u16 {
        use WalkFault::*;
        match (self, scalable) {
            (RootNotPresent, false) => 0x1,
            (ContextNotPresent, false) => 0x2,
            (ContextInvalid(_), false) => 0x3,
            (AddressBeyond, false) => 0x4,
            (Denied { write: true, .. }, false) => 0x5,
            (Denied { write: false, .. }, false) => 0x6,
            (NotPresent { .. }, false) => 0x6,
            (BadPointer { .. }, false) => 0x7,
            (RootReserved, false) => 0xa,
            (Reserved { .. }, false) => 0xc,
            (PasidBlocked, false) => 0xd,
            (RootNotPresent, true) => 0x30,
            (RootReserved, true) => 0x31,
            (ContextNotPresent, true) => 0x32,
            (ContextInvalid(_), true) => 0x34,
            (PasidBlocked, true) => 0x37,
            (PasidBeyondDirectory, _) => 0x50,
            (PasidDirNotPresent, _) => 0x58,
            (PasidEntryNotPresent, _) => 0x59,
            (PasidEntryInvalid(_), _) => 0x5b,
            (
                NotPresent {
                    stage: Stage::First,
                    ..
                },
                true,
            ) => 0x71,
            (
                Denied {
                    stage: Stage::First,
                    ..
                },
                true,
            ) => 0x73,
            (SupervisorDenied, _) | (NonCanonical, _) => 0x74,
            (
                Reserved {
                    stage: Stage::First,
                    ..
                },
                true,
            ) => 0x72,
            (NotPresent { .. }, true) => 0x81,
            (Denied { .. }, true) => 0x83,
            (Reserved { .. }, true) => 0x82,
            (AddressBeyond, true) => 0x84,
            (BadPointer { .. }, true) => 0x80,
        }
    }
}
