//! The unit's translation caches as the model keeps them: a context cache
//! (by source-id, tagged with the legacy entry's DID), a PASID cache (by
//! source-id and PASID, tagged with the entry's DID) and an IOTLB (leaf
//! translations tagged with DID, and with the PASID for first-level, nested
//! and pass-through entries). A DMA through the model fills them on a miss
//! and uses them on a hit, so a change the driver did not invalidate keeps
//! translating the old way, as on hardware.
//!
//! What each descriptor evicts follows the specification's invalidation
//! guidance (6.5.2, table "Guidance to Software for Invalidations"): the
//! IOTLB descriptor reaches second-level-only and nested entries of a DID;
//! the PASID-based IOTLB descriptor reaches first-level, nested and
//! pass-through entries of a (DID, PASID). Under caching mode (CAP.CM) the
//! caches also keep what was not present (not-present context entries under
//! DID 0). A second-level paging-structure cache, tagged by DID only, is
//! kept beside these (`walk::PscLine`, emptied in `emu`): only IOTLB
//! descriptors reach it, page-selective ones unless their hint says only
//! leaves changed.

use std::collections::BTreeMap;

use super::inv::{CcScope, Inv, IotlbScope, PcScope, PiotlbScope};
use super::walk::{Ctx, Kind, PasidEnt, Req, Translated, WalkFault, Walker, pgtt, tt};

#[derive(Clone, Copy, Debug)]
struct CtxLine {
    /// `None`: cached as not present (caching mode).
    ctx: Option<Ctx>,
    /// The DID the entry is tagged with (legacy entries; 0 for a cached
    /// not-present one); scalable entries carry none.
    did: Option<u16>,
}

#[derive(Clone, Copy, Debug)]
struct PasidLine {
    entry: Option<PasidEnt>,
}

#[derive(Clone, Copy, Debug)]
struct TlbLine {
    did: u16,
    /// First-level, nested and pass-through entries are tagged with it.
    pasid: Option<u32>,
    kind: Kind,
    base: u64,
    size: u64,
    /// `Err`: a cached not-present leaf (caching mode).
    result: Result<Translated, WalkFault>,
}

/// Counters, to show a test the caches were used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub context_hits: u64,
    pub pasid_hits: u64,
    pub iotlb_hits: u64,
}

#[derive(Default)]
pub struct Caches {
    ctx: BTreeMap<u16, CtxLine>,
    pasid: BTreeMap<(u16, u32), PasidLine>,
    iotlb: Vec<TlbLine>,
    pub stats: CacheStats,
}

fn overlaps(base: u64, size: u64, addr: u64, am: u8) -> bool {
    let len = 4096u64 << am;
    base < addr.saturating_add(len) && addr < base.saturating_add(size)
}

fn kind_of(pgtt_value: u8) -> Kind {
    match pgtt_value {
        pgtt::FIRST => Kind::FirstLevel,
        pgtt::SECOND => Kind::SecondLevel,
        pgtt::NESTED => Kind::Nested,
        _ => Kind::PassThrough,
    }
}

impl Caches {
    /// Forget everything (a unit reset).
    pub fn clear(&mut self) {
        self.ctx.clear();
        self.pasid.clear();
        self.iotlb.clear();
    }

    /// Cached entries: (context, PASID, IOTLB).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.ctx.len(), self.pasid.len(), self.iotlb.len())
    }

    /// Translate `req`, through the caches.
    pub fn translate(
        &mut self,
        w: &Walker<'_>,
        cm: bool,
        req: &Req,
    ) -> Result<Translated, WalkFault> {
        let ctx = self.context(w, cm, req.sid)?;
        match ctx {
            Ctx::Legacy(c) => {
                if req.pasid.is_some() {
                    return Err(WalkFault::PasidBlocked);
                }
                if c.tt == tt::PASS_THROUGH {
                    return w.through_legacy(&c, req);
                }
                self.tlb(cm, c.did, None, Kind::SecondLevel, req, || {
                    w.through_legacy(&c, req)
                })
            }
            Ctx::Scalable(c) => {
                let pasid = w.pasid_of(&c, req)?;
                let e = self.pasid_entry(w, cm, req.sid, &c, pasid)?;
                let kind = kind_of(e.pgtt);
                let tag = (kind != Kind::SecondLevel).then_some(pasid);
                self.tlb(cm, e.did, tag, kind, req, || w.through_pasid_entry(&e, req))
            }
        }
    }

    fn context(&mut self, w: &Walker<'_>, cm: bool, sid: u16) -> Result<Ctx, WalkFault> {
        if let Some(line) = self.ctx.get(&sid) {
            self.stats.context_hits += 1;
            return line.ctx.ok_or(WalkFault::ContextNotPresent);
        }
        let negative = CtxLine {
            ctx: None,
            did: Some(0),
        };
        let ctx = match w.context(sid) {
            Ok(c) => c,
            Err(e @ WalkFault::RootNotPresent) => {
                if cm {
                    self.ctx.insert(sid, negative);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if !ctx.present() {
            if cm {
                self.ctx.insert(sid, negative);
            }
            return Err(WalkFault::ContextNotPresent);
        }
        w.check_context(&ctx)?;
        let did = match ctx {
            Ctx::Legacy(c) => Some(c.did),
            Ctx::Scalable(_) => None,
        };
        self.ctx.insert(
            sid,
            CtxLine {
                ctx: Some(ctx),
                did,
            },
        );
        Ok(ctx)
    }

    fn pasid_entry(
        &mut self,
        w: &Walker<'_>,
        cm: bool,
        sid: u16,
        c: &super::walk::ScalableCtx,
        pasid: u32,
    ) -> Result<PasidEnt, WalkFault> {
        if let Some(line) = self.pasid.get(&(sid, pasid)) {
            self.stats.pasid_hits += 1;
            return line.entry.ok_or(WalkFault::PasidEntryNotPresent);
        }
        let e = match w.pasid_entry(c, pasid) {
            Ok(e) if e.present => e,
            Ok(_) | Err(WalkFault::PasidDirNotPresent) => {
                if cm {
                    self.pasid.insert((sid, pasid), PasidLine { entry: None });
                }
                return Err(WalkFault::PasidEntryNotPresent);
            }
            Err(e) => return Err(e),
        };
        w.check_pasid_entry(&e)?;
        self.pasid
            .insert((sid, pasid), PasidLine { entry: Some(e) });
        Ok(e)
    }

    fn tlb(
        &mut self,
        cm: bool,
        did: u16,
        pasid: Option<u32>,
        kind: Kind,
        req: &Req,
        walk: impl FnOnce() -> Result<Translated, WalkFault>,
    ) -> Result<Translated, WalkFault> {
        let hit = self.iotlb.iter().find(|l| {
            l.did == did
                && l.pasid == pasid
                && l.kind == kind
                && req.addr >= l.base
                && req.addr - l.base < l.size
        });
        if let Some(l) = hit {
            self.stats.iotlb_hits += 1;
            let t = l.result?;
            if (req.write && !t.write) || (!req.write && !t.read) {
                return Err(WalkFault::Denied {
                    stage: super::walk::Stage::Second,
                    write: req.write,
                });
            }
            let base = l.base;
            return Ok(Translated {
                pa: t.pa + (req.addr - base),
                ..t
            });
        }
        let r = walk();
        let page = match &r {
            Ok(t) => t.page.min(1 << 30),
            Err(WalkFault::NotPresent { .. }) if cm => 4096,
            Err(_) => return r,
        };
        let base = req.addr & !(page - 1);
        let result = r.map(|t| Translated {
            pa: t.pa - (req.addr - base),
            ..t
        });
        self.iotlb.push(TlbLine {
            did,
            pasid,
            kind,
            base,
            size: page,
            result,
        });
        r
    }

    /// Apply an invalidation descriptor.
    pub fn invalidate(&mut self, inv: &Inv) {
        match *inv {
            Inv::Context(CcScope::Global) => self.ctx.clear(),
            Inv::Context(CcScope::Domain { did }) => {
                self.ctx.retain(|_, l| l.did.is_some_and(|d| d != did));
            }
            Inv::Context(CcScope::Device { did, sid, fm }) => {
                let mask: u16 = match fm {
                    0 => 0xffff,
                    1 => !0x4,
                    2 => !0x6,
                    _ => !0x7,
                };
                self.ctx.retain(|&s, l| {
                    let same_dev = s & mask == sid & mask;
                    // Legacy entries are tagged with their DID: a
                    // device-selective invalidation names it.
                    let same_did = l.did.is_none_or(|d| d == did);
                    !(same_dev && same_did)
                });
            }
            Inv::Iotlb { scope, .. } => {
                let second = |k: Kind| matches!(k, Kind::SecondLevel | Kind::Nested);
                match scope {
                    IotlbScope::Global => self.iotlb.clear(),
                    IotlbScope::Domain { did } => {
                        self.iotlb.retain(|l| !(l.did == did && second(l.kind)));
                    }
                    IotlbScope::Pages { did, addr, am, .. } => self.iotlb.retain(|l| {
                        !(l.did == did && second(l.kind) && overlaps(l.base, l.size, addr, am))
                    }),
                }
            }
            Inv::PasidIotlb { did, pasid, scope } => {
                let first =
                    |k: Kind| matches!(k, Kind::FirstLevel | Kind::Nested | Kind::PassThrough);
                self.iotlb.retain(|l| {
                    let tagged = l.did == did && l.pasid == Some(pasid) && first(l.kind);
                    let covered = match scope {
                        PiotlbScope::Pasid => true,
                        PiotlbScope::Pages { addr, am, .. } => overlaps(l.base, l.size, addr, am),
                    };
                    !(tagged && covered)
                });
            }
            Inv::PasidCache { did, pasid, scope } => self.pasid.retain(|&(_, p), l| {
                let tagged = l.entry.is_none_or(|e| e.did == did);
                match scope {
                    PcScope::Global => false,
                    PcScope::Domain => !tagged,
                    PcScope::Pasid => !(tagged && p == pasid),
                }
            }),
            _ => {}
        }
    }
}
