//! What a paging domain's table is to the core: a [`TableFormat`] a driver
//! picks when it allocates the domain, and the [`IoTable`] it builds.
//!
//! Every single [`Format`] is a `TableFormat` whose table is a
//! [`PageTable`] of that format: a driver whose hardware needs one format
//! names it, and only that format's code is compiled into the embedder's
//! image. [`AnyFormat`] chooses among every format this build has (the crate
//! features `vtd` and `smmuv3`) when the domain is allocated.

// With no format compiled in, `AnyFormat` and `AnyTable` have no variant
// but the unbuildable one, and their methods have nothing to do.
#![cfg_attr(
    not(any(feature = "vtd", feature = "smmuv3")),
    allow(unused_variables, unreachable_code)
)]

use core::convert::Infallible;
use core::fmt::Debug;
use core::marker::PhantomData;

use crate::addr::{Iova, PhysAddr};
use crate::error::Error;
use crate::hal::Hal;

#[cfg(feature = "smmuv3")]
use super::{ArmS1, ArmS2};
use super::{Format, Gather, PageTable, Prot};
#[cfg(feature = "vtd")]
use super::{VtdSl, X86_64};

/// A paging domain's table as the core uses it.
pub trait IoTable {
    /// Physical address of the root (what the hardware's table pointer
    /// takes).
    fn root_phys(&self) -> PhysAddr;
    /// Map `[iova, iova + len)` to `paddr` (see [`PageTable::map`]).
    fn map(&mut self, iova: Iova, paddr: PhysAddr, len: u64, prot: Prot) -> Result<(), Error>;
    /// Unmap `[iova, iova + len)` into `gather` (see [`PageTable::unmap`]).
    fn unmap(&mut self, iova: Iova, len: u64, gather: &mut Gather) -> Result<(), Error>;
    /// What `iova` translates to.
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr>;
}

/// The format of a paging domain's table, as its driver chose it.
pub trait TableFormat: Copy + Debug {
    /// The table it builds over the embedder's `Hal`.
    type Table<H: Hal>: IoTable;
    /// An empty table (its root page or pages).
    fn build<H: Hal>(self, hal: H) -> Result<Self::Table<H>, Error>;
}

impl<F: Format + Copy + Debug, H: Hal> IoTable for PageTable<F, H> {
    fn root_phys(&self) -> PhysAddr {
        PageTable::root_phys(self)
    }
    fn map(&mut self, iova: Iova, paddr: PhysAddr, len: u64, prot: Prot) -> Result<(), Error> {
        PageTable::map(self, iova, paddr, len, prot)
    }
    fn unmap(&mut self, iova: Iova, len: u64, gather: &mut Gather) -> Result<(), Error> {
        PageTable::unmap(self, iova, len, gather)
    }
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        PageTable::iova_to_phys(self, iova)
    }
}

impl<F: Format + Copy + Debug> TableFormat for F {
    type Table<H: Hal> = PageTable<F, H>;
    fn build<H: Hal>(self, hal: H) -> Result<PageTable<F, H>, Error> {
        PageTable::new(self, hal)
    }
}

/// Any format this build has, chosen when a domain is allocated (a driver
/// whose hardware offers several, or a test driver). With neither `vtd` nor
/// `smmuv3` it has no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyFormat {
    /// VT-d second level.
    #[cfg(feature = "vtd")]
    VtdSl(VtdSl),
    /// x86-64 (VT-d first level).
    #[cfg(feature = "vtd")]
    X86_64(X86_64),
    /// Arm VMSAv8-64 stage 1.
    #[cfg(feature = "smmuv3")]
    ArmS1(ArmS1),
    /// Arm VMSAv8-64 stage 2.
    #[cfg(feature = "smmuv3")]
    ArmS2(ArmS2),
}

/// A table of [`AnyFormat`].
pub enum AnyTable<H: Hal> {
    /// VT-d second level.
    #[cfg(feature = "vtd")]
    VtdSl(PageTable<VtdSl, H>),
    /// x86-64 (VT-d first level).
    #[cfg(feature = "vtd")]
    X86_64(PageTable<X86_64, H>),
    /// Arm VMSAv8-64 stage 1.
    #[cfg(feature = "smmuv3")]
    ArmS1(PageTable<ArmS1, H>),
    /// Arm VMSAv8-64 stage 2.
    #[cfg(feature = "smmuv3")]
    ArmS2(PageTable<ArmS2, H>),
    /// Never built: keeps `H` used when no format is compiled in.
    #[doc(hidden)]
    Never(Infallible, PhantomData<H>),
}

/// `$body` with `$t` bound to the `PageTable` inside whichever variant.
macro_rules! with_table {
    ($table:expr, $t:ident => $body:expr) => {
        match $table {
            #[cfg(feature = "vtd")]
            AnyTable::VtdSl($t) => $body,
            #[cfg(feature = "vtd")]
            AnyTable::X86_64($t) => $body,
            #[cfg(feature = "smmuv3")]
            AnyTable::ArmS1($t) => $body,
            #[cfg(feature = "smmuv3")]
            AnyTable::ArmS2($t) => $body,
            AnyTable::Never(never, _) => match *never {},
        }
    };
}

impl<H: Hal> IoTable for AnyTable<H> {
    fn root_phys(&self) -> PhysAddr {
        with_table!(self, t => t.root_phys())
    }
    fn map(&mut self, iova: Iova, paddr: PhysAddr, len: u64, prot: Prot) -> Result<(), Error> {
        with_table!(self, t => t.map(iova, paddr, len, prot))
    }
    fn unmap(&mut self, iova: Iova, len: u64, gather: &mut Gather) -> Result<(), Error> {
        with_table!(self, t => t.unmap(iova, len, gather))
    }
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        with_table!(self, t => t.iova_to_phys(iova))
    }
}

impl TableFormat for AnyFormat {
    type Table<H: Hal> = AnyTable<H>;
    fn build<H: Hal>(self, hal: H) -> Result<AnyTable<H>, Error> {
        Ok(match self {
            #[cfg(feature = "vtd")]
            AnyFormat::VtdSl(f) => AnyTable::VtdSl(PageTable::new(f, hal)?),
            #[cfg(feature = "vtd")]
            AnyFormat::X86_64(f) => AnyTable::X86_64(PageTable::new(f, hal)?),
            #[cfg(feature = "smmuv3")]
            AnyFormat::ArmS1(f) => AnyTable::ArmS1(PageTable::new(f, hal)?),
            #[cfg(feature = "smmuv3")]
            AnyFormat::ArmS2(f) => AnyTable::ArmS2(PageTable::new(f, hal)?),
        })
    }
}

/// One of two formats, chosen when a domain is allocated: a driver whose
/// hardware offers exactly two (VT-d: second level or first level) names
/// them, and only those two are compiled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first format.
    A(A),
    /// The second format.
    B(B),
}

/// A table of an [`Either`] format.
pub enum EitherTable<A, B> {
    /// Of the first format.
    A(A),
    /// Of the second format.
    B(B),
}

impl<A: IoTable, B: IoTable> IoTable for EitherTable<A, B> {
    fn root_phys(&self) -> PhysAddr {
        match self {
            EitherTable::A(t) => t.root_phys(),
            EitherTable::B(t) => t.root_phys(),
        }
    }
    fn map(&mut self, iova: Iova, paddr: PhysAddr, len: u64, prot: Prot) -> Result<(), Error> {
        match self {
            EitherTable::A(t) => t.map(iova, paddr, len, prot),
            EitherTable::B(t) => t.map(iova, paddr, len, prot),
        }
    }
    fn unmap(&mut self, iova: Iova, len: u64, gather: &mut Gather) -> Result<(), Error> {
        match self {
            EitherTable::A(t) => t.unmap(iova, len, gather),
            EitherTable::B(t) => t.unmap(iova, len, gather),
        }
    }
    fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        match self {
            EitherTable::A(t) => t.iova_to_phys(iova),
            EitherTable::B(t) => t.iova_to_phys(iova),
        }
    }
}

impl<A: TableFormat, B: TableFormat> TableFormat for Either<A, B> {
    type Table<H: Hal> = EitherTable<A::Table<H>, B::Table<H>>;
    fn build<H: Hal>(self, hal: H) -> Result<Self::Table<H>, Error> {
        Ok(match self {
            Either::A(f) => EitherTable::A(f.build(hal)?),
            Either::B(f) => EitherTable::B(f.build(hal)?),
        })
    }
}
