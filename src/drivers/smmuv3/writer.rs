//! The one way STEs and CDs change: build the new entry off-line, then
//! install it so that the SMMU, which may read the entry at any time, never
//! uses a mix of old and new bits (the algorithm of Linux's
//! `arm_smmu_write_entry`).
//!
//! The entry's layout says which bits the SMMU uses in each configuration
//! ([`super::ste::used`], [`super::cd::used`]). Bits the current entry does
//! not use are updated first, invisibly. If then only one word still
//! differs in bits the SMMU uses, writing that word switches the entry in
//! one step (hitless); otherwise the entry is broken (V = 0 in word 0),
//! filled, and made valid again with word 0 last. After each step that
//! changed memory the SMMU's cached copy is invalidated and the change
//! synchronised ([`EntrySlot::sync`]: CFGI_STE / CFGI_CD and CMD_SYNC).
//!
//! A failed sync stops the install: memory is given back the old entry
//! (made invalid first, word 0 last, without syncs, since they fail) and
//! the error returned, so that a caller told "failed" finds the old entry
//! where it left it. What the SMMU cached of the entry is then unknown
//! until a later sync succeeds.

use crate::error::Error;

/// Where an entry lives and how its change is made visible.
pub trait EntrySlot<const N: usize> {
    /// The entry as memory holds it now.
    fn read(&self) -> [u64; N];
    /// Write word `i`.
    fn write(&mut self, i: usize, value: u64);
    /// Invalidate the SMMU's copy of the entry and wait for it.
    fn sync(&mut self) -> Result<(), Error>;
}

/// What an install did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Install {
    /// Syncs issued (0 when the entry was already the target).
    pub syncs: u32,
    /// The entry had to go through V = 0.
    pub broke: bool,
}

/// Write words `range` of `target` that differ from memory; sync if any
/// did.
fn set<const N: usize, S: EntrySlot<N>>(
    slot: &mut S,
    target: &[u64; N],
    range: core::ops::Range<usize>,
    out: &mut Install,
) -> Result<(), Error> {
    let cur = slot.read();
    let mut changed = false;
    for i in range {
        if cur[i] != target[i] {
            slot.write(i, target[i]);
            changed = true;
        }
    }
    if changed {
        slot.sync()?;
        out.syncs += 1;
    }
    Ok(())
}

/// Install `target` in `slot`, whose layout uses the bits `used` says;
/// on a failed sync, memory holds the old entry again (see the module).
pub fn install<const N: usize, S: EntrySlot<N>>(
    slot: &mut S,
    used: fn(&[u64; N]) -> [u64; N],
    target: &[u64; N],
) -> Result<Install, Error> {
    let old = slot.read();
    steps(slot, used, target).inspect_err(|_| restore(slot, &old))
}

/// Put `old` back without syncs: invalid, the other words, word 0 last.
fn restore<const N: usize, S: EntrySlot<N>>(slot: &mut S, old: &[u64; N]) {
    let cur = slot.read();
    if cur == *old {
        return;
    }
    slot.write(0, 0);
    for i in 1..N {
        if cur[i] != old[i] {
            slot.write(i, old[i]);
        }
    }
    slot.write(0, old[0]);
}

fn steps<const N: usize, S: EntrySlot<N>>(
    slot: &mut S,
    used: fn(&[u64; N]) -> [u64; N],
    target: &[u64; N],
) -> Result<Install, Error> {
    let mut out = Install::default();
    let cur = slot.read();
    let (cur_used, target_used) = (used(&cur), used(target));
    // Every bit the current entry ignores takes its new value; the bits it
    // uses keep theirs.
    let mut unused_update = [0u64; N];
    let mut differ = 0u32;
    for i in 0..N {
        unused_update[i] = (cur[i] & cur_used[i]) | (target[i] & !cur_used[i]);
        // Words where a bit the SMMU would use still differs after that.
        if (unused_update[i] ^ target[i]) & target_used[i] != 0 {
            differ |= 1 << i;
        }
    }
    match differ.count_ones() {
        0 => set(slot, target, 0..N, &mut out)?,
        1 => {
            let critical = differ.trailing_zeros() as usize;
            // The critical word is written whole in the next step.
            unused_update[critical] = cur[critical];
            set(slot, &unused_update, 0..N, &mut out)?;
            set(slot, target, critical..critical + 1, &mut out)?;
            // Bits the new entry ignores go to their final values.
            set(slot, target, 0..N, &mut out)?;
        }
        _ => {
            // Break: invalid first, then everything but word 0, then word 0.
            out.broke = true;
            let mut broken = cur;
            broken[0] = 0;
            set(slot, &broken, 0..1, &mut out)?;
            set(slot, target, 1..N, &mut out)?;
            set(slot, target, 0..1, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::smmuv3::{cd, ste};

    /// A slot in plain memory that checks, at every sync, that the entry
    /// the SMMU could read is either the old one or the new one in the bits
    /// each of them uses, and counts syncs.
    struct Checked<const N: usize> {
        mem: [u64; N],
        old: [u64; N],
        new: [u64; N],
        used: fn(&[u64; N]) -> [u64; N],
        seen: u32,
        /// The sync with this number (from 1) fails.
        fail_at: Option<u32>,
    }

    impl<const N: usize> Checked<N> {
        fn consistent(&self) -> bool {
            let is = |e: &[u64; N]| {
                let u = (self.used)(e);
                (0..N).all(|i| (self.mem[i] ^ e[i]) & u[i] == 0) && (self.used)(&self.mem) == u
            };
            // Invalid is always safe; otherwise it must read as old or new.
            ste_or_cd_invalid(&self.mem, self.used) || is(&self.old) || is(&self.new)
        }
    }

    fn ste_or_cd_invalid<const N: usize>(e: &[u64; N], used: fn(&[u64; N]) -> [u64; N]) -> bool {
        let u = used(e);
        // Only the valid bit is used: the entry is invalid.
        u.iter().map(|w| w.count_ones()).sum::<u32>() == 1
    }

    impl<const N: usize> EntrySlot<N> for Checked<N> {
        fn read(&self) -> [u64; N] {
            self.mem
        }
        fn write(&mut self, i: usize, value: u64) {
            self.mem[i] = value;
            assert!(
                self.consistent(),
                "word {i} written: a mix of old and new: {:x?}",
                self.mem
            );
        }
        fn sync(&mut self) -> Result<(), Error> {
            self.seen += 1;
            if self.fail_at == Some(self.seen) {
                return Err(Error::Timeout {
                    what: "CMD_SYNC (test)",
                });
            }
            Ok(())
        }
    }

    fn run<const N: usize>(
        old: [u64; N],
        new: [u64; N],
        used: fn(&[u64; N]) -> [u64; N],
    ) -> (Install, u32) {
        let mut s = Checked {
            mem: old,
            old,
            new,
            used,
            seen: 0,
            fail_at: None,
        };
        let r = install(&mut s, used, &new).unwrap();
        assert_eq!(s.mem, new);
        // The same change with each of its syncs failing in turn: an error,
        // and memory holds the old entry (never a mix on the way).
        for k in 1..=r.syncs {
            let mut f = Checked {
                mem: old,
                fail_at: Some(k),
                seen: 0,
                ..s
            };
            assert!(install(&mut f, used, &new).is_err(), "sync {k} failed");
            assert_eq!(f.mem, old, "sync {k} failed: the old entry is back");
        }
        (r, s.seen)
    }

    fn s2(vmid: u16, ttb: u64) -> ste::Stage2 {
        ste::Stage2 {
            vmid,
            ttb,
            t0sz: 20,
            sl0: 2,
            ps: 4,
        }
    }

    fn cdt(ptr: u64) -> ste::CdTable {
        ste::CdTable {
            ptr,
            fmt: ste::s1fmt::LINEAR,
            cd_max: 0,
        }
    }

    #[test]
    fn abort_bypass_and_stage2_switch_without_breaking() {
        let abort = ste::abort();
        let bypass = ste::bypass();
        let a = ste::stage2(s2(1, 0x8000_0000), false);
        let b = ste::stage2(s2(2, 0x9000_0000), false);
        // Config alone changes: one word, hitless, one sync for it plus one
        // for the fields now used.
        for (old, new) in [
            (abort, bypass),
            (bypass, abort),
            (abort, a),
            (a, abort),
            (bypass, a),
        ] {
            let (r, seen) = run(old, new, ste::used);
            assert!(!r.broke, "{old:x?} -> {new:x?}");
            assert_eq!(r.syncs, seen);
            assert!(r.syncs <= 3);
        }
        // Stage 2 to stage 2: VMID and table in two used words: break.
        let (r, _) = run(a, b, ste::used);
        assert!(r.broke);
        assert_eq!(r.syncs, 3);
        // Same entry again: nothing.
        assert_eq!(run(a, a, ste::used).0, Install::default());
    }

    #[test]
    fn stage1_cd_table_change_is_hitless_and_stage1_to_stage2_breaks() {
        let one = ste::stage1(cdt(0x1000), 0, false);
        let two = ste::stage1(cdt(0x2000), 0, false);
        let (r, _) = run(one, two, ste::used);
        assert!(!r.broke);
        assert_eq!(r.syncs, 1, "only word 0 changes");
        let s2e = ste::stage2(s2(3, 0x5000), false);
        let (r, _) = run(one, s2e, ste::used);
        assert!(r.broke, "config and S2 words both change");
    }

    #[test]
    fn cd_asid_or_table_changes_break_only_when_two_words_change() {
        let base = cd::Stage1 {
            ttb0: 0x4000,
            t0sz: 16,
            oas_bits: 44,
            mair: 0x44ff04,
            asid: 1,
            stall: false,
        };
        let a = cd::build(&base);
        let b = cd::build(&cd::Stage1 {
            ttb0: 0x8000,
            ..base
        });
        let c = cd::build(&cd::Stage1 {
            ttb0: 0x8000,
            asid: 2,
            ..base
        });
        let (r, _) = run(a, b, cd::used);
        assert!(!r.broke, "TTB0 alone: hitless");
        let (r, _) = run(a, c, cd::used);
        assert!(r.broke, "ASID and TTB0: break");
        let (r, _) = run([0; cd::DWORDS], a, cd::used);
        assert!(!r.broke, "invalid to valid: the valid word last");
        assert_eq!(r.syncs, 2);
    }
}
