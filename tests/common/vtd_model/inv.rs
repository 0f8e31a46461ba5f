//! Invalidation-queue descriptors decoded from the specification's layouts
//! (6.5.2), independently of the driver's `desc.rs`: what the model records
//! for every descriptor it executes, and the checks that make it refuse one
//! (unknown type, a reserved bit or granularity, a type the unit lacks).

use super::spec::{UnitConfig, bit, bits, ecap};

/// Context-cache invalidation granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CcScope {
    Global,
    Domain { did: u16 },
    Device { did: u16, sid: u16, fm: u8 },
}

/// IOTLB invalidation granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IotlbScope {
    Global,
    Domain {
        did: u16,
    },
    Pages {
        did: u16,
        addr: u64,
        am: u8,
        ih: bool,
    },
}

/// PASID-based IOTLB invalidation granularity (within DID and PASID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PiotlbScope {
    Pasid,
    Pages { addr: u64, am: u8, ih: bool },
}

/// PASID-cache invalidation granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PcScope {
    Domain,
    Pasid,
    Global,
}

/// A device-TLB invalidation's range, from its size-encoded address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DevRange {
    All,
    Range { addr: u64, len: u64 },
}

/// One decoded descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Inv {
    Context(CcScope),
    Iotlb {
        scope: IotlbScope,
        drain_reads: bool,
        drain_writes: bool,
    },
    DevTlb {
        sid: u16,
        pfsid: u16,
        mip: u8,
        range: DevRange,
    },
    Iec,
    Wait {
        data: u32,
        addr: u64,
        status_write: bool,
        interrupt: bool,
        fence: bool,
        page_drain: bool,
    },
    PasidIotlb {
        did: u16,
        pasid: u32,
        scope: PiotlbScope,
    },
    PasidCache {
        did: u16,
        pasid: u32,
        scope: PcScope,
    },
    PasidDevTlb {
        sid: u16,
        pfsid: u16,
        mip: u8,
        pasid: u32,
        global: bool,
        range: DevRange,
    },
    PageResponse {
        rid: u16,
        pasid: Option<u32>,
        code: u8,
        prgi: u16,
        lpig: bool,
    },
}

impl Inv {
    /// A short name of the type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Inv::Context(_) => "context-cache",
            Inv::Iotlb { .. } => "IOTLB",
            Inv::DevTlb { .. } => "device-TLB",
            Inv::Iec => "IEC",
            Inv::Wait { .. } => "wait",
            Inv::PasidIotlb { .. } => "PASID-IOTLB",
            Inv::PasidCache { .. } => "PASID-cache",
            Inv::PasidDevTlb { .. } => "PASID-device-TLB",
            Inv::PageResponse { .. } => "page-group-response",
        }
    }

    pub fn is_wait(&self) -> bool {
        matches!(self, Inv::Wait { .. })
    }
}

/// Bits `hi..=lo` set.
const fn m(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// The range of a device-TLB invalidation: with S clear one page at
/// `addr`; with S set the lowest clear address bit at or above 12 marks
/// the size (bit 12 clear: 8 KiB, ...).
pub fn dev_range(addr: u64, s: bool) -> DevRange {
    if !s {
        return DevRange::Range { addr, len: 4096 };
    }
    let ones = (addr >> 12).trailing_ones();
    let p = 12 + ones; // the lowest clear bit
    if p >= 63 {
        return DevRange::All;
    }
    let len = 1u64 << (p + 1);
    DevRange::Range {
        addr: addr & !(len - 1),
        len,
    }
}

fn reserved(w: u64, mask: u64, what: &'static str) -> Result<(), &'static str> {
    if w & mask != 0 { Err(what) } else { Ok(()) }
}

/// What the unit makes of a descriptor: decoded, or refused with a reason
/// (the unit then reports an invalid descriptor, FSTS.IQE). `scalable`:
/// the root table the unit latched is in scalable mode; `wide`: 256-bit
/// descriptors.
pub fn decode(
    w: [u64; 4],
    wide: bool,
    scalable: bool,
    id: &UnitConfig,
) -> Result<Inv, &'static str> {
    let ty = bits(w[0], 3, 0) | (bits(w[0], 11, 9) << 4);
    let upper_free = |what| {
        if wide && (w[2] | w[3]) != 0 {
            Err(what)
        } else {
            Ok(())
        }
    };
    let did = bits(w[0], 31, 16) as u16;
    match ty {
        0x1 => {
            reserved(
                w[0],
                m(8, 6) | m(15, 12) | m(63, 50),
                "context-cache reserved bits",
            )?;
            reserved(w[1], u64::MAX, "context-cache reserved high word")?;
            upper_free("context-cache upper half")?;
            let sid = bits(w[0], 47, 32) as u16;
            let fm = bits(w[0], 49, 48) as u8;
            Ok(Inv::Context(match bits(w[0], 5, 4) {
                1 => CcScope::Global,
                2 => CcScope::Domain { did },
                3 => CcScope::Device { did, sid, fm },
                _ => return Err("context-cache granularity 0"),
            }))
        }
        0x2 => {
            reserved(
                w[0],
                (1 << 8) | m(15, 12) | m(63, 32),
                "IOTLB reserved bits",
            )?;
            reserved(w[1], m(11, 7), "IOTLB reserved address bits")?;
            upper_free("IOTLB upper half")?;
            let scope = match bits(w[0], 5, 4) {
                1 => IotlbScope::Global,
                2 => IotlbScope::Domain { did },
                3 => IotlbScope::Pages {
                    did,
                    addr: w[1] & m(63, 12),
                    am: bits(w[1], 5, 0) as u8,
                    ih: bit(w[1], 6),
                },
                _ => return Err("IOTLB granularity 0"),
            };
            Ok(Inv::Iotlb {
                scope,
                drain_reads: bit(w[0], 7),
                drain_writes: bit(w[0], 6),
            })
        }
        0x3 => {
            if !id.has_ecap(ecap::DT) {
                return Err("device-TLB invalidation on a unit without ECAP.DT");
            }
            reserved(
                w[0],
                m(8, 4) | m(31, 21) | m(51, 48),
                "device-TLB reserved bits",
            )?;
            reserved(w[1], m(11, 1), "device-TLB reserved address bits")?;
            upper_free("device-TLB upper half")?;
            Ok(Inv::DevTlb {
                sid: bits(w[0], 47, 32) as u16,
                pfsid: (bits(w[0], 15, 12) | (bits(w[0], 63, 52) << 4)) as u16,
                mip: bits(w[0], 20, 16) as u8,
                range: dev_range(w[1] & m(63, 12), bit(w[1], 0)),
            })
        }
        0x4 => {
            upper_free("IEC upper half")?;
            Ok(Inv::Iec)
        }
        0x5 => {
            reserved(w[0], (1 << 8) | m(31, 12), "wait reserved bits")?;
            reserved(w[1], m(1, 0), "wait address bits 1:0")?;
            upper_free("wait upper half")?;
            let page_drain = bit(w[0], 7);
            if page_drain && !id.has_ecap(ecap::PDS) {
                return Err("wait with page-request drain on a unit without ECAP.PDS");
            }
            Ok(Inv::Wait {
                data: bits(w[0], 63, 32) as u32,
                addr: w[1] & m(63, 2),
                status_write: bit(w[0], 5),
                interrupt: bit(w[0], 4),
                fence: bit(w[0], 6),
                page_drain,
            })
        }
        0x6 => {
            if !scalable {
                return Err("PASID-based IOTLB invalidation outside scalable mode");
            }
            reserved(
                w[0],
                m(8, 6) | m(15, 12) | m(63, 52),
                "PASID-IOTLB reserved bits",
            )?;
            reserved(w[1], m(11, 7), "PASID-IOTLB reserved address bits")?;
            upper_free("PASID-IOTLB upper half")?;
            let scope = match bits(w[0], 5, 4) {
                2 => PiotlbScope::Pasid,
                3 => PiotlbScope::Pages {
                    addr: w[1] & m(63, 12),
                    am: bits(w[1], 5, 0) as u8,
                    ih: bit(w[1], 6),
                },
                _ => return Err("PASID-IOTLB granularity reserved"),
            };
            Ok(Inv::PasidIotlb {
                did,
                pasid: bits(w[0], 51, 32) as u32,
                scope,
            })
        }
        0x7 => {
            if !scalable {
                return Err("PASID-cache invalidation outside scalable mode");
            }
            reserved(
                w[0],
                m(8, 6) | m(15, 12) | m(63, 52),
                "PASID-cache reserved bits",
            )?;
            reserved(w[1], u64::MAX, "PASID-cache reserved high word")?;
            upper_free("PASID-cache upper half")?;
            let scope = match bits(w[0], 5, 4) {
                0 => PcScope::Domain,
                1 => PcScope::Pasid,
                3 => PcScope::Global,
                _ => return Err("PASID-cache granularity reserved"),
            };
            Ok(Inv::PasidCache {
                did,
                pasid: bits(w[0], 51, 32) as u32,
                scope,
            })
        }
        0x8 => {
            if !scalable || !id.has_ecap(ecap::DT) {
                return Err("PASID-based device-TLB invalidation (scalable mode, ECAP.DT)");
            }
            reserved(w[1], m(10, 1), "PASID-device-TLB reserved address bits")?;
            upper_free("PASID-device-TLB upper half")?;
            Ok(Inv::PasidDevTlb {
                sid: bits(w[0], 31, 16) as u16,
                pfsid: (bits(w[0], 15, 12) | (bits(w[0], 63, 52) << 4)) as u16,
                mip: bits(w[0], 8, 4) as u8,
                pasid: bits(w[0], 51, 32) as u32,
                global: bit(w[1], 0),
                range: dev_range(w[1] & m(63, 12), bit(w[1], 11)),
            })
        }
        0x9 => {
            if !scalable || !id.has_ecap(ecap::PRS) {
                return Err("page group response (scalable mode, ECAP.PRS)");
            }
            reserved(
                w[0],
                m(8, 6) | m(63, 52),
                "page group response reserved bits",
            )?;
            reserved(
                w[1],
                m(1, 0) | m(63, 12),
                "page group response reserved high bits",
            )?;
            let private = bit(w[0], 5);
            if !private {
                upper_free("page group response private data without PDP")?;
            }
            let code = bits(w[0], 15, 12) as u8;
            if !matches!(code, 0x0 | 0x1 | 0xf) {
                return Err("page group response code reserved");
            }
            Ok(Inv::PageResponse {
                rid: bits(w[0], 31, 16) as u16,
                pasid: bit(w[0], 4).then(|| bits(w[0], 51, 32) as u32),
                code,
                prgi: bits(w[1], 11, 3) as u16,
                lpig: bit(w[1], 2),
            })
        }
        _ => Err("unknown descriptor type"),
    }
}
