//! A fake SMMUv3: the register block the driver is given, the emulator
//! thread that plays the hardware behind it, and what a test asks of it
//! (its log, walks and DMA through its tables and caches, page requests,
//! watched entry changes, knobs). Dropping it stops and joins the thread,
//! then fails the test if the model saw the driver break a rule.

use std::time::Duration;

use super::cmdq::Cmd;
use super::emu::{Emu, Event, Knobs};
use super::entry::{Cd, Ste};
use super::hal::ModelHal;
use super::records::PriReq;
use super::request::{Kind, Req, Translated, WalkFault};
use super::spec::{BLOCK, SmmuConfig, cr0, reg};
use super::unit::Unit;
use super::watch::Changes;

pub struct FakeSmmu {
    unit: Unit<Emu>,
    pub id: SmmuConfig,
}

/// The register block, its log and state, as `Unit` gives them.
impl std::ops::Deref for FakeSmmu {
    type Target = Unit<Emu>;

    fn deref(&self) -> &Unit<Emu> {
        &self.unit
    }
}

impl std::ops::DerefMut for FakeSmmu {
    fn deref_mut(&mut self) -> &mut Unit<Emu> {
        &mut self.unit
    }
}

impl FakeSmmu {
    /// An SMMU with these identification registers, its emulator running.
    pub fn new(hal: &ModelHal, id: SmmuConfig) -> Self {
        let unit = Unit::new(hal, BLOCK, |regs| Emu::new(id, regs, hal.clone()));
        FakeSmmu { unit, id }
    }

    /// A register as the driver sees it.
    pub fn reg32(&self, off: usize) -> u32 {
        self.unit.regs().get32(off)
    }

    pub fn reg64(&self, off: usize) -> u64 {
        self.unit.regs().get64(off)
    }

    /// The commands executed (emptying the log).
    pub fn take_cmds(&self) -> Vec<Cmd> {
        cmds(&self.take_log())
    }

    /// Walk the tables the SMMU latched, without its caches (nothing
    /// recorded).
    pub fn walk(&self, req: Req) -> Result<Translated, WalkFault> {
        self.settle();
        let st = self.lock();
        if st.cr0 & cr0::SMMUEN == 0 {
            return if st.gbpa_abort {
                Err(WalkFault::Abort("SMMUEN = 0 with GBPA.ABORT"))
            } else {
                Ok(Translated::untranslated(&req, Kind::Untranslated))
            };
        }
        st.walker()
            .expect("SMMUEN without a stream table")
            .walk(&req)
    }

    /// A transaction through the SMMU: its caches, and an event recorded
    /// when it faults (a stalled one waits for a RESUME).
    pub fn dma(&self, req: Req) -> Result<Translated, WalkFault> {
        self.settle();
        self.lock().transact(&req)
    }

    /// `sid`'s STE as memory holds it (`None`: no stream table or no
    /// level-2 table for it).
    pub fn ste(&self, sid: u32) -> Option<Ste> {
        self.settle();
        let st = self.lock();
        st.walker()?.ste(sid).ok()
    }

    /// CD `ssid` of `sid`'s STE (a host CD table), as memory holds it.
    pub fn cd(&self, sid: u32, ssid: u32) -> Option<Cd> {
        self.settle();
        let st = self.lock();
        let w = st.walker()?;
        let ste = w.ste(sid).ok()?;
        if !ste.s1() {
            return None;
        }
        w.cd_of(&ste, ssid, &Req::read(sid, 0).ssid(ssid)).ok()
    }

    /// A page request from a device; where it went in the PRI queue.
    pub fn page_request(&self, r: PriReq) -> Option<u32> {
        self.lock().page_request(r)
    }

    /// Record every entry change from now on.
    pub fn watch(&self) {
        self.settle();
        self.lock().watch();
    }

    /// The entry changes since `watch`.
    pub fn changes(&self) -> Changes {
        self.settle();
        self.lock().changes()
    }

    /// Turn the knobs.
    pub fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.lock().knobs)
    }

    /// Turn the knobs from another thread after `delay` (while the driver
    /// is waiting on this one).
    pub fn knobs_after(&self, delay: Duration, f: impl FnOnce(&mut Knobs) + Send + 'static) {
        let s = self.unit.shared();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            f(&mut s.lock().knobs);
        });
    }

    /// Empty the caches (as if everything was invalidated).
    pub fn clear_caches(&self) {
        self.lock().caches.clear();
    }

    /// Cached (STEs, CDs, TLB lines).
    pub fn cache_sizes(&self) -> (usize, usize, usize) {
        self.lock().caches.sizes()
    }

    pub fn violations(&self) -> Vec<String> {
        self.settle();
        self.lock().violations.clone()
    }

    /// GERROR ^ GERRORN.
    pub fn active_errors(&self) -> u32 {
        self.settle();
        self.lock().active_errors()
    }

    /// CR0ACK as the driver reads it.
    pub fn cr0ack(&self) -> u32 {
        self.settle();
        self.reg32(reg::CR0ACK)
    }

    /// Transactions stalled and not yet resumed.
    pub fn stalled(&self) -> usize {
        self.settle();
        self.lock().stalls.len()
    }
}

/// The commands of a log, in order.
pub fn cmds(log: &[Event]) -> Vec<Cmd> {
    log.iter()
        .filter_map(|e| match e {
            Event::Cmd { cmd, .. } => Some(*cmd),
            _ => None,
        })
        .collect()
}

/// The commands of a log without the CMD_SYNCs.
pub fn cmds_no_syncs(log: &[Event]) -> Vec<Cmd> {
    cmds(log).into_iter().filter(|c| !c.is_sync()).collect()
}

/// How many CMD_SYNCs a log executed.
pub fn syncs(log: &[Event]) -> usize {
    cmds(log).iter().filter(|c| c.is_sync()).count()
}

/// How many commands of this name a log executed.
pub fn count(log: &[Event], name: &str) -> usize {
    cmds(log).iter().filter(|c| c.name() == name).count()
}
