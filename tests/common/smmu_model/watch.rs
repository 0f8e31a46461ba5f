//! What the SMMU could read while the driver rewrote an entry. The driver
//! cleans every STE / CD word it writes to the walker (`flush_dcache`, 64
//! bytes at the entry), and the Hal tells the model: the model keeps the
//! last contents it saw of every cleaned chunk, so it knows each entry's
//! state before a write and after it. While a test watches, every state an
//! entry went through is recorded; `Changes` then checks that each one reads
//! as the old entry or the new one in the bits it uses (or is invalid), as
//! an SMMU fetching the entry at any moment between two writes would read
//! it.

use std::collections::{BTreeMap, HashMap};

use super::emu::Emu;
use super::entry::{Cd, Ste, l1cd, l1std};

/// An entry the model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    Ste(u32),
    Cd { sid: u32, ssid: u32 },
}

/// The states one entry went through: before the first write, then after
/// each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub entry: Entry,
    pub states: Vec<[u64; 8]>,
}

impl Change {
    pub fn first(&self) -> [u64; 8] {
        self.states[0]
    }

    pub fn last(&self) -> [u64; 8] {
        *self.states.last().unwrap()
    }

    /// Writes made (states after the first).
    pub fn writes(&self) -> usize {
        self.states.len() - 1
    }

    fn used(&self) -> fn(&[u64; 8]) -> [u64; 8] {
        match self.entry {
            Entry::Ste(_) => Ste::used,
            Entry::Cd { .. } => Cd::used,
        }
    }

    /// Whether some state read as neither the old entry nor the new one:
    /// the state, described.
    pub fn mixed(&self) -> Option<String> {
        let used = self.used();
        let reads_as = |s: &[u64; 8], e: &[u64; 8]| {
            let u = used(e);
            used(s) == u && (0..8).all(|i| (s[i] ^ e[i]) & u[i] == 0)
        };
        let invalid = |s: &[u64; 8]| used(s).iter().map(|w| w.count_ones()).sum::<u32>() == 1;
        let (first, last) = (self.first(), self.last());
        for (k, s) in self.states.iter().enumerate() {
            if !(invalid(s) || reads_as(s, &first) || reads_as(s, &last)) {
                return Some(format!(
                    "{:?}: state {k} of {} {s:x?} reads as neither {first:x?} nor {last:x?}",
                    self.entry,
                    self.states.len() - 1
                ));
            }
        }
        None
    }

    /// Whether some state was invalid (the entry was broken on the way).
    pub fn broke(&self) -> bool {
        let used = self.used();
        self.states[1..self.states.len() - 1]
            .iter()
            .any(|s| used(s).iter().map(|w| w.count_ones()).sum::<u32>() == 1)
    }
}

/// The entry changes of one watched stretch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes(pub Vec<Change>);

impl Changes {
    /// Every mix found.
    pub fn mixed(&self) -> Vec<String> {
        self.0.iter().filter_map(Change::mixed).collect()
    }

    pub fn ste(&self, sid: u32) -> Option<&Change> {
        self.0.iter().find(|c| c.entry == Entry::Ste(sid))
    }

    pub fn cd(&self, sid: u32, ssid: u32) -> Option<&Change> {
        self.0.iter().find(|c| c.entry == Entry::Cd { sid, ssid })
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.0.iter().map(|c| c.entry).collect()
    }
}

/// A single-entry write: (address, before, after).
pub type Write = (u64, [u64; 8], [u64; 8]);

#[derive(Default)]
pub struct Watch {
    /// The last contents of every 64-byte chunk the driver cleaned.
    shadow: HashMap<u64, [u64; 8]>,
    /// Single-entry writes seen while watching: (address, before, after).
    pub seen: Option<Vec<Write>>,
    /// Host CD tables an STE the model saw written pointed at:
    /// base → (StreamID, S1Fmt, S1CDMax).
    pub cd_tables: BTreeMap<u64, (u32, u8, u8)>,
}

impl Watch {
    /// Pages went back to the Hal: what they held is gone.
    pub fn forget(&mut self, addr: u64, len: u64) {
        self.shadow.retain(|a, _| !(addr..addr + len).contains(a));
        self.cd_tables
            .retain(|a, _| !(addr..addr + len).contains(a));
    }
}

impl Emu {
    fn chunk(&self, at: u64) -> Option<[u64; 8]> {
        let mut w = [0u64; 8];
        for (i, x) in w.iter_mut().enumerate() {
            *x = self.hal.read_u64(at + 8 * i as u64)?;
        }
        Some(w)
    }

    /// The driver cleaned `[addr, addr + len)`.
    pub fn flushed(&mut self, addr: u64, len: u64) {
        let start = addr & !63;
        let end = (addr + len).div_ceil(64) * 64;
        let entry_write = len == 64 && addr.is_multiple_of(64);
        for at in (start..end).step_by(64) {
            let Some(now) = self.chunk(at) else {
                continue;
            };
            let before = self.watch.shadow.insert(at, now).unwrap_or([0; 8]);
            if before == now || !entry_write {
                continue;
            }
            if let Some(seen) = self.watch.seen.as_mut() {
                seen.push((at, before, now));
            }
            if let Some(sid) = self.ste_sid(at) {
                let e = Ste::decode(now);
                if e.valid && e.s1() && !e.s2() {
                    self.watch
                        .cd_tables
                        .insert(e.s1_ctx_ptr, (sid, e.s1fmt, e.s1_cd_max));
                }
            }
        }
    }

    /// The StreamID whose STE is at `addr` in the latched stream table.
    pub fn ste_sid(&self, addr: u64) -> Option<u32> {
        let st = self.strtab?;
        if !st.two_level {
            let end = st.base + (64u64 << st.log2size);
            return (st.base..end)
                .contains(&addr)
                .then(|| ((addr - st.base) / 64) as u32);
        }
        for i in 0..(1u64 << st.log2size.saturating_sub(st.split)) {
            let (span, l2) = l1std(self.hal.read_u64(st.base + i * 8)?);
            if span == 0 {
                continue;
            }
            let n = 1u64 << (span - 1);
            if (l2..l2 + 64 * n).contains(&addr) {
                return Some(((i << st.split) + (addr - l2) / 64) as u32);
            }
        }
        None
    }

    /// The CD at `addr` in a host CD table the model saw referenced.
    pub fn cd_at(&self, addr: u64) -> Option<(u32, u32)> {
        for (&base, &(sid, fmt, cd_max)) in &self.watch.cd_tables {
            if cd_max == 0 || fmt == 0 {
                let n = 1u64 << cd_max;
                if (base..base + 64 * n).contains(&addr) {
                    return Some((sid, ((addr - base) / 64) as u32));
                }
                continue;
            }
            let leaf_bits = if fmt == 1 { 6 } else { 10 };
            let l1s = 1u64 << cd_max.saturating_sub(leaf_bits);
            for i in 0..l1s {
                let Some(d) = self.hal.read_u64(base + i * 8) else {
                    break;
                };
                let (v, l2) = l1cd(d);
                if v && (l2..l2 + (64u64 << leaf_bits)).contains(&addr) {
                    return Some((sid, ((i << leaf_bits) + (addr - l2) / 64) as u32));
                }
            }
        }
        None
    }

    /// Start recording entry changes (dropping any recorded).
    pub fn watch(&mut self) {
        self.watch.seen = Some(Vec::new());
    }

    /// Stop recording; the changes, by entry, in the order first changed.
    /// Chunks that are no STE or host CD (page tables) are left out.
    pub fn changes(&mut self) -> Changes {
        let seen = self.watch.seen.take().unwrap_or_default();
        let mut out: Vec<Change> = Vec::new();
        for (at, before, after) in seen {
            let entry = match (self.ste_sid(at), self.cd_at(at)) {
                (Some(sid), _) => Entry::Ste(sid),
                (None, Some((sid, ssid))) => Entry::Cd { sid, ssid },
                (None, None) => continue,
            };
            match out.iter_mut().find(|c| c.entry == entry) {
                Some(c) => c.states.push(after),
                None => out.push(Change {
                    entry,
                    states: vec![before, after],
                }),
            }
        }
        Changes(out)
    }
}
