//! Address newtypes for what crosses the crate's API: an I/O virtual address
//! (what a device puts on the bus) and a physical address (what the IOMMU's
//! table walker and memory see). Mixing them up is the classic IOMMU bug; the
//! types make `map(iova, paddr, ..)` and the embedder's `Hal` say which is
//! which.

use core::fmt;

/// An I/O virtual address: what a device issues, translated by a domain.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Iova(pub u64);

/// A physical address, as the IOMMU and memory see it (never a CPU pointer:
/// the embedder's [`Hal::phys_to_virt`](crate::hal::Hal::phys_to_virt) turns
/// one into the other).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PhysAddr(pub u64);

macro_rules! address {
    ($t:ident, $name:literal) => {
        impl $t {
            /// The address `value`.
            pub const fn new(value: u64) -> Self {
                $t(value)
            }

            /// Its value.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// `self + bytes`, `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some($t(v)),
                    None => None,
                }
            }

            /// Whether it is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({:#x})"), self.0)
            }
        }

        impl fmt::LowerHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address!(Iova, "Iova");
address!(PhysAddr, "PhysAddr");
