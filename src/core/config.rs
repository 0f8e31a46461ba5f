//! Capacities: every fixed-size table of the core, sized by the embedder in
//! one place.
//!
//! The core allocates nothing: its tables are arrays and fixed-capacity
//! vectors inside the [`Iommu`](super::Iommu) object, and the embedder picks
//! their sizes with one type, [`Caps`] (or its own [`Capacities`]
//! implementation). A system without PASID-capable devices sets
//! `PASID_WORDS = 0` and pays nothing for the PASID space; one that serves
//! the whole 20-bit space sets `PASID_WORDS = 16384` (128 KiB).
//!
//! Every store starts empty from an all-zero state, so a core built by the
//! `const` constructor in a `static` lands in `.bss`.

use core::ops::{Deref, DerefMut};

/// A value of a type whose empty state is known at compile time.
pub trait ConstEmpty {
    /// The empty value.
    const EMPTY: Self;
}

impl ConstEmpty for u64 {
    const EMPTY: Self = 0;
}

/// A fixed-capacity vector: the core's lists (devices, attachments, tags,
/// queued faults...). Implemented by `heapless::Vec<T, N>`.
pub trait VecStore<T>: Deref<Target = [T]> + DerefMut {
    /// An empty vector.
    const EMPTY: Self;
    /// How many it holds at most.
    const CAPACITY: usize;
    /// Append; the value back when full.
    fn push(&mut self, value: T) -> Result<(), T>;
    /// Insert at `index` (at most the length); the value back when full.
    fn insert(&mut self, index: usize, value: T) -> Result<(), T>;
    /// Remove and return the element at `index` (below the length), keeping
    /// the order.
    fn remove(&mut self, index: usize) -> T;
    /// Remove and return the element at `index` (below the length),
    /// replacing it with the last.
    fn swap_remove(&mut self, index: usize) -> T;
    /// Remove and return the last element.
    fn pop(&mut self) -> Option<T>;
    /// Keep the elements `keep` says yes to, in order.
    fn retain(&mut self, keep: impl FnMut(&T) -> bool);
    /// Whether it holds `CAPACITY` elements.
    fn is_full(&self) -> bool {
        self.len() == Self::CAPACITY
    }

    /// Write an empty vector at `at` without building one on the stack.
    ///
    /// # Safety
    /// `at` is valid for writes and aligned; what it held is overwritten
    /// without being dropped.
    unsafe fn init_at(at: *mut Self)
    where
        Self: Sized,
    {
        // SAFETY: the caller's promise. The empty value is a constant: its
        // buffer is uninitialised, so only the length is written.
        unsafe { at.write(Self::EMPTY) }
    }
}

impl<T, const N: usize> VecStore<T> for heapless::Vec<T, N> {
    const EMPTY: Self = heapless::Vec::new();
    const CAPACITY: usize = N;
    fn push(&mut self, value: T) -> Result<(), T> {
        heapless::Vec::push(self, value)
    }
    fn insert(&mut self, index: usize, value: T) -> Result<(), T> {
        heapless::Vec::insert(self, index, value)
    }
    fn remove(&mut self, index: usize) -> T {
        heapless::Vec::remove(self, index)
    }
    fn swap_remove(&mut self, index: usize) -> T {
        heapless::Vec::swap_remove(self, index)
    }
    fn pop(&mut self) -> Option<T> {
        heapless::Vec::pop(self)
    }
    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        heapless::Vec::retain(self, |v| keep(v))
    }
}

/// A fixed-size array: the core's tables of named entries (domains, address
/// spaces, bonds, fault objects) and the PASID bitmap. Implemented by
/// `[T; N]`.
pub trait ArrayStore<T>: AsRef<[T]> + AsMut<[T]> {
    /// Every element empty.
    const EMPTY: Self;

    /// Write every element empty at `at`, one element at a time (never the
    /// whole array on the stack).
    ///
    /// # Safety
    /// `at` is valid for writes and aligned; what it held is overwritten
    /// without being dropped.
    unsafe fn init_at(at: *mut Self)
    where
        Self: Sized;
}

impl<T: ConstEmpty, const N: usize> ArrayStore<T> for [T; N] {
    const EMPTY: Self = [T::EMPTY; N];

    unsafe fn init_at(at: *mut Self) {
        let first = at.cast::<T>();
        for i in 0..N {
            // SAFETY: `[T; N]` is `N` consecutive `T`s at `at`, which the
            // caller says is valid for writes.
            unsafe { first.add(i).write(T::EMPTY) };
        }
    }
}

/// The sizes of the core's tables. [`Caps`] implements it from const
/// parameters; each associated type is a store of the given element type.
pub trait Capacities {
    /// The PASID bitmap: 64 PASIDs per word (PASID 0, the requester ID's
    /// own, is never handed out). Zero words: no PASIDs.
    type PasidWords: ArrayStore<u64>;
    /// IOMMU instances.
    type Instances: VecStore<u16>;
    /// Registered devices.
    type Devices<T>: VecStore<T>;
    /// PASIDs one device can have something attached at.
    type DevicePasids<T>: VecStore<T>;
    /// Domains (Blocked and Identity are static and take none).
    type Domains<T: ConstEmpty>: ArrayStore<T>;
    /// Distinct cache tags one domain can carry.
    type DomainTags<T>: VecStore<T>;
    /// Registered address spaces.
    type Spaces<T: ConstEmpty>: ArrayStore<T>;
    /// SVA domains one address space can have (one per IOMMU instance it
    /// is bound on).
    type SpaceDomains<T>: VecStore<T>;
    /// Device-to-address-space bonds.
    type Bonds<T: ConstEmpty>: ArrayStore<T>;
    /// Faults held between drain and handling (and page-request groups
    /// remembered as lost to overflow).
    type Faults<T>: VecStore<T>;
    /// iommufd-style fault objects.
    type FaultObjects<T: ConstEmpty>: ArrayStore<T>;
    /// Groups one fault object holds until the user answers them.
    type ObjectGroups<T>: VecStore<T>;
    /// Faults of one group a fault object can hold.
    type GroupFaults<T>: VecStore<T>;
    /// Attachments whose faults could not be flushed yet.
    type Unflushed<T>: VecStore<T>;
}

/// Capacities from const parameters, with defaults for a small hypervisor:
/// 16 domains, 16 devices, no PASID space, 2 IOMMU instances, 2 address
/// spaces with 2 SVA domains each, 8 bonds, 8 cache tags per domain, 4 PASID
/// attachments per device, 16 queued faults, 1 fault object of 8 groups of
/// 4 faults, 4 unflushed attachments.
///
/// ```
/// use iommu::core::Caps;
/// // 64 domains, 64 devices and the whole 20-bit PASID space; the rest as
/// // the defaults.
/// type Big = Caps<64, 64, 16384>;
/// ```
pub struct Caps<
    const DOMAINS: usize = 16,
    const DEVICES: usize = 16,
    const PASID_WORDS: usize = 0,
    const INSTANCES: usize = 2,
    const SPACES: usize = 2,
    const BONDS: usize = 8,
    const DOMAIN_TAGS: usize = 8,
    const DEVICE_PASIDS: usize = 4,
    const FAULTS: usize = 16,
    const FAULT_OBJECTS: usize = 1,
    const OBJECT_GROUPS: usize = 8,
    const GROUP_FAULTS: usize = 4,
    const SPACE_DOMAINS: usize = 2,
    const UNFLUSHED: usize = 4,
>;

impl<
    const DOMAINS: usize,
    const DEVICES: usize,
    const PASID_WORDS: usize,
    const INSTANCES: usize,
    const SPACES: usize,
    const BONDS: usize,
    const DOMAIN_TAGS: usize,
    const DEVICE_PASIDS: usize,
    const FAULTS: usize,
    const FAULT_OBJECTS: usize,
    const OBJECT_GROUPS: usize,
    const GROUP_FAULTS: usize,
    const SPACE_DOMAINS: usize,
    const UNFLUSHED: usize,
> Capacities
    for Caps<
        DOMAINS,
        DEVICES,
        PASID_WORDS,
        INSTANCES,
        SPACES,
        BONDS,
        DOMAIN_TAGS,
        DEVICE_PASIDS,
        FAULTS,
        FAULT_OBJECTS,
        OBJECT_GROUPS,
        GROUP_FAULTS,
        SPACE_DOMAINS,
        UNFLUSHED,
    >
{
    type PasidWords = [u64; PASID_WORDS];
    type Instances = heapless::Vec<u16, INSTANCES>;
    type Devices<T> = heapless::Vec<T, DEVICES>;
    type DevicePasids<T> = heapless::Vec<T, DEVICE_PASIDS>;
    type Domains<T: ConstEmpty> = [T; DOMAINS];
    type DomainTags<T> = heapless::Vec<T, DOMAIN_TAGS>;
    type Spaces<T: ConstEmpty> = [T; SPACES];
    type SpaceDomains<T> = heapless::Vec<T, SPACE_DOMAINS>;
    type Bonds<T: ConstEmpty> = [T; BONDS];
    type Faults<T> = heapless::Vec<T, FAULTS>;
    type FaultObjects<T: ConstEmpty> = [T; FAULT_OBJECTS];
    type ObjectGroups<T> = heapless::Vec<T, OBJECT_GROUPS>;
    type GroupFaults<T> = heapless::Vec<T, GROUP_FAULTS>;
    type Unflushed<T> = heapless::Vec<T, UNFLUSHED>;
}
