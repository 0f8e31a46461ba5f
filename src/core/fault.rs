//! Fault routing and the end of an attachment's life.
//!
//! [`Iommu::process_faults`] drains each instance's fault records and hands
//! every complete group to the fault target of the domain attached where it
//! came from. When an attachment changes (attach, replace, detach, unbind,
//! teardown, device removal), the core settles the faults raised under the
//! old one before the call returns: the driver makes the device's faults
//! visible ([`IommuDriver::flush_faults`]), the instance's queue is drained,
//! each pending page-request group of the old attachment is answered
//! `Invalid` exactly once (as Linux's iommufd does at detach), its partial
//! groups are discarded, its events go to the old domain's target, and
//! nothing of it reaches a handler afterwards. If that flush fails, the
//! attachment is remembered as unflushed: its faults are answered or
//! dropped on sight, its PASID is not handed out again, and later calls
//! retry the flush.

use crate::error::Error;
use crate::hal::Hal;

use super::config::{Capacities, VecStore};
use super::driver::{DeviceId, IommuDriver};
use super::iommu::*;
use super::iopf::{Fault, FaultKind, Response};
use super::slots;

/// The faults of an attachment that ended: those of one device, at its
/// requester ID, at one PASID, or all of them.
pub(super) struct Retired<C: Capacities> {
    pub(super) dev: DeviceId,
    scope: Scope<C>,
}

enum Scope<C: Capacities> {
    /// Untagged requests; with `Some(attached)`, also requests tagged with
    /// any PASID not in `attached` (the requester ID's domain took them).
    Rid(Option<C::DevicePasids<u32>>),
    /// Requests tagged with this PASID.
    Pasid(u32),
    /// Everything the device raised.
    Device,
}

impl<C: Capacities> Retired<C> {
    /// Every fault of `dev`.
    pub(super) fn device(dev: DeviceId) -> Self {
        Retired {
            dev,
            scope: Scope::Device,
        }
    }

    /// The faults of `device`'s attachment at `pasid` (`None`: the
    /// requester ID, which takes unattached PASIDs too if `rid_pasids`), as
    /// the device's state says before the change.
    pub(super) fn at(device: &Device<C>, pasid: Option<u32>, rid_pasids: bool) -> Self {
        let scope = match pasid {
            Some(p) => Scope::Pasid(p),
            None => Scope::Rid(rid_pasids.then(|| {
                let mut attached = C::DevicePasids::<u32>::EMPTY;
                for a in device.pasids.iter() {
                    // As many as the device has attachments: it fits.
                    let _ = attached.push(a.pasid);
                }
                attached
            })),
        };
        Retired {
            dev: device.info.dev,
            scope,
        }
    }

    /// Whether a fault from (`instance`, `device`, `pasid`) is one of them.
    pub(super) fn matches(&self, instance: u16, device: u32, pasid: Option<u32>) -> bool {
        if self.dev.instance != instance || self.dev.id != device {
            return false;
        }
        match (&self.scope, pasid) {
            (Scope::Device, _) => true,
            (Scope::Pasid(p), Some(q)) => *p == q,
            (Scope::Pasid(_), None) => false,
            (Scope::Rid(_), None) => true,
            (Scope::Rid(Some(attached)), Some(q)) => !attached.contains(&q),
            (Scope::Rid(None), Some(_)) => false,
        }
    }

    fn covers(&self, f: &Fault) -> bool {
        self.matches(f.instance, f.device, f.pasid)
    }

    /// Whether these are the faults of a PASID from the global allocator.
    pub(super) fn names_pasid(&self, pasid: u32) -> bool {
        matches!(self.scope, Scope::Pasid(p) if p == pasid)
    }
}

/// The domain a fault goes to, and its fault target: the domain attached at
/// the fault's PASID, or at the requester ID for an untagged fault or one
/// whose PASID the requester ID's domain takes. `None` when nothing that
/// can handle faults (a paging, SVA or nested domain) is attached there.
fn route<D: IommuDriver, H: Hal, C: Capacities>(
    devices: &[Device<C>],
    slots: &Domains<D, H, C>,
    f: &Fault,
) -> Option<(DomainId, FaultTarget)> {
    let dev = DeviceId {
        instance: f.instance,
        id: f.device,
    };
    let d = devices.iter().find(|d| d.info.dev == dev)?;
    let id = match f.pasid.and_then(|p| d.domain_at(Some(p))) {
        Some(id) => id,
        None if f.pasid.is_none() => d.rid,
        None => {
            let rid = domain_ref(slots, d.rid).ok()?;
            if !rid.hw.user_pasids {
                return None;
            }
            d.rid
        }
    };
    domain_ref(slots, id).ok().map(|d| (id, d.fault))
}

/// Fault records drained from the driver at a time.
const BATCH: usize = 16;

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    /// Unrecoverable events that reached a domain without a fault target,
    /// found the queue full, or belonged to an attachment that ended before
    /// they could be delivered, since the core was made.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// Drain every instance's fault records (16 at a time) and, after each
    /// batch, hand every complete group to the fault target of the domain
    /// attached where it came from (its PASID, else the requester ID), with
    /// one response per group. Handling between batches keeps a burst from
    /// overflowing the queue with complete groups. Partial requests where
    /// nothing can take them are not parked. Attachments whose faults could
    /// not be flushed when they ended are flushed again; the first error is
    /// returned after every instance was drained. Returns the number of
    /// groups and events handled.
    pub fn process_faults(&mut self) -> Result<usize, Error> {
        if !D::REPORTS_FAULTS {
            return Ok(0);
        }
        let mut handled = 0;
        let mut first_err = None;
        for k in 0..self.instances.len() {
            let instance = self.instances[k];
            match self.drain(instance, None) {
                Ok(n) => handled += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            if let Err(e) = self.retry_unflushed(|r| r.dev.instance == instance) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(handled),
        }
    }

    /// Drain `instance` until the driver has nothing more, taking each fault
    /// (`ending`: an attachment being changed) and handling what is complete
    /// after each batch.
    fn drain(&mut self, instance: u16, ending: Option<&Retired<C>>) -> Result<usize, Error> {
        let mut handled = 0;
        loop {
            let mut buf = [Fault::EMPTY; BATCH];
            let n = self.driver.drain_faults(instance, &mut buf)?;
            for f in &buf[..n.min(BATCH)] {
                self.take(*f, ending)?;
            }
            // Handle what is complete before draining more, so a burst
            // only overflows the queue with partial groups.
            handled += self.handle_queued()?;
            if n < BATCH {
                return Ok(handled);
            }
        }
    }

    /// One drained fault. A page request of an ending (or unflushed)
    /// attachment is answered `Invalid` at its last request and otherwise
    /// dropped; an event of an unflushed one is dropped (an ending one's
    /// still goes to the old domain, which is attached until the change
    /// completes). A partial request nothing can take is not parked.
    fn take(&mut self, f: Fault, ending: Option<&Retired<C>>) -> Result<(), Error> {
        let recoverable = f.kind != FaultKind::Unrecoverable;
        let by_change = ending.is_some_and(|r| r.covers(&f)) || self.tearing_down(&f);
        let by_unflushed = self.unflushed.iter().any(|r| r.covers(&f));
        if recoverable && (by_change || by_unflushed) {
            if f.last {
                return self.driver.respond(
                    f.instance,
                    f.device,
                    f.pasid,
                    f.group,
                    Response::Invalid,
                );
            }
            return Ok(());
        }
        if !recoverable && by_unflushed && !by_change {
            self.dropped_events += 1;
            return Ok(());
        }
        if recoverable && !f.last && route(&self.devices, self.slots.as_ref(), &f).is_none() {
            return Ok(());
        }
        if let Err(Error::Exhausted { .. }) = self.faults.report(f, &mut self.driver) {
            self.dropped_events += 1;
        }
        Ok(())
    }

    /// Whether `f` goes to an SVA domain of the address space being torn
    /// down: its attachments all end in this call, so none of its requests
    /// is handed to the space's handler any more.
    fn tearing_down(&self, f: &Fault) -> bool {
        let Some(&space) = self.tearing.as_ref() else {
            return false;
        };
        route(&self.devices, self.slots.as_ref(), f).is_some_and(|(id, _)| {
            domain_ref(self.slots.as_ref(), id)
                .is_ok_and(|d| matches!(d.data, Data::Sva { space: s, .. } if s == space))
        })
    }

    /// Flush the faults of an attachment that is ending (the hardware no
    /// longer translates through it; the core's state still names it): make
    /// the device's faults visible, drain its instance, then forget
    /// everything of it that is still held.
    pub(super) fn settle(&mut self, r: &Retired<C>) -> Result<(), Error> {
        if !D::REPORTS_FAULTS {
            // No fault was ever taken: nothing can be pending.
            return Ok(());
        }
        let info = self.device(r.dev)?;
        self.driver.flush_faults(&info)?;
        self.drain(r.dev.instance, Some(r))?;
        self.purge(r)
    }

    /// Drop what the core holds of `r`: each complete page-request group
    /// answered `Invalid` once, partial groups discarded, events dropped
    /// (counted), in the queue and in every fault object, read or not.
    fn purge(&mut self, r: &Retired<C>) -> Result<(), Error> {
        let events = self
            .faults
            .retire(|i, d, p| r.matches(i, d, p), &mut self.driver)?;
        self.dropped_events += events as u64;
        for obj in slots::live_mut(self.objects.as_mut()) {
            while let Some(i) = obj.pending.iter().position(|p| r.covers(&p.last())) {
                let group = obj.pending.remove(i);
                if group.last().kind == FaultKind::Unrecoverable {
                    self.dropped_events += 1;
                }
                group.answer(&mut self.driver, Response::Invalid)?;
            }
        }
        Ok(())
    }

    /// Flush again the unflushed attachments `which` selects; each one that
    /// succeeds is forgotten and the PASIDs it held back are freed. Stops at
    /// the first failure.
    pub(super) fn retry_unflushed(
        &mut self,
        which: impl Fn(&Retired<C>) -> bool,
    ) -> Result<(), Error> {
        let mut i = 0;
        let result = loop {
            if i >= self.unflushed.len() {
                break Ok(());
            }
            if !which(&self.unflushed[i]) {
                i += 1;
                continue;
            }
            // Out of the list while it is flushed: `settle` treats its faults
            // as ending; back in if the flush fails again.
            let r = self.unflushed.swap_remove(i);
            if let Err(e) = self.settle(&r) {
                // Its slot was just freed.
                let _ = self.unflushed.push(r);
                break Err(e);
            }
        };
        self.release_deferred();
        result
    }

    /// Route every complete group in the queue (see `process_faults`).
    pub(super) fn handle_queued(&mut self) -> Result<usize, Error> {
        let devices = &self.devices;
        let slots = self.slots.as_ref();
        let objects = self.objects.as_mut();
        let last_cookie = &mut self.last_cookie;
        let dropped = &mut self.dropped_events;
        self.faults.handle_deferrable(
            |group| {
                let f = group[group.len() - 1];
                let recoverable = f.kind != FaultKind::Unrecoverable;
                match route(devices, slots, &f) {
                    Some((id, FaultTarget::Handler(h))) => Some((h.func)(h.cookie, id, group)),
                    Some((_, FaultTarget::Object(o))) => {
                        let Ok(obj) = slots::get_mut(objects, o) else {
                            return Some(Response::Invalid);
                        };
                        let mut faults = C::GroupFaults::<Fault>::EMPTY;
                        for g in group {
                            if faults.push(*g).is_err() {
                                return Some(Response::Failure);
                            }
                        }
                        let cookie = last_cookie.wrapping_add(1).max(1);
                        let pending = Pending {
                            cookie,
                            faults,
                            read: false,
                        };
                        if obj.pending.push(pending).is_err() {
                            if !recoverable {
                                *dropped += 1;
                            }
                            return Some(Response::Failure);
                        }
                        *last_cookie = cookie;
                        // Events are queued for reading too; they are never answered.
                        if recoverable {
                            None
                        } else {
                            Some(Response::Invalid)
                        }
                    }
                    _ => {
                        if !recoverable {
                            *dropped += 1;
                        }
                        Some(Response::Invalid)
                    }
                }
            },
            &mut self.driver,
        )
    }
}
