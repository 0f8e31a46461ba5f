//! Invalidation-queue descriptors (VT-d specification 6.5.2 "Queued
//! Invalidation Interface"): 128 bits each, or 256 in scalable mode
//! (IQA.DW = 1; the upper half then is zero for every type here).

use crate::drivers::bits::Field;

/// 64-bit words of a descriptor as the queue holds it (256-bit slots; a
/// 128-bit queue takes the first two).
pub const WORDS: usize = 4;

/// Descriptor type (bits 3:0; bits 11:9 extend it and stay zero here).
pub const TYPE: Field = Field::new(0, 3, 0);
/// Granularity of most types.
pub const GRANULARITY: Field = Field::new(0, 5, 4);
/// Domain ID.
pub const DID: Field = Field::new(0, 31, 16);

/// Context-cache invalidation: source-id.
pub const CC_SID: Field = Field::new(0, 47, 32);
/// Context-cache invalidation: function mask.
pub const CC_FM: Field = Field::new(0, 49, 48);

/// IOTLB invalidation: drain writes.
pub const IOTLB_DW: Field = Field::bit(0, 6);
/// IOTLB invalidation: drain reads.
pub const IOTLB_DR: Field = Field::bit(0, 7);
/// IOTLB and PASID-based IOTLB: address mask (2^AM pages).
pub const AM: Field = Field::new(1, 5, 0);
/// IOTLB and PASID-based IOTLB: invalidation hint (only leaves changed).
pub const IH: Field = Field::bit(1, 6);
/// IOTLB, PASID-based IOTLB and device-TLB: address, bits 63:12 in place.
pub const ADDR: Field = Field::new(1, 63, 12);

/// PASID-based IOTLB / PASID cache / page group response: PASID.
pub const PASID: Field = Field::new(0, 51, 32);

/// Device-TLB: physical function source-id, low 4 bits.
pub const DEV_PFSID_LO: Field = Field::new(0, 15, 12);
/// Device-TLB: invalidate queue depth.
pub const DEV_QDEP: Field = Field::new(0, 20, 16);
/// Device-TLB: source-id of the device.
pub const DEV_SID: Field = Field::new(0, 47, 32);
/// Device-TLB: physical function source-id, high 12 bits.
pub const DEV_PFSID_HI: Field = Field::new(0, 63, 52);
/// Device-TLB: size (the address encodes a range).
pub const DEV_SIZE: Field = Field::bit(1, 0);

/// PASID-based device-TLB: invalidate queue depth.
pub const PDEV_QDEP: Field = Field::new(0, 8, 4);
/// PASID-based device-TLB: physical function source-id, low 4 bits.
pub const PDEV_PFSID_LO: Field = Field::new(0, 15, 12);
/// PASID-based device-TLB: source-id of the device.
pub const PDEV_SID: Field = Field::new(0, 31, 16);
/// PASID-based device-TLB: physical function source-id, high 12 bits.
pub const PDEV_PFSID_HI: Field = Field::new(0, 63, 52);
/// PASID-based device-TLB: global (privileged entries too).
pub const PDEV_GLOBAL: Field = Field::bit(1, 0);
/// PASID-based device-TLB: size (the address encodes a range).
pub const PDEV_SIZE: Field = Field::bit(1, 11);

/// Wait: interrupt flag.
pub const WAIT_IF: Field = Field::bit(0, 4);
/// Wait: status write.
pub const WAIT_SW: Field = Field::bit(0, 5);
/// Wait: fence.
pub const WAIT_FN: Field = Field::bit(0, 6);
/// Wait: page-request drain.
pub const WAIT_PD: Field = Field::bit(0, 7);
/// Wait: status data written.
pub const WAIT_DATA: Field = Field::new(0, 63, 32);
/// Wait: status address, bits 63:2 in place.
pub const WAIT_ADDR: Field = Field::new(1, 63, 2);

/// Page group response: PASID present.
pub const PGR_PASID_P: Field = Field::bit(0, 4);
/// Page group response: private data present.
pub const PGR_PDP: Field = Field::bit(0, 5);
/// Page group response: response code ([`response`]).
pub const PGR_RESPONSE: Field = Field::new(0, 15, 12);
/// Page group response: requester ID.
pub const PGR_RID: Field = Field::new(0, 31, 16);
/// Page group response: last page in group.
pub const PGR_LPIG: Field = Field::bit(1, 2);
/// Page group response: page request group index.
pub const PGR_PRGI: Field = Field::new(1, 11, 3);

/// Descriptor types ([`TYPE`]).
pub mod ty {
    /// Context-cache invalidation.
    pub const CONTEXT_CACHE: u64 = 0x1;
    /// IOTLB invalidation.
    pub const IOTLB: u64 = 0x2;
    /// Device-TLB invalidation.
    pub const DEVICE_TLB: u64 = 0x3;
    /// Interrupt entry cache invalidation.
    pub const IEC: u64 = 0x4;
    /// Invalidation wait.
    pub const WAIT: u64 = 0x5;
    /// PASID-based IOTLB invalidation.
    pub const PASID_IOTLB: u64 = 0x6;
    /// PASID-cache invalidation.
    pub const PASID_CACHE: u64 = 0x7;
    /// PASID-based device-TLB invalidation.
    pub const PASID_DEVICE_TLB: u64 = 0x8;
    /// Page group response.
    pub const PAGE_GROUP_RESPONSE: u64 = 0x9;
}

/// Granularities ([`GRANULARITY`]) of the context-cache and IOTLB types.
pub mod gran {
    /// Everything.
    pub const GLOBAL: u64 = 1;
    /// One domain.
    pub const DOMAIN: u64 = 2;
    /// One device (context cache) or pages (IOTLB).
    pub const DEVICE_OR_PAGE: u64 = 3;
}

/// Granularities of the PASID-based IOTLB type.
pub mod pasid_gran {
    /// Every entry of the PASID within the domain (non-globals).
    pub const PASID: u64 = 2;
    /// Pages of the PASID within the domain.
    pub const PAGE: u64 = 3;
}

/// Granularities of the PASID-cache type.
pub mod pc_gran {
    /// Every PASID of the domain.
    pub const DOMAIN: u64 = 0;
    /// One PASID of the domain.
    pub const PASID: u64 = 1;
    /// Everything.
    pub const GLOBAL: u64 = 3;
}

/// Page group response codes ([`PGR_RESPONSE`]).
pub mod response {
    /// The pages are there: retry.
    pub const SUCCESS: u64 = 0x0;
    /// The request is invalid.
    pub const INVALID: u64 = 0x1;
    /// Stop issuing page requests.
    pub const FAILURE: u64 = 0xf;
}

/// One descriptor, built field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc(pub [u64; WORDS]);

impl Desc {
    /// A descriptor of type `t`, every other field zero.
    pub fn new(t: u64) -> Self {
        Desc([TYPE.encode(t), 0, 0, 0])
    }

    /// With `field` set to `value`.
    pub fn with(mut self, field: Field, value: u64) -> Self {
        field.set(&mut self.0, value);
        self
    }

    /// With an address field's bits taken in place.
    pub fn with_addr(mut self, field: Field, addr: u64) -> Self {
        field.set_in_place(&mut self.0, addr);
        self
    }

    /// The value of `field`.
    pub fn get(&self, field: Field) -> u64 {
        field.get(&self.0)
    }

    /// Its type.
    pub fn ty(&self) -> u64 {
        self.get(TYPE)
    }
}

/// Context-cache invalidation of every entry.
pub fn context_global() -> Desc {
    Desc::new(ty::CONTEXT_CACHE).with(GRANULARITY, gran::GLOBAL)
}

/// Context-cache invalidation of one device's entry, cached under `did`.
pub fn context_device(did: u16, sid: u16) -> Desc {
    Desc::new(ty::CONTEXT_CACHE)
        .with(GRANULARITY, gran::DEVICE_OR_PAGE)
        .with(DID, did.into())
        .with(CC_SID, sid.into())
}

/// IOTLB invalidation of everything.
pub fn iotlb_global() -> Desc {
    Desc::new(ty::IOTLB)
        .with(GRANULARITY, gran::GLOBAL)
        .with(IOTLB_DW, 1)
        .with(IOTLB_DR, 1)
}

/// IOTLB invalidation of one domain.
pub fn iotlb_domain(did: u16) -> Desc {
    Desc::new(ty::IOTLB)
        .with(GRANULARITY, gran::DOMAIN)
        .with(DID, did.into())
        .with(IOTLB_DW, 1)
        .with(IOTLB_DR, 1)
}

/// IOTLB invalidation of 2^`am` pages at `addr` (aligned to them) in one
/// domain; `ih`: only leaves changed.
pub fn iotlb_pages(did: u16, addr: u64, am: u8, ih: bool) -> Desc {
    Desc::new(ty::IOTLB)
        .with(GRANULARITY, gran::DEVICE_OR_PAGE)
        .with(DID, did.into())
        .with(IOTLB_DW, 1)
        .with(IOTLB_DR, 1)
        .with_addr(ADDR, addr)
        .with(AM, am.into())
        .with(IH, ih.into())
}

/// PASID-based IOTLB invalidation of a PASID's entries in a domain.
pub fn piotlb_pasid(did: u16, pasid: u32) -> Desc {
    Desc::new(ty::PASID_IOTLB)
        .with(GRANULARITY, pasid_gran::PASID)
        .with(DID, did.into())
        .with(PASID, pasid.into())
}

/// PASID-based IOTLB invalidation of 2^`am` pages at `addr`.
pub fn piotlb_pages(did: u16, pasid: u32, addr: u64, am: u8, ih: bool) -> Desc {
    Desc::new(ty::PASID_IOTLB)
        .with(GRANULARITY, pasid_gran::PAGE)
        .with(DID, did.into())
        .with(PASID, pasid.into())
        .with_addr(ADDR, addr)
        .with(AM, am.into())
        .with(IH, ih.into())
}

/// PASID-cache invalidation of everything.
pub fn pasid_cache_global() -> Desc {
    Desc::new(ty::PASID_CACHE).with(GRANULARITY, pc_gran::GLOBAL)
}

/// PASID-cache invalidation of one PASID of a domain.
pub fn pasid_cache_pasid(did: u16, pasid: u32) -> Desc {
    Desc::new(ty::PASID_CACHE)
        .with(GRANULARITY, pc_gran::PASID)
        .with(DID, did.into())
        .with(PASID, pasid.into())
}

/// Device-TLB invalidation at `sid`: the whole range when `addr` is
/// `None`, else the 2^`am` pages at `addr` (size-encoded).
pub fn device_tlb(sid: u16, pfsid: u16, qdep: u8, range: Option<(u64, u8)>) -> Desc {
    let (addr, size) = size_encoded(range);
    Desc::new(ty::DEVICE_TLB)
        .with(DEV_SID, sid.into())
        .with(DEV_QDEP, qdep.into())
        .with(DEV_PFSID_LO, u64::from(pfsid) & 0xf)
        .with(DEV_PFSID_HI, u64::from(pfsid) >> 4)
        .with_addr(ADDR, addr)
        .with(DEV_SIZE, size)
}

/// The address and size bit that name 2^`am` pages at `addr` (aligned to
/// them) in a device-TLB descriptor; `None`: everything.
fn size_encoded(range: Option<(u64, u8)>) -> (u64, u64) {
    match range {
        Some((addr, 0)) => (addr, 0),
        // The lowest clear bit above the page offset marks the extent;
        // the bits below it are set.
        Some((addr, am)) => (addr | (((1u64 << (am + 11)) - 1) & !0xfff), 1),
        // Everything: bit 63 clear, the rest of the address ones.
        None => ((u64::MAX >> 1) & !0xfff, 1),
    }
}

/// PASID-based device-TLB invalidation at (`sid`, `pasid`): the whole
/// range when `range` is `None`, else the 2^`am` pages at `addr`.
pub fn pasid_device_tlb(
    sid: u16,
    pfsid: u16,
    qdep: u8,
    pasid: u32,
    range: Option<(u64, u8)>,
) -> Desc {
    let (addr, size) = size_encoded(range);
    Desc::new(ty::PASID_DEVICE_TLB)
        .with(PDEV_SID, sid.into())
        .with(PDEV_QDEP, qdep.into())
        .with(PDEV_PFSID_LO, u64::from(pfsid) & 0xf)
        .with(PDEV_PFSID_HI, u64::from(pfsid) >> 4)
        .with(PASID, pasid.into())
        .with_addr(ADDR, addr)
        .with(PDEV_SIZE, size)
}

/// An invalidation wait that also drains page requests: it completes
/// once every page request the unit received before it is in the page
/// request queue (and every response before it went out).
pub fn wait_drain(status: u64, data: u32) -> Desc {
    wait(status, data).with(WAIT_PD, 1)
}

/// Invalidation wait writing `data` at `status` (4-byte aligned) when
/// everything before it completed. Never with the interrupt flag: QEMU
/// aborts on SW and IF together, and the driver polls.
pub fn wait(status: u64, data: u32) -> Desc {
    Desc::new(ty::WAIT)
        .with(WAIT_SW, 1)
        .with(WAIT_FN, 1)
        .with(WAIT_DATA, data.into())
        .with_addr(WAIT_ADDR, status)
}

/// Page group response to `rid`'s group `prgi` (at `pasid` if any).
pub fn page_group_response(rid: u16, pasid: Option<u32>, prgi: u16, code: u64) -> Desc {
    Desc::new(ty::PAGE_GROUP_RESPONSE)
        .with(PGR_PASID_P, pasid.is_some().into())
        .with(PASID, pasid.unwrap_or(0).into())
        .with(PGR_RESPONSE, code)
        .with(PGR_RID, rid.into())
        .with(PGR_LPIG, 1)
        .with(PGR_PRGI, prgi.into())
}

/// The specification's name of descriptor type `t` (bits 3:0), for errors.
pub fn name(t: u64) -> &'static str {
    match t {
        ty::CONTEXT_CACHE => "context-cache invalidate",
        ty::IOTLB => "IOTLB invalidate",
        ty::DEVICE_TLB => "device-TLB invalidate",
        ty::IEC => "interrupt entry cache invalidate",
        ty::WAIT => "invalidation wait",
        ty::PASID_IOTLB => "PASID-based IOTLB invalidate",
        ty::PASID_CACHE => "PASID-cache invalidate",
        ty::PASID_DEVICE_TLB => "PASID-based device-TLB invalidate",
        ty::PAGE_GROUP_RESPONSE => "page group response",
        _ => "an undefined descriptor type",
    }
}
