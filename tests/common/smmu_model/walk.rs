//! The model's translation walker, written from the specification's
//! procedure (chapter 15 "Translation procedure") without the driver's
//! field definitions: StreamID → stream table (linear or two-level) → STE
//! → CD table (linear or two-level) → CD → stage-1 tables (AArch64, 4 KiB
//! granule) and/or stage-2 tables (starting level and concatenated roots
//! from S2SL0 / S2T0SZ); nested, the CD and every stage-1 table fetch go
//! through stage 2. Every pointer is checked against the Hal's live memory
//! before it is read: one outside it is the fetch-abort event a real SMMU
//! records (a driver bug), never a stray read.

use super::entry::{Cd, Ste, config, dss, l1cd, l1std, s2_geometry};
use super::hal::ModelHal;
use super::request::{EventRec, Kind, Perm, Req, Translated, WalkFault, class};
use super::spec::{SmmuConfig, bit, bits, evt, mask, pa_bits};

/// The stream table the SMMU latched (STRTAB_BASE, STRTAB_BASE_CFG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrtabCfg {
    pub base: u64,
    pub two_level: bool,
    pub split: u32,
    pub log2size: u32,
}

impl StrtabCfg {
    pub fn decode(base: u64, cfg: u32) -> Self {
        StrtabCfg {
            base: base & mask(51, 6),
            two_level: bits(cfg.into(), 17, 16) == 1,
            split: bits(cfg.into(), 10, 6) as u32,
            log2size: bits(cfg.into(), 5, 0) as u32,
        }
    }
}

/// The configuration a transaction resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    pub ste: Ste,
    /// The CD used (its index in the table, and the CD), when stage 1
    /// translates.
    pub cd: Option<(u32, Cd)>,
    /// Stage 2 translates.
    pub s2: bool,
}

/// A leaf a table walk reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub oa: u64,
    pub size: u64,
    pub level: u8,
    pub perm: Perm,
    pub global: bool,
    pub device: bool,
}

pub struct Walker<'a> {
    pub mem: &'a ModelHal,
    pub id: &'a SmmuConfig,
    pub st: StrtabCfg,
}

fn cfg_err(id: u8, req: &Req) -> WalkFault {
    WalkFault::Event {
        rec: EventRec::config(id, req),
        record: true,
        stall: false,
    }
}

impl Walker<'_> {
    fn read(&self, addr: u64) -> Option<u64> {
        self.mem.read_u64(addr)
    }

    /// The VMID entries of this STE are tagged with (0 on an SMMU without
    /// stage 2).
    pub fn vmid(&self, ste: &Ste) -> u16 {
        if !self.id.s2p() {
            0
        } else if self.id.has_vmid16() {
            ste.s2vmid
        } else {
            ste.s2vmid & 0xff
        }
    }

    pub fn asid(&self, cd: &Cd) -> u16 {
        if self.id.has_asid16() {
            cd.asid
        } else {
            cd.asid & 0xff
        }
    }

    /// Where `sid`'s STE is.
    pub fn ste_addr(&self, sid: u32, req: &Req) -> Result<u64, WalkFault> {
        let st = &self.st;
        if u64::from(sid) >> st.log2size != 0 {
            return Err(cfg_err(evt::C_BAD_STREAMID, req));
        }
        if !st.two_level {
            return Ok(st.base + u64::from(sid) * 64);
        }
        let l1 = st.base + u64::from(sid >> st.split) * 8;
        let d = self
            .read(l1)
            .ok_or_else(|| cfg_err(evt::F_STE_FETCH, req))?;
        let (span, l2) = l1std(d);
        let index = u64::from(sid) & ((1 << st.split) - 1);
        if span == 0 || u32::from(span) > st.split + 1 || index >> (span - 1) != 0 {
            return Err(cfg_err(evt::C_BAD_STREAMID, req));
        }
        Ok(l2 + index * 64)
    }

    fn entry(&self, at: u64) -> Option<[u64; 8]> {
        let mut w = [0u64; 8];
        for (i, x) in w.iter_mut().enumerate() {
            *x = self.read(at + 8 * i as u64)?;
        }
        Some(w)
    }

    /// `sid`'s STE as memory holds it (legal or not).
    pub fn ste(&self, sid: u32) -> Result<Ste, WalkFault> {
        let req = Req::read(sid, 0);
        let at = self.ste_addr(sid, &req)?;
        let w = self
            .entry(at)
            .ok_or_else(|| cfg_err(evt::F_STE_FETCH, &req))?;
        Ok(Ste::decode(w))
    }

    /// `sid`'s STE, refused as the SMMU refuses an ILLEGAL one.
    pub fn legal_ste(&self, req: &Req) -> Result<Ste, WalkFault> {
        let ste = self.ste(req.sid).map_err(|e| match e {
            WalkFault::Event { rec, .. } => cfg_err(rec.id, req),
            a => a,
        })?;
        match ste.illegal(self.id) {
            Some(_) => Err(cfg_err(evt::C_BAD_STE, req)),
            None => Ok(ste),
        }
    }

    /// Which CD (if any) and stages a transaction gets under `ste`; the CD
    /// itself is fetched by `cd_of`.
    pub fn select(&self, ste: &Ste, req: &Req) -> Result<Option<u32>, WalkFault> {
        let bad_ssid = || cfg_err(evt::C_BAD_SUBSTREAMID, req);
        match ste.config {
            config::ABORT => Err(WalkFault::Abort("STE Config abort")),
            config::BYPASS | config::S2 => match req.ssid {
                Some(_) => Err(bad_ssid()),
                None => Ok(None),
            },
            _ => {
                if ste.s1_cd_max == 0 {
                    return match req.ssid {
                        Some(_) => Err(bad_ssid()),
                        None => Ok(Some(0)),
                    };
                }
                match req.ssid {
                    None => match ste.s1dss {
                        dss::TERMINATE => Err(cfg_err(evt::F_STREAM_DISABLED, req)),
                        dss::BYPASS => Ok(None),
                        _ => Ok(Some(0)),
                    },
                    Some(s) if u64::from(s) >> ste.s1_cd_max != 0 => Err(bad_ssid()),
                    Some(0) if ste.s1dss == dss::SSID0 => Err(bad_ssid()),
                    Some(s) => Ok(Some(s)),
                }
            }
        }
    }

    /// An address the CD fetch reads: through stage 2 for a nested STE.
    fn cd_fetch(&self, ste: &Ste, ipa: u64, req: &Req) -> Result<u64, WalkFault> {
        if !ste.s2() {
            return Ok(ipa);
        }
        let leaf = self.s2_fetch(ste, ipa, req, class::CD)?;
        Ok(leaf.oa)
    }

    /// CD `index` of `ste`'s table (legal or not).
    pub fn cd_of(&self, ste: &Ste, index: u32, req: &Req) -> Result<Cd, WalkFault> {
        let fetch_err = || cfg_err(evt::F_CD_FETCH, req);
        let ptr = ste.s1_ctx_ptr;
        let fmt = if ste.s1_cd_max == 0 { 0 } else { ste.s1fmt };
        let at = match fmt {
            0 => ptr + u64::from(index) * 64,
            _ => {
                let leaf_bits = if fmt == 1 { 6 } else { 10 };
                let l1 = ptr + u64::from(index >> leaf_bits) * 8;
                let pa = self.cd_fetch(ste, l1, req)?;
                let (v, l2) = l1cd(self.read(pa).ok_or_else(fetch_err)?);
                if !v {
                    return Err(cfg_err(evt::C_BAD_SUBSTREAMID, req));
                }
                l2 + (u64::from(index) & ((1 << leaf_bits) - 1)) * 64
            }
        };
        let pa = self.cd_fetch(ste, at, req)?;
        let w = self.entry(pa).ok_or_else(fetch_err)?;
        Ok(Cd::decode(w))
    }

    /// The configuration of `req` from memory: a legal STE, the CD it
    /// selects (legal), the stages.
    pub fn context(&self, req: &Req) -> Result<Ctx, WalkFault> {
        let ste = self.legal_ste(req)?;
        self.context_with(ste, req, |index| {
            let cd = self.cd_of(&ste, index, req)?;
            match cd.illegal(self.id) {
                Some(_) => Err(cfg_err(evt::C_BAD_CD, req)),
                None => Ok(cd),
            }
        })
    }

    /// The configuration under `ste`, fetching the CD with `cd`.
    pub fn context_with(
        &self,
        ste: Ste,
        req: &Req,
        cd: impl FnOnce(u32) -> Result<Cd, WalkFault>,
    ) -> Result<Ctx, WalkFault> {
        let index = self.select(&ste, req)?;
        let cd = match index {
            Some(i) => Some((i, cd(i)?)),
            None => None,
        };
        Ok(Ctx {
            ste,
            cd,
            s2: ste.s2(),
        })
    }

    /// Translate `req` from memory alone (no caches).
    pub fn walk(&self, req: &Req) -> Result<Translated, WalkFault> {
        let ctx = self.context(req)?;
        self.tables(&ctx, req)
    }

    /// The table walks of `req` under `ctx`.
    pub fn tables(&self, ctx: &Ctx, req: &Req) -> Result<Translated, WalkFault> {
        let ste = &ctx.ste;
        match (ctx.cd, ctx.s2) {
            (None, false) => Ok(Translated::untranslated(req, Kind::Bypass)),
            (None, true) => {
                let leaf = self.s2_access(ste, req.addr, req)?;
                Ok(Translated {
                    pa: leaf.oa,
                    kind: Kind::Stage2,
                    vmid: Some(self.vmid(ste)),
                    asid: None,
                    page: leaf.size,
                    level: leaf.level,
                    s1: None,
                    s2: Some(leaf.perm),
                    global: false,
                })
            }
            (Some((_, cd)), s2) => {
                let l1 = self.s1_walk(ste, &cd, req)?;
                let stall = cd.s && self.id.stall() != 1;
                if !s1_permits(&l1.perm, req) {
                    return Err(WalkFault::Event {
                        rec: EventRec::translation(evt::F_PERMISSION, req, false, class::IN, 0),
                        record: cd.r || stall,
                        stall,
                    });
                }
                let (pa, page, s2perm) = if s2 {
                    let l2 = self.s2_access(ste, l1.oa, req)?;
                    (l2.oa, l1.size.min(l2.size), Some(l2.perm))
                } else {
                    (l1.oa, l1.size, None)
                };
                Ok(Translated {
                    pa,
                    kind: if s2 { Kind::Nested } else { Kind::Stage1 },
                    vmid: (s2 || self.id.s2p()).then(|| self.vmid(ste)),
                    asid: Some(self.asid(&cd)),
                    page,
                    level: l1.level,
                    s1: Some(l1.perm),
                    s2: s2perm,
                    global: l1.global,
                })
            }
        }
    }

    /// Stage 1 through `cd` for `req.addr` (the table fetches through stage
    /// 2 when `ste` nests).
    pub fn s1_walk(&self, ste: &Ste, cd: &Cd, req: &Req) -> Result<Leaf, WalkFault> {
        let stall = cd.s && self.id.stall() != 1;
        let fault = |id: u8, cls: u8| WalkFault::Event {
            rec: EventRec::translation(id, req, false, cls, 0),
            record: cd.r || stall,
            stall,
        };
        let va = req.addr;
        if cd.epd0 || cd.tg0 != 0 {
            return Err(fault(evt::F_TRANSLATION, class::IN));
        }
        let ia = 64 - u32::from(cd.t0sz);
        if va >> ia != 0 {
            return Err(fault(evt::F_TRANSLATION, class::IN));
        }
        let ips = cd.ips_bits(self.id);
        let start = match ia {
            40.. => 0,
            31..=39 => 1,
            22..=30 => 2,
            _ => 3,
        };
        let mut table = cd.ttb0;
        let (mut ro, mut no_el0, mut xn, mut pxn) = (false, false, false, false);
        for level in start..=3u32 {
            if table >> ips != 0 {
                return Err(fault(evt::F_ADDR_SIZE, class::TT));
            }
            let shift = 12 + 9 * (3 - level);
            let nbits = if level == start { ia - shift } else { 9 };
            let table_bytes = 8u64 << nbits;
            let base = table & !(table_bytes - 1);
            let idx = (va >> shift) & ((1 << nbits) - 1);
            let mut at = base + idx * 8;
            if ste.s2() {
                at = self.s2_fetch(ste, at, req, class::TT)?.oa;
            }
            let d = self
                .read(at)
                .ok_or_else(|| fault(evt::F_WALK_EABT, class::TT))?;
            if d & 1 == 0 {
                return Err(fault(evt::F_TRANSLATION, class::IN));
            }
            let table_desc = d & 2 != 0;
            if level < 3 && table_desc {
                ro |= bit(d, 62);
                no_el0 |= bit(d, 61);
                xn |= bit(d, 60);
                pxn |= bit(d, 59);
                table = d & mask(47, 12);
                continue;
            }
            if (level == 3 && !table_desc) || level == 0 {
                return Err(fault(evt::F_TRANSLATION, class::IN));
            }
            let oa = d & mask(47, shift);
            if oa >> ips != 0 {
                return Err(fault(evt::F_ADDR_SIZE, class::IN));
            }
            if !bit(d, 10) && !cd.affd && !cd.ha {
                return Err(fault(evt::F_ACCESS, class::IN));
            }
            let el0 = bit(d, 6) && !no_el0;
            let exec = if req.privileged {
                !(bit(d, 53) || pxn)
            } else {
                !(bit(d, 54) || xn)
            };
            return Ok(Leaf {
                oa: oa | (va & ((1 << shift) - 1)),
                size: 1 << shift,
                level: level as u8,
                perm: Perm {
                    read: true,
                    write: !(bit(d, 7) || ro),
                    exec,
                    el0,
                },
                global: !bit(d, 11),
                device: false,
            });
        }
        unreachable!("the walk ends at level 3")
    }

    /// A stage-2 table walk of `ipa` (no permission check).
    pub fn s2_walk(&self, ste: &Ste, ipa: u64, req: &Req, cls: u8) -> Result<Leaf, WalkFault> {
        let stall = ste.s2s && self.id.stall() != 1;
        let fault = |id: u8, c: u8| WalkFault::Event {
            rec: EventRec::translation(id, req, true, c, ipa),
            record: ste.s2r || stall,
            stall,
        };
        let (start, rbits) =
            s2_geometry(ste.s2t0sz, ste.s2sl0, self.id.ias_bits()).expect("a legal STE's stage 2");
        let ia = 64 - u32::from(ste.s2t0sz);
        if ipa >> ia != 0 {
            return Err(fault(evt::F_TRANSLATION, cls));
        }
        let ps = pa_bits(ste.s2ps.into()).min(self.id.oas_bits());
        let mut table = ste.s2ttb;
        for level in start..=3u32 {
            if table >> ps != 0 {
                return Err(fault(evt::F_ADDR_SIZE, class::TT));
            }
            let shift = 12 + 9 * (3 - level);
            let nbits = if level == start { rbits } else { 9 };
            let base = table & !((8u64 << nbits) - 1);
            let idx = (ipa >> shift) & ((1 << nbits) - 1);
            let d = self
                .read(base + idx * 8)
                .ok_or_else(|| fault(evt::F_WALK_EABT, class::TT))?;
            if d & 1 == 0 {
                return Err(fault(evt::F_TRANSLATION, cls));
            }
            let table_desc = d & 2 != 0;
            if level < 3 && table_desc {
                table = d & mask(47, 12);
                continue;
            }
            if (level == 3 && !table_desc) || level == 0 {
                return Err(fault(evt::F_TRANSLATION, cls));
            }
            let oa = d & mask(47, shift);
            if oa >> ps != 0 {
                return Err(fault(evt::F_ADDR_SIZE, cls));
            }
            if !bit(d, 10) && !ste.s2affd {
                return Err(fault(evt::F_ACCESS, cls));
            }
            return Ok(Leaf {
                oa: oa | (ipa & ((1 << shift) - 1)),
                size: 1 << shift,
                level: level as u8,
                perm: Perm {
                    read: bit(d, 6),
                    write: bit(d, 7),
                    exec: !bit(d, 54),
                    el0: true,
                },
                global: false,
                device: bits(d, 5, 4) == 0,
            });
        }
        unreachable!("the walk ends at level 3")
    }

    /// Stage 2 of a CD or stage-1 table fetch: a read; with S2PTW, device
    /// memory faults.
    fn s2_fetch(&self, ste: &Ste, ipa: u64, req: &Req, cls: u8) -> Result<Leaf, WalkFault> {
        let leaf = self.s2_walk(ste, ipa, req, cls)?;
        if !leaf.perm.read || (ste.s2ptw && leaf.device) {
            let stall = ste.s2s && self.id.stall() != 1;
            return Err(WalkFault::Event {
                rec: EventRec::translation(evt::F_PERMISSION, req, true, cls, ipa),
                record: ste.s2r || stall,
                stall,
            });
        }
        Ok(leaf)
    }

    /// Stage 2 of the transaction's own access at `ipa`.
    pub fn s2_access(&self, ste: &Ste, ipa: u64, req: &Req) -> Result<Leaf, WalkFault> {
        let leaf = self.s2_walk(ste, ipa, req, class::IN)?;
        if !s2_permits(&leaf.perm, req) {
            let stall = ste.s2s && self.id.stall() != 1;
            return Err(WalkFault::Event {
                rec: EventRec::translation(evt::F_PERMISSION, req, true, class::IN, ipa),
                record: ste.s2r || stall,
                stall,
            });
        }
        Ok(leaf)
    }
}

/// Whether stage-1 permissions `p` allow `req`.
pub fn s1_permits(p: &Perm, req: &Req) -> bool {
    if !req.privileged && !p.el0 {
        return false;
    }
    if req.write && !p.write {
        return false;
    }
    !req.exec || p.exec
}

/// Whether stage-2 permissions `p` allow `req`.
pub fn s2_permits(p: &Perm, req: &Req) -> bool {
    if req.write {
        p.write
    } else if req.exec {
        p.read && p.exec
    } else {
        p.read
    }
}
