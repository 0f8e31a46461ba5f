//! Register-level drivers for Intel VT-d and Arm SMMUv3 IOMMUs, for
//! hypervisors, unikernels and firmware.
//!
//! `#![no_std]`, no allocator required. The embedder maps each IOMMU's
//! register block (found through its firmware tables: ACPI DMAR, device tree,
//! IORT) and hands the crate a pointer to it.
//!
//! What exists today: typed register blocks and decoders for the
//! identification and capability registers of both architectures, and each
//! driver's own formats: the nested user data and user commands it accepts,
//! validated against the hardware layouts they are written into
//! ([`drivers::vtd`], [`drivers::smmuv3`]); the page-table engine with its
//! four hardware formats ([`pgtable`]) over the embedder's [`hal::Hal`]; and
//! the hardware-agnostic layer ([`core`]: domains, RID and PASID attach with
//! the attachment life cycle, the global PASID allocator, cache tags with
//! batched invalidation, SVA bonds, I/O page-fault routing) with
//! iommufd-style objects on top ([`iommufd`]), host-tested against a mock
//! driver. The VT-d and SMMUv3 drivers implementing [`core::IommuDriver`]
//! are being built; see the README's feature table for what is verified
//! where.
//!
//! # Why mapping is safe to call
//!
//! [`core::Iommu::map`], the attach calls and the page-table engine are safe
//! functions. Building a translation writes only memory the crate owns (table
//! pages from the [`hal::Hal`]) and never reads or writes the pages it maps:
//! a physical address handed to `map` is a number, not a pointer. What a
//! device later does through the translation (DMA into those pages) happens
//! outside the Rust abstract machine, when the embedder programs the device,
//! and that is where the obligation lies: do not point a device at memory
//! Rust code still owns unless sharing it is the intent. The crate's own
//! unsafety is confined to two promises it cannot check: the embedder's
//! [`hal::Hal`] (an `unsafe trait`: the pages it hands out are the crate's
//! alone and `phys_to_virt` reaches them) and the register blocks behind the
//! drivers' `unsafe` constructors.

#![no_std]
#![deny(missing_docs)]

pub mod addr;
pub mod core;
pub mod drivers;
pub mod error;
pub mod hal;
pub mod iommufd;
pub mod pgtable;

pub use addr::{Iova, PhysAddr};
pub use error::{Error, Object};
