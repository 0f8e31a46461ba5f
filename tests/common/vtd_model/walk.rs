//! The model's translation walker, written from the specification's
//! layouts (9.1-9.8) without the driver's field constants: root table →
//! context entry (legacy), or root → scalable context entry → PASID
//! directory → PASID table → second-level, first-level (x86-64 paging) or
//! nested tables. Every pointer is checked against the Hal's live memory
//! before it is read: a pointer outside it is a `BadPointer` fault (a driver
//! bug), never a stray read.

use std::cell::{Cell, RefCell};

use super::hal::ModelHal;
use super::spec::{UnitConfig, bit, bits, cap, ecap};

pub use super::request::{Kind, Req, Stage, Translated, WalkFault};

/// A legacy context entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyCtx {
    pub present: bool,
    pub fpd: bool,
    pub tt: u8,
    pub slptptr: u64,
    pub aw: u8,
    pub did: u16,
    pub raw: [u64; 2],
}

/// A scalable-mode context entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalableCtx {
    pub present: bool,
    pub fpd: bool,
    pub dte: bool,
    pub paside: bool,
    pub pre: bool,
    pub pdts: u8,
    pub dir: u64,
    pub rid_pasid: u32,
    pub raw: [u64; 4],
}

impl ScalableCtx {
    /// PASID-directory entries.
    pub fn dir_entries(&self) -> u64 {
        1 << (self.pdts + 7)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    Legacy(LegacyCtx),
    Scalable(ScalableCtx),
}

impl Ctx {
    pub fn present(&self) -> bool {
        match self {
            Ctx::Legacy(c) => c.present,
            Ctx::Scalable(c) => c.present,
        }
    }

    pub fn fpd(&self) -> bool {
        match self {
            Ctx::Legacy(c) => c.fpd,
            Ctx::Scalable(c) => c.fpd,
        }
    }
}

/// A scalable-mode PASID-table entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasidEnt {
    pub present: bool,
    pub fpd: bool,
    pub aw: u8,
    pub pgtt: u8,
    pub slptptr: u64,
    pub did: u16,
    pub pwsnp: bool,
    pub pgsnp: bool,
    pub sre: bool,
    pub flpm: u8,
    pub wpe: bool,
    pub eafe: bool,
    pub flptr: u64,
    pub raw: [u64; 8],
}

/// PGTT values.
pub mod pgtt {
    pub const FIRST: u8 = 1;
    pub const SECOND: u8 = 2;
    pub const NESTED: u8 = 3;
    pub const PASS_THROUGH: u8 = 4;
}

/// Legacy TT values.
pub mod tt {
    pub const SL: u8 = 0;
    pub const SL_DEVTLB: u8 = 1;
    pub const PASS_THROUGH: u8 = 2;
}

/// The leaf a table walk ended at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub pa: u64,
    pub size: u64,
    pub read: bool,
    pub write: bool,
}

const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// A second-level paging-structure cache entry: for input addresses whose
/// bits above level `level` are `prefix`, the level-`level` table is at
/// `table` (with the permissions of the entries above it). Tagged by DID
/// only, as the hardware tags it: nothing ties it to one table root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PscLine {
    pub did: u16,
    pub level: u32,
    pub prefix: u64,
    pub table: u64,
    pub read: bool,
    pub write: bool,
}

impl PscLine {
    /// The input range the line covers.
    pub fn range(&self) -> (u64, u64) {
        let shift = 12 + 9 * self.level;
        (self.prefix << shift, (self.prefix + 1) << shift)
    }
}

/// The walker over one unit's latched root table.
pub struct Walker<'a> {
    pub mem: &'a ModelHal,
    pub id: &'a UnitConfig,
    /// The root table the unit latched (SRTP), with its mode.
    pub root: u64,
    pub scalable: bool,
    /// The second-level paging-structure cache to use and fill (`None`: a
    /// fresh walk).
    pub psc: Option<&'a RefCell<Vec<PscLine>>>,
    /// The DID of the entry being walked through (the cache's tag).
    pub did: Cell<Option<u16>>,
}

impl Walker<'_> {
    fn read(&self, addr: u64) -> Result<u64, WalkFault> {
        self.mem
            .read_u64(addr)
            .ok_or(WalkFault::BadPointer { addr })
    }

    fn read_n<const N: usize>(&self, addr: u64) -> Result<[u64; N], WalkFault> {
        let mut w = [0; N];
        for (i, x) in w.iter_mut().enumerate() {
            *x = self.read(addr + 8 * i as u64)?;
        }
        Ok(w)
    }

    fn did_ok(&self, did: u16) -> bool {
        u32::from(did) < self.id.domains()
    }

    /// The context entry of `sid` (present or not); `Err` when the root
    /// entry is not present or malformed.
    pub fn context(&self, sid: u16) -> Result<Ctx, WalkFault> {
        let bus = u64::from(sid >> 8);
        let devfn = u64::from(sid & 0xff);
        let re: [u64; 2] = self.read_n(self.root + bus * 16)?;
        if !self.scalable {
            if re[0] & 1 == 0 {
                return Err(WalkFault::RootNotPresent);
            }
            if bits(re[0], 11, 1) != 0 || re[1] != 0 {
                return Err(WalkFault::RootReserved);
            }
            let w: [u64; 2] = self.read_n((re[0] & ADDR) + devfn * 16)?;
            return Ok(Ctx::Legacy(LegacyCtx {
                present: bit(w[0], 0),
                fpd: bit(w[0], 1),
                tt: bits(w[0], 3, 2) as u8,
                slptptr: w[0] & ADDR,
                aw: bits(w[1], 2, 0) as u8,
                did: bits(w[1], 23, 8) as u16,
                raw: w,
            }));
        }
        let half = usize::from(devfn >= 128);
        if re[half] & 1 == 0 {
            return Err(WalkFault::RootNotPresent);
        }
        if bits(re[0], 11, 1) != 0 || bits(re[1], 11, 1) != 0 {
            return Err(WalkFault::RootReserved);
        }
        let w: [u64; 4] = self.read_n((re[half] & ADDR) + (devfn % 128) * 32)?;
        Ok(Ctx::Scalable(ScalableCtx {
            present: bit(w[0], 0),
            fpd: bit(w[0], 1),
            dte: bit(w[0], 2),
            paside: bit(w[0], 3),
            pre: bit(w[0], 4),
            pdts: bits(w[0], 11, 9) as u8,
            dir: w[0] & ADDR,
            rid_pasid: bits(w[1], 19, 0) as u32,
            raw: w,
        }))
    }

    /// Check a present context entry against the unit's capabilities.
    pub fn check_context(&self, ctx: &Ctx) -> Result<(), WalkFault> {
        let bad = |s| Err(WalkFault::ContextInvalid(s));
        match ctx {
            Ctx::Legacy(c) => {
                if bits(c.raw[0], 11, 4) != 0 || bit(c.raw[1], 7) || bits(c.raw[1], 63, 24) != 0 {
                    return bad("reserved bit");
                }
                if !self.did_ok(c.did) {
                    return bad("DID above CAP.ND");
                }
                let widths = self.id.sagaw_widths();
                let aw_width = 30 + 9 * u32::from(c.aw);
                match c.tt {
                    tt::SL | tt::SL_DEVTLB => {
                        if c.tt == tt::SL_DEVTLB && !self.id.has_ecap(ecap::DT) {
                            return bad("TT 01b without ECAP.DT");
                        }
                        if !widths.contains(&aw_width) {
                            return bad("AW not in CAP.SAGAW");
                        }
                    }
                    tt::PASS_THROUGH => {
                        if !self.id.has_ecap(ecap::PT) {
                            return bad("pass-through without ECAP.PT");
                        }
                        // 9.3: with TT 10b, AW must name the largest AGAW
                        // the hardware supports.
                        if widths.iter().max() != Some(&aw_width) {
                            return bad("pass-through AW is not the largest SAGAW");
                        }
                    }
                    _ => return bad("TT 11b"),
                }
            }
            Ctx::Scalable(c) => {
                if bits(c.raw[0], 8, 5) != 0
                    || bits(c.raw[1], 63, 21) != 0
                    || c.raw[2] != 0
                    || c.raw[3] != 0
                {
                    return bad("reserved bit");
                }
                if c.dte && !self.id.has_ecap(ecap::DT) {
                    return bad("DTE without ECAP.DT");
                }
                if c.pre && !self.id.has_ecap(ecap::PRS) {
                    return bad("PRE without ECAP.PRS");
                }
                if c.paside && !self.id.has_ecap(ecap::PASID) {
                    return bad("PASIDE without ECAP.PASID");
                }
            }
        }
        Ok(())
    }

    /// The PASID-table entry of `pasid` under a scalable context entry
    /// (present or not).
    pub fn pasid_entry(&self, ctx: &ScalableCtx, pasid: u32) -> Result<PasidEnt, WalkFault> {
        let index = u64::from(pasid >> 6);
        if index >= ctx.dir_entries() {
            return Err(WalkFault::PasidBeyondDirectory);
        }
        let de = self.read(ctx.dir + index * 8)?;
        if de & 1 == 0 {
            return Err(WalkFault::PasidDirNotPresent);
        }
        if bits(de, 11, 2) != 0 {
            return Err(WalkFault::PasidEntryInvalid(
                "reserved bit in directory entry",
            ));
        }
        let w: [u64; 8] = self.read_n((de & ADDR) + u64::from(pasid & 63) * 64)?;
        Ok(PasidEnt {
            present: bit(w[0], 0),
            fpd: bit(w[0], 1),
            aw: bits(w[0], 4, 2) as u8,
            pgtt: bits(w[0], 8, 6) as u8,
            slptptr: w[0] & ADDR,
            did: bits(w[1], 15, 0) as u16,
            pwsnp: bit(w[1], 23),
            pgsnp: bit(w[1], 24),
            sre: bit(w[2], 0),
            flpm: bits(w[2], 3, 2) as u8,
            wpe: bit(w[2], 4),
            eafe: bit(w[2], 7),
            flptr: w[2] & ADDR,
            raw: w,
        })
    }

    /// Check a present PASID-table entry against the unit's capabilities.
    pub fn check_pasid_entry(&self, e: &PasidEnt) -> Result<(), WalkFault> {
        let bad = |s| Err(WalkFault::PasidEntryInvalid(s));
        if !self.did_ok(e.did) {
            return bad("DID above CAP.ND");
        }
        let sl_width_ok = || self.id.sagaw_widths().contains(&(30 + 9 * u32::from(e.aw)));
        let fl_ok = || match e.flpm {
            0 => Ok(()),
            1 if self.id.has_cap(cap::FL5LP) => Ok(()),
            _ => bad("FLPM"),
        };
        if e.sre && !self.id.has_ecap(ecap::SRS) {
            return bad("SRE without ECAP.SRS");
        }
        match e.pgtt {
            pgtt::FIRST if self.id.has_ecap(ecap::FLTS) => fl_ok(),
            pgtt::SECOND if self.id.has_ecap(ecap::SLTS) => {
                if sl_width_ok() {
                    Ok(())
                } else {
                    bad("AW not in CAP.SAGAW")
                }
            }
            pgtt::NESTED if self.id.has_ecap(ecap::NEST) => {
                fl_ok()?;
                if sl_width_ok() {
                    Ok(())
                } else {
                    bad("AW not in CAP.SAGAW")
                }
            }
            pgtt::PASS_THROUGH if self.id.has_ecap(ecap::PT) => Ok(()),
            _ => bad("PGTT not supported"),
        }
    }

    /// Walk second-level tables of `levels` levels at `root` for `addr`.
    pub fn second_level(
        &self,
        root: u64,
        levels: u32,
        addr: u64,
        write: bool,
    ) -> Result<Leaf, WalkFault> {
        let width = (12 + 9 * levels).min(self.id.mgaw());
        if addr >> width != 0 {
            return Err(WalkFault::AddressBeyond);
        }
        let sllps = self.id.cap(cap::SLLPS);
        let (mut r, mut w) = (true, true);
        let mut table = root;
        let mut top = levels;
        let psc = self.psc.zip(self.did.get());
        if let Some((cache, did)) = psc {
            // The deepest cached table for this address, if any.
            let hit = cache
                .borrow()
                .iter()
                .filter(|l| {
                    l.did == did && l.level < levels && l.prefix == addr >> (12 + 9 * l.level)
                })
                .min_by_key(|l| l.level)
                .copied();
            if let Some(l) = hit {
                (table, top, r, w) = (l.table, l.level, l.read, l.write);
            }
        }
        for level in (1..=top).rev() {
            let shift = 12 + 9 * (level - 1);
            let pte = self.read(table + ((addr >> shift) & 511) * 8)?;
            if pte & 3 == 0 {
                return Err(WalkFault::NotPresent {
                    stage: Stage::Second,
                    level,
                });
            }
            r &= bit(pte, 0);
            w &= bit(pte, 1);
            let ps = bit(pte, 7);
            let leaf = level == 1 || ps;
            if ps && level > 1 {
                let ok = match level {
                    2 => sllps & 1 != 0,
                    3 => sllps & 2 != 0,
                    _ => false,
                };
                if !ok {
                    return Err(WalkFault::Reserved {
                        stage: Stage::Second,
                        level,
                    });
                }
            }
            if !leaf {
                table = pte & ADDR;
                if let Some((cache, did)) = psc {
                    let line = PscLine {
                        did,
                        level: level - 1,
                        prefix: addr >> shift,
                        table,
                        read: r,
                        write: w,
                    };
                    let mut c = cache.borrow_mut();
                    if !c.contains(&line) {
                        c.push(line);
                    }
                }
                continue;
            }
            let size = 1u64 << shift;
            if pte & ADDR & (size - 1) != 0 {
                return Err(WalkFault::Reserved {
                    stage: Stage::Second,
                    level,
                });
            }
            if (write && !w) || (!write && !r) {
                return Err(WalkFault::Denied {
                    stage: Stage::Second,
                    write,
                });
            }
            return Ok(Leaf {
                pa: (pte & ADDR) | (addr & (size - 1)),
                size,
                read: r,
                write: w,
            });
        }
        unreachable!()
    }

    /// Walk first-level (x86-64) tables; with `nest`, every table address
    /// and the result are guest-physical, translated through second-level
    /// tables (root, levels).
    #[allow(clippy::too_many_arguments)]
    pub fn first_level(
        &self,
        root: u64,
        five_level: bool,
        req: &Req,
        sre: bool,
        wpe: bool,
        nest: Option<(u64, u32)>,
    ) -> Result<Leaf, WalkFault> {
        let levels = if five_level { 5 } else { 4 };
        let top = 12 + 9 * levels - 1; // 47 or 56
        let upper = req.addr >> top;
        if upper != 0 && upper != (u64::MAX >> top) {
            return Err(WalkFault::NonCanonical);
        }
        if req.privileged && !sre {
            return Err(WalkFault::SupervisorDenied);
        }
        let gpa = |a: u64, write: bool| -> Result<Leaf, WalkFault> {
            match nest {
                Some((root, levels)) => self.second_level(root, levels, a, write),
                None => Ok(Leaf {
                    pa: a,
                    size: u64::MAX,
                    read: true,
                    write: true,
                }),
            }
        };
        let (mut rw, mut us) = (true, true);
        let mut table = root;
        for level in (1..=levels).rev() {
            let shift = 12 + 9 * (level - 1);
            let at = gpa(table + ((req.addr >> shift) & 511) * 8, false)?.pa;
            let pte = self.read(at)?;
            if pte & 1 == 0 {
                return Err(WalkFault::NotPresent {
                    stage: Stage::First,
                    level,
                });
            }
            rw &= bit(pte, 1);
            us &= bit(pte, 2);
            let ps = level > 1 && bit(pte, 7);
            if ps {
                let ok = level == 2 || (level == 3 && self.id.has_cap(cap::FL1GP));
                if !ok {
                    return Err(WalkFault::Reserved {
                        stage: Stage::First,
                        level,
                    });
                }
            }
            if level > 1 && !ps {
                table = pte & ADDR;
                continue;
            }
            let size = 1u64 << shift;
            let base = if level == 1 {
                pte & ADDR
            } else {
                pte & ADDR & !(1 << 12)
            };
            if base & (size - 1) != 0 {
                return Err(WalkFault::Reserved {
                    stage: Stage::First,
                    level,
                });
            }
            if !req.privileged && !us {
                return Err(WalkFault::Denied {
                    stage: Stage::First,
                    write: req.write,
                });
            }
            if req.write && !rw && (!req.privileged || wpe) {
                return Err(WalkFault::Denied {
                    stage: Stage::First,
                    write: true,
                });
            }
            let out = gpa(base | (req.addr & (size - 1)), req.write)?;
            return Ok(Leaf {
                pa: out.pa,
                size: size.min(out.size),
                read: out.read,
                write: rw && out.write,
            });
        }
        unreachable!()
    }

    /// Translate through a present, checked PASID-table entry.
    pub fn through_pasid_entry(&self, e: &PasidEnt, req: &Req) -> Result<Translated, WalkFault> {
        self.did.set(Some(e.did));
        let sl_levels = 2 + u32::from(e.aw);
        let (kind, leaf) = match e.pgtt {
            pgtt::PASS_THROUGH => (
                Kind::PassThrough,
                Leaf {
                    pa: req.addr,
                    size: 4096,
                    read: true,
                    write: true,
                },
            ),
            pgtt::SECOND => (
                Kind::SecondLevel,
                self.second_level(e.slptptr, sl_levels, req.addr, req.write)?,
            ),
            pgtt::FIRST => (
                Kind::FirstLevel,
                self.first_level(e.flptr, e.flpm == 1, req, e.sre, e.wpe, None)?,
            ),
            _ => (
                Kind::Nested,
                self.first_level(
                    e.flptr,
                    e.flpm == 1,
                    req,
                    e.sre,
                    e.wpe,
                    Some((e.slptptr, sl_levels)),
                )?,
            ),
        };
        Ok(Translated {
            pa: leaf.pa,
            kind,
            did: Some(e.did),
            page: leaf.size,
            read: leaf.read,
            write: leaf.write,
        })
    }

    /// Translate through a present, checked legacy context entry.
    pub fn through_legacy(&self, c: &LegacyCtx, req: &Req) -> Result<Translated, WalkFault> {
        self.did.set(Some(c.did));
        if req.pasid.is_some() {
            return Err(WalkFault::PasidBlocked);
        }
        if c.tt == tt::PASS_THROUGH {
            return Ok(Translated {
                pa: req.addr,
                kind: Kind::PassThrough,
                did: Some(c.did),
                page: 4096,
                read: true,
                write: true,
            });
        }
        let leaf = self.second_level(c.slptptr, 2 + u32::from(c.aw), req.addr, req.write)?;
        Ok(Translated {
            pa: leaf.pa,
            kind: Kind::SecondLevel,
            did: Some(c.did),
            page: leaf.size,
            read: leaf.read,
            write: leaf.write,
        })
    }

    /// The PASID a request is translated at under a scalable context entry.
    pub fn pasid_of(&self, c: &ScalableCtx, req: &Req) -> Result<u32, WalkFault> {
        match req.pasid {
            None => Ok(c.rid_pasid),
            Some(_) if !c.paside => Err(WalkFault::PasidBlocked),
            Some(p) => Ok(p),
        }
    }

    /// A full walk, no caches.
    pub fn walk(&self, req: &Req) -> Result<Translated, WalkFault> {
        let ctx = self.context(req.sid)?;
        if !ctx.present() {
            return Err(WalkFault::ContextNotPresent);
        }
        self.check_context(&ctx)?;
        match ctx {
            Ctx::Legacy(c) => self.through_legacy(&c, req),
            Ctx::Scalable(c) => {
                let pasid = self.pasid_of(&c, req)?;
                let e = self.pasid_entry(&c, pasid)?;
                if !e.present {
                    return Err(WalkFault::PasidEntryNotPresent);
                }
                self.check_pasid_entry(&e)?;
                self.through_pasid_entry(&e, req)
            }
        }
    }
}
