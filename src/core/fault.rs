//! Fault routing: draining each instance's fault records, handing complete
//! groups to the fault target of the domain attached where they came from,
//! and iommufd-style fault objects answered by cookie.

use heapless::Vec;

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::driver::{DeviceId, IommuDriver};
use super::iommu::*;
use super::iopf::{Fault, FaultKind, Response};
use super::slots;

impl<D: IommuDriver, H: Hal + Clone, const DOMAINS: usize, const DEVICES: usize>
    Iommu<D, H, DOMAINS, DEVICES>
{
    /// Unrecoverable events that reached a domain without a fault target,
    /// or found the queue full, since the core was made.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// Drain every instance's fault records (16 at a time) and, after each
    /// batch, hand every complete group to the fault target of the domain
    /// attached where it came from (its PASID, else the requester ID), with
    /// one response per group. Handling between batches keeps a burst from
    /// overflowing the queue with complete groups. Returns the number of
    /// groups and events handled.
    pub fn process_faults(&mut self) -> Result<usize, Error> {
        let blank = Fault {
            instance: 0,
            device: 0,
            pasid: None,
            addr: 0,
            access: super::iopf::Access::empty(),
            group: 0,
            last: true,
            kind: FaultKind::Unrecoverable,
        };
        let mut handled = 0;
        for k in 0..self.instances.len() {
            let instance = self.instances[k];
            loop {
                let mut buf = [blank; 16];
                let n = self.driver.drain_faults(instance, &mut buf)?;
                for f in &buf[..n.min(buf.len())] {
                    if let Err(Error::Exhausted { .. }) = self.faults.report(*f, &mut self.driver) {
                        self.dropped_events += 1;
                    }
                }
                // Handle what is complete before draining more, so a burst
                // only overflows the queue with partial groups.
                handled += self.handle_queued()?;
                if n < buf.len() {
                    break;
                }
            }
        }
        Ok(handled)
    }

    /// Route every complete group in the queue (see `process_faults`).
    pub(super) fn handle_queued(&mut self) -> Result<usize, Error> {
        let devices = &self.devices;
        let slots = &self.slots;
        let objects = &mut self.objects;
        let next_cookie = &mut self.next_cookie;
        let dropped = &mut self.dropped_events;
        self.faults.handle_deferrable(
            |group| {
                let f = group[group.len() - 1];
                let recoverable = f.kind != FaultKind::Unrecoverable;
                let dev = DeviceId {
                    instance: f.instance,
                    id: f.device,
                };
                let target = devices
                    .iter()
                    .find(|d| d.info.dev == dev)
                    .and_then(|d| d.domain_at(f.pasid))
                    .and_then(|id| domain_ref(slots, id).ok().map(|d| (id, d.fault)));
                match target {
                    Some((id, FaultTarget::Handler(h))) => Some((h.func)(h.cookie, id, group)),
                    Some((_, FaultTarget::Object(o))) => {
                        let Ok(obj) = slots::get_mut(objects, o) else {
                            return Some(Response::Invalid);
                        };
                        let mut faults = Vec::new();
                        for g in group {
                            if faults.push(*g).is_err() {
                                return Some(Response::Failure);
                            }
                        }
                        let cookie = *next_cookie;
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
                        *next_cookie = next_cookie.wrapping_add(1).max(1);
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

    pub(super) fn object_ref(&self, id: FaultObjectId) -> Result<&FaultObject, Error> {
        slots::get(&self.objects, id)
    }

    pub(super) fn object_mut(&mut self, id: FaultObjectId) -> Result<&mut FaultObject, Error> {
        slots::get_mut(&mut self.objects, id)
    }

    /// A fault object: route a domain's faults to it with
    /// [`set_fault_target`](Self::set_fault_target), read them with
    /// [`fault_read`](Self::fault_read), answer with
    /// [`fault_respond`](Self::fault_respond).
    pub fn alloc_fault_object(&mut self) -> Result<FaultObjectId, Error> {
        let i = slots::vacant(&self.objects, Object::FaultObject)?;
        let object = FaultObject {
            users: 0,
            pending: Vec::new(),
        };
        Ok(slots::fill(&mut self.objects, i, object))
    }

    /// Free a fault object no domain routes to; its unanswered page requests
    /// are answered `Invalid`.
    pub fn free_fault_object(&mut self, id: FaultObjectId) -> Result<(), Error> {
        if self.object_ref(id)?.users != 0 {
            return Err(Error::Busy {
                what: "domains still route faults to this object",
            });
        }
        let o = slots::get_mut(&mut self.objects, id)?;
        while let Some(p) = o.pending.pop() {
            p.answer(&mut self.driver, Response::Invalid)?;
        }
        slots::take(&mut self.objects, id)?;
        Ok(())
    }

    /// Hand out the faults of groups not read yet, whole groups only, as many
    /// as fit in `out`; returns how many were written. Events are handed out
    /// once and forgotten; page-request groups wait for their response.
    pub fn fault_read(&mut self, id: FaultObjectId, out: &mut [UserFault]) -> Result<usize, Error> {
        let o = self.object_mut(id)?;
        let mut n = 0;
        for p in o.pending.iter_mut().filter(|p| !p.read) {
            if n + p.faults.len() > out.len() {
                break;
            }
            for f in &p.faults {
                out[n] = UserFault {
                    cookie: p.cookie,
                    fault: *f,
                };
                n += 1;
            }
            p.read = true;
        }
        o.pending
            .retain(|p| !(p.read && p.last().kind == FaultKind::Unrecoverable));
        Ok(n)
    }

    /// Answer the group a read fault belonged to. Unknown or unread cookies
    /// are refused (`NotFound`); if the driver fails to send, the group
    /// stays pending.
    pub fn fault_respond(
        &mut self,
        id: FaultObjectId,
        cookie: u32,
        response: Response,
    ) -> Result<(), Error> {
        let o = slots::get(&self.objects, id)?;
        let i = o
            .pending
            .iter()
            .position(|p| p.read && p.cookie == cookie)
            .ok_or(Error::NotFound {
                what: Object::FaultCookie,
            })?;
        o.pending[i].answer(&mut self.driver, response)?;
        self.object_mut(id)?.pending.remove(i);
        Ok(())
    }
}
