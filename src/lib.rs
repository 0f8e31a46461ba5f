//! Register-level drivers for Intel VT-d and Arm SMMUv3 IOMMUs, for
//! hypervisors, unikernels and firmware.
//!
//! `#![no_std]`, no allocator required. The embedder maps each IOMMU's
//! register block (found through its firmware tables: ACPI DMAR, device tree,
//! IORT) and hands the crate a pointer to it.
//!
//! What exists today: typed register blocks and decoders for the
//! identification and capability registers of both architectures
//! ([`drivers::vtd`], [`drivers::smmuv3`]); the page-table engine with its
//! four hardware formats ([`pgtable`]) over the embedder's [`hal::Hal`]; and
//! the hardware-agnostic layer ([`core`]: domains, RID and PASID attach, the
//! global PASID allocator, cache tags with batched invalidation, SVA bonds,
//! I/O page-fault routing, nested user data validation) with iommufd-style
//! objects on top ([`iommufd`]), host-tested against a mock driver. The
//! VT-d and SMMUv3 drivers implementing [`core::IommuDriver`] are being
//! built; see the README's feature table for what is verified where.

#![no_std]
#![deny(missing_docs)]

pub mod core;
pub mod drivers;
pub mod error;
pub mod hal;
pub mod iommufd;
pub mod pgtable;

pub use error::{Error, Object};
