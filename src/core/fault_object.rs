//! iommufd-style fault objects: a domain's faults queued for a user, read
//! whole groups at a time and answered later by cookie.

use crate::error::{Error, Object};
use crate::hal::Hal;

use super::config::{Capacities, VecStore};
use super::driver::IommuDriver;
use super::iommu::*;
use super::iopf::{FaultKind, Response};
use super::slots;

impl<D: IommuDriver, H: Hal + Clone, C: Capacities> Iommu<D, H, C> {
    pub(super) fn object_ref(&self, id: FaultObjectId) -> Result<&FaultObject<C>, Error> {
        slots::get(self.objects.as_ref(), id)
    }

    pub(super) fn object_mut(&mut self, id: FaultObjectId) -> Result<&mut FaultObject<C>, Error> {
        slots::get_mut(self.objects.as_mut(), id)
    }

    /// A fault object: route a domain's faults to it with
    /// [`set_fault_target`](Self::set_fault_target), read them with
    /// [`fault_read`](Self::fault_read), answer with
    /// [`fault_respond`](Self::fault_respond).
    pub fn alloc_fault_object(&mut self) -> Result<FaultObjectId, Error> {
        let i = slots::vacant(self.objects.as_ref(), Object::FaultObject)?;
        let object = FaultObject {
            users: 0,
            pending: VecStore::EMPTY,
        };
        Ok(slots::fill(self.objects.as_mut(), i, object))
    }

    /// Free a fault object no domain routes to; its unanswered page requests
    /// are answered `Invalid`.
    pub fn free_fault_object(&mut self, id: FaultObjectId) -> Result<(), Error> {
        if self.object_ref(id)?.users != 0 {
            return Err(Error::Busy {
                what: "domains still route faults to this object",
            });
        }
        let o = slots::get_mut(self.objects.as_mut(), id)?;
        while let Some(p) = o.pending.pop() {
            p.answer(&mut self.driver, Response::Invalid)?;
        }
        slots::take(self.objects.as_mut(), id)?;
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
            for f in p.faults.iter() {
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
        let o = slots::get(self.objects.as_ref(), id)?;
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
