//! The devices (masters) an SMMU translates: what each StreamID's STE and
//! CDs hold, and the one path by which they change (the entry writer, with
//! CFGI_STE / CFGI_CD and CMD_SYNC between steps).

use crate::addr::PhysAddr;
use crate::error::{Error, Object};
use crate::hal::Hal;

use super::cdtab::CdTab;
use super::cmd::{self, Command};
use super::ste::{self, Stage2};
use super::unit::{Unit, VMID_S1};
use super::writer::{self, EntrySlot, Install};
use super::{cd, ste::s1dss};

/// Devices one SMMU keeps configuration for at most.
pub const MAX_MASTERS: usize = 64;

/// What a device's requests without SubstreamID get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rid {
    /// Aborted.
    Abort,
    /// Untranslated.
    Bypass,
    /// Stage 1 through CD 0 of the device's CD table.
    Stage1,
    /// Stage 2.
    Stage2(Stage2),
    /// A guest's virtual STE words over the host's stage 2.
    Nested([u64; 2], Stage2),
}

/// One device's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Master {
    /// StreamID.
    pub sid: u32,
    /// CD table, once a stage-1 domain was attached.
    pub cd: Option<CdTab>,
    /// Requests without SubstreamID.
    pub rid: Rid,
    /// SubstreamIDs with a valid CD.
    pub pasids: u32,
    /// ATS enabled (STE.EATS).
    pub ats: bool,
}

impl Master {
    /// The STE this configuration needs.
    pub fn ste(&self) -> [u64; ste::DWORDS] {
        let with_cds = self.pasids > 0 || self.rid == Rid::Stage1;
        if let (true, Some(t)) = (with_cds, self.cd) {
            let mut e = ste::stage1(t.ste_view(), VMID_S1, self.ats);
            if t.bits > 0 {
                let dss = match self.rid {
                    Rid::Stage1 => s1dss::SSID0,
                    Rid::Bypass => s1dss::BYPASS,
                    _ => s1dss::TERMINATE,
                };
                ste::S1DSS.set(&mut e, dss);
                if dss == s1dss::BYPASS {
                    ste::SHCFG.set(&mut e, ste::SHCFG_INCOMING);
                }
            }
            return e;
        }
        match self.rid {
            Rid::Stage2(s) => ste::stage2(s, self.ats),
            Rid::Nested(mut g, s) => {
                // The guest's ATS only where the host enabled it for the
                // device on an SMMU with ATS (EATS is RES0 without it).
                if !self.ats {
                    ste::EATS.set(&mut g, 0);
                }
                ste::nested(g, s)
            }
            Rid::Bypass => ste::bypass(),
            Rid::Abort | Rid::Stage1 => ste::abort(),
        }
    }
}

/// An entry in memory, changed through the entry writer.
struct Slot<'a, H: Hal> {
    unit: &'a mut Unit,
    hal: &'a H,
    phys: u64,
    cfgi: Command,
}

impl<H: Hal, const N: usize> EntrySlot<N> for Slot<'_, H> {
    fn read(&self) -> [u64; N] {
        let p = self.hal.phys_to_virt(PhysAddr(self.phys)) as *const u64;
        let mut e = [0; N];
        for (i, w) in e.iter_mut().enumerate() {
            // SAFETY: an STE or CD in a table the driver allocated.
            *w = unsafe { p.add(i).read_volatile() };
        }
        e
    }

    fn write(&mut self, i: usize, value: u64) {
        let p = self.hal.phys_to_virt(PhysAddr(self.phys)) as *mut u64;
        // SAFETY: as in `read`; one word at a time, as the writer orders.
        unsafe { p.add(i).write_volatile(value) };
        self.hal.flush_dcache(p as *const u8, N * 8);
    }

    fn sync(&mut self) -> Result<(), Error> {
        if self.unit.skip_sync {
            return Ok(());
        }
        self.unit.submit(self.hal, &[self.cfgi])?;
        self.unit.sync(self.hal)
    }
}

impl Unit {
    /// The configuration of `sid`, made (aborting) if `create`.
    pub fn master(&mut self, sid: u32, create: bool) -> Result<Option<&mut Master>, Error> {
        if let Some(i) = self.masters.iter().position(|m| m.sid == sid) {
            return Ok(Some(&mut self.masters[i]));
        }
        if !create {
            return Ok(None);
        }
        self.masters
            .push(Master {
                sid,
                cd: None,
                rid: Rid::Abort,
                pasids: 0,
                ats: false,
            })
            .map_err(|_| Error::Exhausted {
                what: Object::Device,
            })?;
        Ok(self.masters.last_mut())
    }

    /// Install `sid`'s STE as `m` says it should be.
    pub fn install_ste<H: Hal>(&mut self, hal: &H, m: &Master) -> Result<Install, Error> {
        let target = m.ste();
        let table = self.strtab.as_mut().ok_or(Error::Busy {
            what: "SMMUv3 not enabled",
        })?;
        let phys = table.slot(hal, m.sid, true)?.ok_or(Error::NoMemory)?;
        let mut slot = Slot {
            unit: self,
            hal,
            phys,
            cfgi: cmd::cfgi_ste(m.sid),
        };
        writer::install(&mut slot, ste::used, &target)
    }

    /// Install `target` as CD `ssid` of `sid`'s table `t`.
    pub fn install_cd<H: Hal>(
        &mut self,
        hal: &H,
        sid: u32,
        t: &CdTab,
        ssid: u32,
        target: &[u64; cd::DWORDS],
    ) -> Result<Install, Error> {
        let (phys, new_leaf) = t.slot(hal, ssid, true)?.ok_or(Error::NoMemory)?;
        let mut slot = Slot {
            unit: self,
            hal,
            phys,
            cfgi: cmd::cfgi_cd(sid, ssid, !new_leaf),
        };
        writer::install(&mut slot, cd::used, target)
    }

    /// Free `m`'s CD table once its STE, as installed, no longer reaches
    /// it (no PASID attached, requests without SubstreamID not on stage 1):
    /// every CD of the StreamID invalidated and synced first. Where that
    /// fails the table is kept (still valid, freed at a later change): the
    /// attach it follows has already taken effect and is not undone.
    pub fn release_cd_table<H: Hal>(&mut self, hal: &H, m: &mut Master) {
        let Some(t) = m.cd else {
            return;
        };
        if m.pasids > 0 || m.rid == Rid::Stage1 {
            return;
        }
        // Without syncs (a test's negative control) the SMMU may still
        // reach the table: keep it.
        if self.skip_sync
            || self
                .submit(hal, &[cmd::cfgi_cd_all(m.sid)])
                .and_then(|()| self.sync(hal))
                .is_err()
        {
            return;
        }
        m.cd = None;
        // SAFETY: the STE installed for `m` names no CD table (checked
        // above), and the SMMU's cached CDs of the StreamID are gone.
        unsafe { t.free(hal) };
    }

    /// The STE of `sid` as memory holds it (`None`: no table for it).
    pub fn read_ste<H: Hal>(
        &mut self,
        hal: &H,
        sid: u32,
    ) -> Result<Option<[u64; ste::DWORDS]>, Error> {
        let table = self.strtab.as_mut().ok_or(Error::Busy {
            what: "SMMUv3 not enabled",
        })?;
        let Some(phys) = table.slot(hal, sid, false)? else {
            return Ok(None);
        };
        let slot = Slot {
            unit: self,
            hal,
            phys,
            cfgi: cmd::sync(),
        };
        Ok(Some(EntrySlot::<{ ste::DWORDS }>::read(&slot)))
    }
}
