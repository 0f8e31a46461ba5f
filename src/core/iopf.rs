//! I/O page faults: one fault type for every IOMMU, grouping of partial page
//! requests, and exactly one response per group.
//!
//! Drivers decode their hardware records (VT-d fault records and page
//! requests, SMMU event and PRI queues) into [`Fault`] and [`report`] them.
//! [`FaultQueue::handle`] passes each complete group to a handler (the core
//! routes it to the domain attached at the device and PASID) and sends the
//! handler's answer back once through [`FaultResponder`].
//!
//! [`report`]: FaultQueue::report

use crate::error::{Error, Object};

use super::config::VecStore;

bitflags::bitflags! {
    /// What the faulting access wanted.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Access: u8 {
        /// Read.
        const READ = 1 << 0;
        /// Write.
        const WRITE = 1 << 1;
        /// Instruction fetch.
        const EXEC = 1 << 2;
        /// Privileged (supervisor) access.
        const PRIV = 1 << 3;
    }
}

/// How the hardware reported the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A PCIe page request (PRI / VT-d page request): recoverable, answered per group.
    PageRequest,
    /// A stalled transaction (SMMU stall model): recoverable, answered (resume/terminate).
    Stall,
    /// A translation fault that cannot be retried: reported, never answered.
    Unrecoverable,
}

/// A fault, whatever IOMMU reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// IOMMU instance (the embedder's index).
    pub instance: u16,
    /// Device: source-id / StreamID.
    pub device: u32,
    /// PASID of the request, if it carried one.
    pub pasid: Option<u32>,
    /// Faulting address (page granular for page requests).
    pub addr: u64,
    /// Access wanted.
    pub access: Access,
    /// Page-request group index (PRGI), or the stall tag.
    pub group: u16,
    /// Last request of its group (always true for stalls and events).
    pub last: bool,
    /// Kind.
    pub kind: FaultKind,
    /// What the hardware said went wrong, in its own numbering: the VT-d
    /// fault reason (FR), the SMMUv3 event ID; 0 for page requests and
    /// stalls.
    pub reason: u16,
}

impl Fault {
    /// A placeholder (an event of device 0 at address 0), to fill a buffer
    /// a driver's `drain_faults` or a fault object's reader writes into.
    pub const EMPTY: Fault = Fault {
        instance: 0,
        device: 0,
        pasid: None,
        addr: 0,
        access: Access::empty(),
        group: 0,
        last: true,
        kind: FaultKind::Unrecoverable,
        reason: 0,
    };
}

/// What a handler decided for a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// The pages are mapped: retry.
    Success,
    /// The request is invalid: do not retry (the device gets a response
    /// failure for this group only).
    Invalid,
    /// Handling failed: the device stops issuing page requests (PCIe
    /// "Response Failure") / the stalled transaction is terminated.
    Failure,
}

/// Where responses go: the driver of the instance that reported the fault.
pub trait FaultResponder {
    /// Send one response for `group` of `device` (and `pasid`) on
    /// `instance`: VT-d page group response, SMMUv3 PRI_RESP or RESUME. The
    /// core sends exactly one per recoverable group and never one for an
    /// unrecoverable event. The default answers `Unsupported`: right for a
    /// driver that reports no recoverable faults (it is never called then).
    fn respond(
        &mut self,
        instance: u16,
        device: u32,
        pasid: Option<u32>,
        group: u16,
        response: Response,
    ) -> Result<(), Error> {
        let _ = (instance, device, pasid, group, response);
        Err(Error::Unsupported {
            what: "page responses",
        })
    }
}

/// Identifies a page-request group: one response goes to each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupKey {
    instance: u16,
    device: u32,
    pasid: Option<u32>,
    group: u16,
}

type Key = GroupKey;

impl Key {
    fn of(f: &Fault) -> Self {
        Key {
            instance: f.instance,
            device: f.device,
            pasid: f.pasid,
            group: f.group,
        }
    }
}

/// Pending faults, in stores of the embedder's capacity: faults (partial
/// and complete groups together) and the groups remembered as failed after
/// an overflow. `FaultQueue<heapless::Vec<Fault, N>, heapless::Vec<GroupKey,
/// N>>` holds `N` of each.
pub struct FaultQueue<F: VecStore<Fault>, K: VecStore<GroupKey>> {
    faults: F,
    failed: K,
}

/// A [`FaultQueue`] of `N` faults (and `N` lost groups) in `heapless`
/// vectors.
pub type FixedFaultQueue<const N: usize> =
    FaultQueue<heapless::Vec<Fault, N>, heapless::Vec<GroupKey, N>>;

impl<F: VecStore<Fault>, K: VecStore<GroupKey>> Default for FaultQueue<F, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: VecStore<Fault>, K: VecStore<GroupKey>> FaultQueue<F, K> {
    /// An empty queue.
    pub const fn new() -> Self {
        FaultQueue {
            faults: F::EMPTY,
            failed: K::EMPTY,
        }
    }

    /// Write an empty queue at `at` without building one on the stack.
    ///
    /// # Safety
    /// `at` is valid for writes and aligned; what it held is overwritten
    /// without being dropped.
    pub unsafe fn init_at(at: *mut Self) {
        // SAFETY: fields of the place the caller vouches for.
        unsafe {
            F::init_at(core::ptr::addr_of_mut!((*at).faults));
            K::init_at(core::ptr::addr_of_mut!((*at).failed));
        }
    }

    /// Faults held (parked partials and complete groups).
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Drop the recoverable faults of a group (events are never part of one).
    fn drop_group(&mut self, key: Key) {
        self.faults
            .retain(|f| Key::of(f) != key || f.kind == FaultKind::Unrecoverable);
    }

    /// Take a fault from a driver. When the queue is full, a partial request
    /// is dropped together with the rest of its group, and the group is
    /// answered `Failure` when its last request arrives; a last request (or
    /// stall) that finds no room is answered `Failure` at once. Unrecoverable
    /// events that find no room are dropped (`Exhausted`).
    pub fn report<R: FaultResponder>(
        &mut self,
        fault: Fault,
        responder: &mut R,
    ) -> Result<(), Error> {
        let key = Key::of(&fault);
        if fault.kind != FaultKind::Unrecoverable {
            if let Some(i) = self.failed.iter().position(|k| *k == key) {
                if fault.last {
                    self.failed.swap_remove(i);
                    return responder.respond(
                        key.instance,
                        key.device,
                        key.pasid,
                        key.group,
                        Response::Failure,
                    );
                }
                // More of a group already lost: drop it too.
                return Ok(());
            }
        }
        if self.faults.push(fault).is_ok() {
            return Ok(());
        }
        match (fault.kind, fault.last) {
            (FaultKind::Unrecoverable, _) => Err(Error::Exhausted {
                what: Object::QueuedFault,
            }),
            (_, true) => {
                self.drop_group(key);
                responder.respond(
                    key.instance,
                    key.device,
                    key.pasid,
                    key.group,
                    Response::Failure,
                )
            }
            (_, false) => {
                self.drop_group(key);
                // If even the failed list is full, the group's last request
                // will be handled with the pages that were kept; the device
                // re-requests what stays unmapped.
                let _ = self.failed.push(key);
                Ok(())
            }
        }
    }

    /// Pass every complete group (in the order their last fault arrived) and
    /// every unrecoverable event to `handler`, and send exactly one response
    /// per recoverable group. Partial groups stay parked. Returns how many
    /// groups and events were handled. A responder error stops the loop; the
    /// group it failed for has been removed (its response may be lost).
    pub fn handle<H, R>(&mut self, mut handler: H, responder: &mut R) -> Result<usize, Error>
    where
        H: FnMut(&[Fault]) -> Response,
        R: FaultResponder,
    {
        self.handle_deferrable(|group| Some(handler(group)), responder)
    }

    /// [`handle`](Self::handle), but the handler may answer `None`: it took
    /// the group and will send its one response itself later (an iommufd
    /// fault object answering by cookie).
    pub fn handle_deferrable<H, R>(
        &mut self,
        mut handler: H,
        responder: &mut R,
    ) -> Result<usize, Error>
    where
        H: FnMut(&[Fault]) -> Option<Response>,
        R: FaultResponder,
    {
        let mut handled = 0;
        while let Some(last) = self.faults.iter().position(|f| f.last) {
            let key = Key::of(&self.faults[last]);
            let kind = self.faults[last].kind;
            // The group (its parked partials in arrival order, and the last)
            // is moved to the end of the queue and handed over in place: no
            // copy, so the stack does not grow with the queue's capacity.
            let moved = if kind == FaultKind::Unrecoverable {
                let f = self.faults.remove(last);
                // One was just removed: room for it.
                let _ = self.faults.push(f);
                1
            } else {
                // Every fault before `last` is a partial (it is the first
                // last-of-group in the queue); take those of this group.
                let (mut i, mut end, mut moved) = (0, last, 0);
                loop {
                    let f = self.faults[i];
                    if Key::of(&f) == key && f.kind == kind {
                        let f = self.faults.remove(i);
                        // One was just removed: room for it.
                        let _ = self.faults.push(f);
                        moved += 1;
                        if i == end {
                            break;
                        }
                        // Removing shifted the last fault down by one.
                        end -= 1;
                    } else {
                        i += 1;
                    }
                }
                moved
            };
            let start = self.faults.len() - moved;
            let answer = handler(&self.faults[start..]);
            for _ in 0..moved {
                self.faults.pop();
            }
            handled += 1;
            if let (FaultKind::PageRequest | FaultKind::Stall, Some(answer)) = (kind, answer) {
                responder.respond(key.instance, key.device, key.pasid, key.group, answer)?;
            }
        }
        Ok(handled)
    }

    /// An attachment ended: forget every fault `retired(instance, device,
    /// pasid)` selects. Each complete page-request group among them is
    /// answered `Invalid` once; partial groups are discarded (a last request
    /// arriving later finds nothing to join), as are groups remembered as
    /// lost to overflow; events are dropped. Returns how many events were
    /// dropped. A responder error stops it; the group it failed for is gone.
    pub fn retire<S, R>(&mut self, retired: S, responder: &mut R) -> Result<usize, Error>
    where
        S: Fn(u16, u32, Option<u32>) -> bool,
        R: FaultResponder,
    {
        let selects = |f: &Fault| retired(f.instance, f.device, f.pasid);
        self.failed
            .retain(|k| !retired(k.instance, k.device, k.pasid));
        while let Some(i) = self
            .faults
            .iter()
            .position(|f| f.last && f.kind != FaultKind::Unrecoverable && selects(f))
        {
            let key = Key::of(&self.faults[i]);
            self.drop_group(key);
            responder.respond(
                key.instance,
                key.device,
                key.pasid,
                key.group,
                Response::Invalid,
            )?;
        }
        let events = self
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::Unrecoverable && selects(f))
            .count();
        self.faults.retain(|f| !selects(f));
        Ok(events)
    }

    /// The device is going away: [`retire`](Self::retire) all its faults.
    pub fn remove_device<R: FaultResponder>(
        &mut self,
        instance: u16,
        device: u32,
        responder: &mut R,
    ) -> Result<usize, Error> {
        self.retire(|i, d, _| i == instance && d == device, responder)
    }
}
