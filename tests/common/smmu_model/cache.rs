//! The SMMU's caches as the model keeps them: configuration caches (STEs by
//! StreamID, CDs by StreamID and CD index) and a TLB of leaf translations
//! tagged as the architecture tags them (16.2 "TLB tagging"): stage 1 by
//! VMID and ASID (or global), stage 2 by VMID and IPA, nested entries by
//! VMID and ASID. A transaction through the model fills them on a miss and
//! uses them on a hit, so a change the driver did not invalidate keeps
//! translating the old way, as on hardware.
//!
//! What each command evicts follows chapter 4: CFGI_STE one STE, CFGI_ALL
//! everything, CFGI_CD / CFGI_CD_ALL the CDs; TLBI_NH_* stage-1 and nested
//! entries under a VMID (TLBI_NH_ASID not global ones), TLBI_S2_IPA
//! stage-2-only entries (never the combined nested ones),
//! TLBI_S12_VMALL everything of a VMID, TLBI_NSNH_ALL everything. A range
//! TLBI with TTL only reaches leaves at that level.

use std::collections::BTreeMap;

use super::cmdq::{Cmd, TlbiAddr};
use super::entry::{Cd, Ste};
use super::request::{EventRec, Kind, Req, Translated, WalkFault, class};
use super::spec::{SmmuConfig, evt};
use super::walk::{Ctx, Walker, s1_permits, s2_permits};

#[derive(Clone, Copy, Debug)]
pub struct TlbLine {
    pub vmid: u16,
    pub asid: Option<u16>,
    pub kind: Kind,
    pub global: bool,
    pub base: u64,
    pub size: u64,
    pub level: u8,
    /// The translation of `base`.
    pub t: Translated,
}

/// Counters, to show a test the caches were used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub ste_hits: u64,
    pub cd_hits: u64,
    pub tlb_hits: u64,
}

#[derive(Default)]
pub struct Caches {
    pub ste: BTreeMap<u32, Ste>,
    pub cd: BTreeMap<(u32, u32), Cd>,
    pub tlb: Vec<TlbLine>,
    pub stats: CacheStats,
}

fn covers(l: &TlbLine, a: &TlbiAddr) -> bool {
    if a.tg != 0 && a.ttl != 0 && l.level != a.ttl {
        return false;
    }
    let (s, e) = a.range();
    l.base < e && s < l.base.saturating_add(l.size)
}

fn stage1_like(k: Kind) -> bool {
    matches!(k, Kind::Stage1 | Kind::Nested)
}

impl Caches {
    /// Forget everything.
    pub fn clear(&mut self) {
        self.ste.clear();
        self.cd.clear();
        self.tlb.clear();
    }

    /// Cached entries: (STEs, CDs, TLB lines).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.ste.len(), self.cd.len(), self.tlb.len())
    }

    /// The configuration of `req`, through the configuration caches.
    pub fn context(&mut self, w: &Walker<'_>, req: &Req) -> Result<Ctx, WalkFault> {
        let ste = match self.ste.get(&req.sid) {
            Some(s) => {
                self.stats.ste_hits += 1;
                *s
            }
            None => {
                let s = w.legal_ste(req)?;
                self.ste.insert(req.sid, s);
                s
            }
        };
        let (cds, stats) = (&mut self.cd, &mut self.stats);
        w.context_with(ste, req, |index| {
            if let Some(cd) = cds.get(&(req.sid, index)) {
                stats.cd_hits += 1;
                return Ok(*cd);
            }
            let cd = w.cd_of(&ste, index, req)?;
            if cd.illegal(w.id).is_some() {
                return Err(WalkFault::Event {
                    rec: EventRec::config(evt::C_BAD_CD, req),
                    record: true,
                    stall: false,
                });
            }
            cds.insert((req.sid, index), cd);
            Ok(cd)
        })
    }

    /// Translate `req` through the caches.
    pub fn translate(&mut self, w: &Walker<'_>, req: &Req) -> Result<Translated, WalkFault> {
        let ctx = self.context(w, req)?;
        let (vmid, asid, kind) = match (ctx.cd, ctx.s2) {
            (None, false) => return Ok(Translated::untranslated(req, Kind::Bypass)),
            (None, true) => (w.vmid(&ctx.ste), None, Kind::Stage2),
            (Some((_, cd)), s2) => (
                w.vmid(&ctx.ste),
                Some(w.asid(&cd)),
                if s2 { Kind::Nested } else { Kind::Stage1 },
            ),
        };
        let hit = self.tlb.iter().find(|l| {
            l.vmid == vmid
                && l.kind == kind
                && (kind == Kind::Stage2 || l.global || l.asid == asid)
                && req.addr >= l.base
                && req.addr - l.base < l.size
        });
        if let Some(l) = hit {
            self.stats.tlb_hits += 1;
            let t = Translated {
                pa: l.t.pa + (req.addr - l.base),
                ..l.t
            };
            return check_cached(&ctx, w.id, &t, req);
        }
        let t = w.tables(&ctx, req)?;
        let base = req.addr & !(t.page - 1);
        self.tlb.push(TlbLine {
            vmid,
            asid,
            kind,
            global: t.global,
            base,
            size: t.page,
            level: t.level,
            t: Translated {
                pa: t.pa - (req.addr - base),
                ..t
            },
        });
        Ok(t)
    }

    /// Apply a command (VMIDs and ASIDs as the SMMU compares them).
    pub fn invalidate(&mut self, cmd: &Cmd, id: &SmmuConfig) {
        let vm = |v: u16| match (id.s2p(), id.has_vmid16()) {
            (false, _) => 0,
            (true, true) => v,
            (true, false) => v & 0xff,
        };
        let asid_of = |a: u16| if id.has_asid16() { a } else { a & 0xff };
        match *cmd {
            Cmd::CfgiSte { sid, .. } => {
                self.ste.remove(&sid);
            }
            Cmd::CfgiSteRange { range, .. } if range >= 31 => {
                self.ste.clear();
                self.cd.clear();
            }
            Cmd::CfgiSteRange { sid, range } => {
                let n = 1u64 << (range + 1);
                let start = u64::from(sid) & !(n - 1);
                self.ste
                    .retain(|&s, _| !(start..start + n).contains(&u64::from(s)));
            }
            Cmd::CfgiCd { sid, ssid, .. } => {
                self.cd.remove(&(sid, ssid));
            }
            Cmd::CfgiCdAll { sid } => self.cd.retain(|&(s, _), _| s != sid),
            Cmd::TlbiNhAll { vmid } => {
                let v = vm(vmid);
                self.tlb.retain(|l| !(stage1_like(l.kind) && l.vmid == v));
            }
            Cmd::TlbiNhAsid { vmid, asid } => {
                let (v, a) = (vm(vmid), asid_of(asid));
                self.tlb.retain(|l| {
                    !(stage1_like(l.kind) && l.vmid == v && !l.global && l.asid == Some(a))
                });
            }
            Cmd::TlbiNhVa { vmid, asid, a } => {
                let (v, x) = (vm(vmid), asid_of(asid));
                self.tlb.retain(|l| {
                    !(stage1_like(l.kind)
                        && l.vmid == v
                        && (l.global || l.asid == Some(x))
                        && covers(l, &a))
                });
            }
            Cmd::TlbiNhVaa { vmid, a } => {
                let v = vm(vmid);
                self.tlb
                    .retain(|l| !(stage1_like(l.kind) && l.vmid == v && covers(l, &a)));
            }
            Cmd::TlbiS12Vmall { vmid } => {
                let v = vm(vmid);
                self.tlb.retain(|l| l.vmid != v);
            }
            Cmd::TlbiS2Ipa { vmid, a } => {
                let v = vm(vmid);
                self.tlb
                    .retain(|l| !(l.kind == Kind::Stage2 && l.vmid == v && covers(l, &a)));
            }
            Cmd::TlbiNsnhAll => self.tlb.clear(),
            _ => {}
        }
    }
}

/// A cached translation's permissions checked against `req`: the fault a
/// walk would have raised.
fn check_cached(
    ctx: &Ctx,
    id: &SmmuConfig,
    t: &Translated,
    req: &Req,
) -> Result<Translated, WalkFault> {
    if let (Some(p), Some((_, cd))) = (t.s1, ctx.cd) {
        if !s1_permits(&p, req) {
            let stall = cd.s && id.stall() != 1;
            return Err(WalkFault::Event {
                rec: EventRec::translation(evt::F_PERMISSION, req, false, class::IN, 0),
                record: cd.r || stall,
                stall,
            });
        }
    }
    if let Some(p) = t.s2 {
        if !s2_permits(&p, req) {
            let stall = ctx.ste.s2s && id.stall() != 1;
            return Err(WalkFault::Event {
                rec: EventRec::translation(evt::F_PERMISSION, req, true, class::IN, 0),
                record: ctx.ste.s2r || stall,
                stall,
            });
        }
    }
    Ok(*t)
}
