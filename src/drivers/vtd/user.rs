//! User data for VT-d nesting: the guest's first-stage table
//! (`struct iommu_hwpt_vtd_s1`) and its cache invalidations
//! (`struct iommu_hwpt_vtd_s1_invalidate`), decoded from untrusted bytes and
//! validated field by field.
//!
//! The formats are those of Linux's iommufd uAPI
//! (`include/uapi/linux/iommufd.h`), so a VMM written against iommufd passes
//! its buffers through unchanged. Every multi-byte field is little-endian; a
//! record may be longer than its format only if every extra byte is zero
//! ([`record`]). Errors name the offending field as the uAPI spells it:
//! [`Error::InvalidField`] for a value malformed whatever the hardware,
//! [`Error::Unsupported`] for a well-formed value this unit cannot honour.
//! Fields are checked in the order they appear and the first failure is
//! reported.
//!
//! The driver writes the validated [`VtdS1`] into the nested PASID-table
//! entry and turns each [`VtdS1Inv`] into a PASID-based IOTLB invalidation
//! under the nested domain's DID.

use crate::core::user::{InvalidateOutcome, UserArray, le_u32, le_u64, put, record};
use crate::drivers::bits::fits;
use crate::error::{Error, invalid};

/// `IOMMU_HWPT_DATA_VTD_S1`: the allocation data type of [`VtdS1`].
pub const HWPT_DATA_VTD_S1: u32 = 1;
/// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1`: the invalidation data type of
/// [`VtdS1Inv`].
pub const INVALIDATE_DATA_VTD_S1: u32 = 0;
/// `IOMMU_HW_INFO_TYPE_INTEL_VTD`: what [`crate::core::HwInfo::ty`] says for
/// a VT-d unit (`regs[0]` = CAP_REG, `regs[1]` = ECAP_REG).
pub const HW_INFO_TYPE_INTEL_VTD: u32 = 1;

bitflags::bitflags! {
    /// `enum iommu_hwpt_vtd_s1_flags`: attributes of a guest's first-stage
    /// page table, copied into its scalable-mode PASID-table entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VtdS1Flags: u64 {
        /// Supervisor requests are allowed (`IOMMU_VTD_S1_SRE`); needs
        /// ECAP.SRS.
        const SRE = 1 << 0;
        /// Extended accessed flag (`IOMMU_VTD_S1_EAFE`); needs ECAP.EAFS.
        const EAFE = 1 << 1;
        /// Write protection applies to supervisor requests
        /// (`IOMMU_VTD_S1_WPE`). It has an effect only together with
        /// [`SRE`](Self::SRE); alone it is accepted and does nothing, as in
        /// Linux.
        const WPE = 1 << 2;
    }
}

/// What a VT-d unit (and the nesting parent) can offer a guest stage 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdS1Caps {
    /// Five-level first-stage paging (CAP.FL5LP): `addr_width` 57.
    pub five_level: bool,
    /// Width of the address space the guest's page-table pointer lives in:
    /// the input (guest-physical) address width of the nesting parent.
    /// 64 or more means no limit.
    pub max_pa_bits: u32,
    /// Supervisor requests (ECAP.SRS): [`VtdS1Flags::SRE`].
    pub sre: bool,
    /// Extended accessed flag (ECAP.EAFS): [`VtdS1Flags::EAFE`].
    pub eafe: bool,
}

/// A validated `struct iommu_hwpt_vtd_s1`: a guest's first-stage page table
/// for nesting on a VT-d unit.
///
/// Layout: `u64 flags`, `u64 pgtbl_addr`, `u32 addr_width`, `u32 __reserved`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdS1 {
    flags: VtdS1Flags,
    pgtbl_addr: u64,
    addr_width: u32,
}

impl VtdS1 {
    /// Size of the record in bytes.
    pub const SIZE: usize = 24;

    /// Decode and validate a record.
    ///
    /// Refused: unknown `flags` bits; a flag `caps` lacks ([`Error::Unsupported`]
    /// naming `flags.SRE` or `flags.EAFE`); a `pgtbl_addr` that is not 4 KiB
    /// aligned or not below 2^`max_pa_bits`; an `addr_width` other than 48 or
    /// 57, or 57 without five-level paging (Unsupported `addr_width`); a
    /// nonzero `__reserved`.
    pub fn parse(bytes: &[u8], caps: &VtdS1Caps) -> Result<Self, Error> {
        let rec = record::<{ Self::SIZE }>(bytes)?;
        let raw_flags = le_u64(rec, 0);
        let pgtbl_addr = le_u64(rec, 8);
        let addr_width = le_u32(rec, 16);
        let reserved = le_u32(rec, 20);

        let Some(flags) = VtdS1Flags::from_bits(raw_flags) else {
            return Err(invalid("flags", raw_flags & !VtdS1Flags::all().bits()));
        };
        if flags.contains(VtdS1Flags::SRE) && !caps.sre {
            return Err(Error::Unsupported { what: "flags.SRE" });
        }
        if flags.contains(VtdS1Flags::EAFE) && !caps.eafe {
            return Err(Error::Unsupported { what: "flags.EAFE" });
        }
        if pgtbl_addr & 0xfff != 0 || !fits(pgtbl_addr, caps.max_pa_bits) {
            return Err(invalid("pgtbl_addr", pgtbl_addr));
        }
        match addr_width {
            48 => {}
            57 if caps.five_level => {}
            57 => return Err(Error::Unsupported { what: "addr_width" }),
            _ => return Err(invalid("addr_width", u64::from(addr_width))),
        }
        if reserved != 0 {
            return Err(invalid("__reserved", u64::from(reserved)));
        }
        Ok(VtdS1 {
            flags,
            pgtbl_addr,
            addr_width,
        })
    }

    /// The page-table attributes.
    pub fn flags(&self) -> VtdS1Flags {
        self.flags
    }

    /// Guest-physical address of the first-stage root table (4 KiB aligned).
    pub fn pgtbl_addr(&self) -> u64 {
        self.pgtbl_addr
    }

    /// Input address width: 48 (four levels) or 57 (five levels).
    pub fn addr_width(&self) -> u32 {
        self.addr_width
    }

    /// Number of paging levels: 4 or 5.
    pub fn levels(&self) -> u8 {
        if self.addr_width == 57 { 5 } else { 4 }
    }

    /// The record's bytes (`__reserved` zero).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        put(&mut out, 0, &self.flags.bits().to_le_bytes());
        put(&mut out, 8, &self.pgtbl_addr.to_le_bytes());
        put(&mut out, 16, &self.addr_width.to_le_bytes());
        out
    }
}

/// `IOMMU_VTD_INV_FLAGS_LEAF`.
const VTD_INV_LEAF: u32 = 1;

/// A validated `struct iommu_hwpt_vtd_s1_invalidate`: what to flush after
/// the guest changed its first-stage table.
///
/// Layout: `u64 addr`, `u64 npages`, `u32 flags`, `u32 __reserved`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VtdS1Inv {
    /// Everything cached for the table (`addr` 0, `npages` `u64::MAX`). A
    /// leaf hint on it is accepted and has no effect.
    All,
    /// `npages` 4 KiB pages from `addr`.
    Range {
        /// First address, 4 KiB aligned.
        addr: u64,
        /// Number of pages, at least one; the range ends at or below 2^64.
        npages: u64,
        /// Only leaf entries changed (`IOMMU_VTD_INV_FLAGS_LEAF`): the
        /// paging-structure caches may be kept.
        leaf: bool,
    },
}

impl VtdS1Inv {
    /// Size of the record in bytes.
    pub const SIZE: usize = 24;

    /// Decode and validate one entry.
    ///
    /// Refused: `flags` other than `IOMMU_VTD_INV_FLAGS_LEAF`; a nonzero
    /// `__reserved`; an `addr` not 4 KiB aligned, or nonzero with `npages`
    /// `u64::MAX`; `npages` 0, or a range running past 2^64 (`npages`).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let rec = record::<{ Self::SIZE }>(bytes)?;
        let addr = le_u64(rec, 0);
        let npages = le_u64(rec, 8);
        let flags = le_u32(rec, 16);
        let reserved = le_u32(rec, 20);
        if flags & !VTD_INV_LEAF != 0 {
            return Err(invalid("flags", u64::from(flags & !VTD_INV_LEAF)));
        }
        if reserved != 0 {
            return Err(invalid("__reserved", u64::from(reserved)));
        }
        if addr & 0xfff != 0 {
            return Err(invalid("addr", addr));
        }
        if npages == u64::MAX {
            if addr != 0 {
                return Err(invalid("addr", addr));
            }
            return Ok(VtdS1Inv::All);
        }
        // The range [addr, addr + npages * 4 KiB) must end at or below 2^64.
        let end = u128::from(addr) + (u128::from(npages) << 12);
        if npages == 0 || end > 1u128 << 64 {
            return Err(invalid("npages", npages));
        }
        Ok(VtdS1Inv::Range {
            addr,
            npages,
            leaf: flags & VTD_INV_LEAF != 0,
        })
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let (addr, npages, flags) = match *self {
            VtdS1Inv::All => (0, u64::MAX, 0),
            VtdS1Inv::Range { addr, npages, leaf } => {
                (addr, npages, if leaf { VTD_INV_LEAF } else { 0 })
            }
        };
        let mut out = [0u8; Self::SIZE];
        put(&mut out, 0, &addr.to_le_bytes());
        put(&mut out, 8, &npages.to_le_bytes());
        put(&mut out, 16, &flags.to_le_bytes());
        out
    }
}

/// Walk a user array of [`VtdS1Inv`] entries, handing each validated entry
/// to `f` in order until one is malformed or `f` fails; the outcome names the
/// first bad index. An array of another data type than
/// [`INVALIDATE_DATA_VTD_S1`] is refused whole (`InvalidField("data_type")`
/// at index 0).
pub fn for_each_invalidation<F>(array: &UserArray<'_>, mut f: F) -> InvalidateOutcome
where
    F: FnMut(VtdS1Inv) -> Result<(), Error>,
{
    array.walk_as(INVALIDATE_DATA_VTD_S1, VtdS1Inv::SIZE, |_, entry| {
        f(VtdS1Inv::parse(entry)?)
    })
}
