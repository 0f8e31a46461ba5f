//! Fixed-capacity tables whose entries are named by (index, generation):
//! the generation moves on when an entry is removed, so a stale name is
//! refused instead of reaching the entry that reused its slot.

use crate::error::{Error, Object};

use super::config::ConstEmpty;

/// A name of a table entry.
pub(crate) trait SlotId: Copy {
    /// What a stale or unknown name is reported as (`NotFound`).
    const WHAT: Object;
    fn new(index: u16, generation: u16) -> Self;
    fn index(self) -> u16;
    fn generation(self) -> u16;
}

macro_rules! slot_id {
    ($($t:ty => $what:expr),* $(,)?) => {$(
        impl SlotId for $t {
            const WHAT: Object = $what;
            fn new(index: u16, generation: u16) -> Self {
                Self { index, generation }
            }
            fn index(self) -> u16 {
                self.index
            }
            fn generation(self) -> u16 {
                self.generation
            }
        }
    )*};
}

slot_id! {
    super::iommu::DomainId => Object::Domain,
    super::iommu::FaultObjectId => Object::FaultObject,
    super::sva::SpaceId => Object::Space,
    super::sva::BondId => Object::Bond,
}

/// A value or nothing, whose nothing is all-zero bytes (tag 0, the rest
/// undefined): an empty table is zero-initialised and lands in `.bss`.
/// (`Option<T>` may encode `None` in a niche of `T`, with non-zero bytes.)
#[repr(u8)]
pub(crate) enum Cell<T> {
    Empty = 0,
    Full(T),
}

impl<T> Cell<T> {
    pub(crate) fn as_ref(&self) -> Option<&T> {
        match self {
            Cell::Empty => None,
            Cell::Full(v) => Some(v),
        }
    }

    pub(crate) fn as_mut(&mut self) -> Option<&mut T> {
        match self {
            Cell::Empty => None,
            Cell::Full(v) => Some(v),
        }
    }

    pub(crate) fn take(&mut self) -> Option<T> {
        match core::mem::replace(self, Cell::Empty) {
            Cell::Empty => None,
            Cell::Full(v) => Some(v),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }
}

/// One entry of a table.
pub struct Slot<T> {
    generation: u16,
    live: Cell<T>,
}

impl<T> ConstEmpty for Slot<T> {
    const EMPTY: Self = Slot {
        generation: 0,
        live: Cell::Empty,
    };
}

/// The live entry `id` names.
pub(crate) fn get<T, I: SlotId>(slots: &[Slot<T>], id: I) -> Result<&T, Error> {
    slots
        .get(id.index() as usize)
        .filter(|s| s.generation == id.generation())
        .and_then(|s| s.live.as_ref())
        .ok_or(Error::NotFound { what: I::WHAT })
}

/// The live entry `id` names, to change.
pub(crate) fn get_mut<T, I: SlotId>(slots: &mut [Slot<T>], id: I) -> Result<&mut T, Error> {
    slots
        .get_mut(id.index() as usize)
        .filter(|s| s.generation == id.generation())
        .and_then(|s| s.live.as_mut())
        .ok_or(Error::NotFound { what: I::WHAT })
}

/// The first free slot (`Exhausted { what }` when there is none).
pub(crate) fn vacant<T>(slots: &[Slot<T>], what: Object) -> Result<usize, Error> {
    slots
        .iter()
        .position(|s| s.live.is_empty())
        .ok_or(Error::Exhausted { what })
}

/// Put `value` in the free slot `index` (from [`vacant`]); its name.
pub(crate) fn fill<T, I: SlotId>(slots: &mut [Slot<T>], index: usize, value: T) -> I {
    let slot = &mut slots[index];
    slot.live = Cell::Full(value);
    I::new(index as u16, slot.generation)
}

/// Remove the entry `id` names; the name is dead from now on.
pub(crate) fn take<T, I: SlotId>(slots: &mut [Slot<T>], id: I) -> Result<T, Error> {
    get(slots, id)?;
    let slot = &mut slots[id.index() as usize];
    slot.generation = slot.generation.wrapping_add(1);
    slot.live.take().ok_or(Error::NotFound { what: I::WHAT })
}

/// Every live entry with its name.
pub(crate) fn live<T, I: SlotId>(slots: &[Slot<T>]) -> impl Iterator<Item = (I, &T)> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.live.as_ref().map(|v| (I::new(i as u16, s.generation), v)))
}

/// Every live entry, to change.
pub(crate) fn live_mut<T>(slots: &mut [Slot<T>]) -> impl Iterator<Item = &mut T> {
    slots.iter_mut().filter_map(|s| s.live.as_mut())
}
