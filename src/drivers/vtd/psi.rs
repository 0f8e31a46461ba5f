//! Page-selective invalidation: which aligned blocks of 2^AM pages cover an
//! unmapped range.
//!
//! A descriptor invalidates a naturally aligned block of 2^AM pages (AM at
//! most CAP.MAMV). One block covering a range can be far larger than the
//! range when the range straddles a highly aligned boundary (256 pages
//! across a 1 GiB boundary need a 2^19-page block). The range is therefore
//! covered by at most two blocks, split at the most aligned page inside
//! it, each the smallest block reaching from that page to one end: never
//! more than twice the pages unmapped, and one block when one block
//! already does that well. Above MAMV the whole domain goes instead.

/// How to invalidate a range of pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// These blocks: (first page address, AM); the second may be unused.
    Blocks([Option<(u64, u8)>; 2]),
    /// Everything under the tag (domain- or PASID-selective).
    All,
}

impl Plan {
    /// The blocks, in order.
    pub fn blocks(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        let b: &[Option<(u64, u8)>] = match self {
            Plan::Blocks(b) => b,
            Plan::All => &[],
        };
        b.iter().flatten().copied()
    }

    /// Pages the plan invalidates (`None`: everything).
    pub fn pages(&self) -> Option<u64> {
        match self {
            Plan::All => None,
            Plan::Blocks(_) => Some(self.blocks().map(|(_, am)| 1u64 << am).sum()),
        }
    }
}

/// log2 of the smallest power of two at least `n` (`n` ≥ 1).
fn ceil_log2(n: u64) -> u32 {
    64 - (n - 1).leading_zeros()
}

/// The smallest aligned block holding pages `[first, last]`: its AM.
fn covering_am(first: u64, last: u64) -> u32 {
    64 - (first ^ last).leading_zeros()
}

/// Plan the invalidation of `[start, end)` (byte addresses; partial pages
/// count whole) on a unit whose largest address mask is `mamv`; `psi`:
/// whether it invalidates by page at all (CAP.PSI).
pub fn plan(start: u64, end: u64, mamv: u8, psi: bool) -> Plan {
    let first = start >> 12;
    let Some(last) = end.checked_sub(1).map(|e| e >> 12) else {
        return Plan::Blocks([None, None]);
    };
    if !psi || last < first {
        return if last < first {
            Plan::Blocks([None, None])
        } else {
            Plan::All
        };
    }
    let pages = last - first + 1;
    let fits = |am: u32| am <= u32::from(mamv);
    let one = covering_am(first, last);
    // One block, if it is at most twice the range.
    if fits(one) && (1u128 << one) <= 2 * u128::from(pages) {
        let base = (first >> one) << one;
        return Plan::Blocks([Some((base << 12, one as u8)), None]);
    }
    // Split at the most aligned page in (first, last]: `first` and `last`
    // differ below bit `one`, so that page is `last` with those bits clear.
    let mid = (last >> (one - 1)) << (one - 1);
    let left = ceil_log2(mid - first);
    let right = ceil_log2(last - mid + 1);
    if !fits(left) || !fits(right) {
        return Plan::All;
    }
    Plan::Blocks([
        Some(((mid - (1 << left)) << 12, left as u8)),
        Some((mid << 12, right as u8)),
    ])
}

/// Linux's plan for the same range (`intel/cache.c`): one aligned block
/// covering the whole range, or everything when that block's mask exceeds
/// MAMV; for comparison in benchmarks.
pub fn linux_plan(start: u64, end: u64, mamv: u8, psi: bool) -> Plan {
    let first = start >> 12;
    let Some(last) = end.checked_sub(1).map(|e| e >> 12) else {
        return Plan::Blocks([None, None]);
    };
    if last < first {
        return Plan::Blocks([None, None]);
    }
    let am = covering_am(first, last);
    if !psi || am > u32::from(mamv) {
        return Plan::All;
    }
    Plan::Blocks([Some((((first >> am) << am) << 12, am as u8)), None])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn covered(p: &Plan) -> heapless::Vec<(u64, u64), 2> {
        p.blocks().map(|(a, am)| (a, a + (PAGE << am))).collect()
    }

    /// Every page of the range is in a block, blocks are aligned, and they
    /// cover at most twice the range.
    fn check(start: u64, pages: u64, mamv: u8) {
        let end = start + pages * PAGE;
        let p = plan(start, end, mamv, true);
        let Plan::Blocks(_) = p else {
            // Only when a block would exceed MAMV.
            assert!(pages > 1 << (mamv - 1), "{start:#x}+{pages}: All");
            return;
        };
        for (a, am) in p.blocks() {
            assert_eq!(a % (PAGE << am), 0, "aligned");
            assert!(am <= mamv);
        }
        let blocks = covered(&p);
        for page in (start..end).step_by(PAGE as usize) {
            assert!(
                blocks.iter().any(|&(a, b)| page >= a && page < b),
                "{page:#x} covered"
            );
        }
        assert!(p.pages().unwrap() <= 2 * pages, "{start:#x}+{pages}: {p:?}");
    }

    #[test]
    fn covers_every_range_within_twice_its_size() {
        for start in 0..300u64 {
            for pages in 1..300u64 {
                check(start * PAGE, pages, 18);
            }
        }
        for (start, pages) in [
            ((1 << 30) - 128 * PAGE, 256),
            ((1 << 40) - PAGE, 2),
            (0, 1 << 18),
            (PAGE, 1 << 18),
            (0x7fff_f000, 3),
        ] {
            check(start, pages, 18);
        }
    }

    #[test]
    fn one_block_when_aligned_and_two_across_a_boundary() {
        assert_eq!(
            plan(0x20_0000, 0x40_0000, 18, true),
            Plan::Blocks([Some((0x20_0000, 9)), None])
        );
        assert_eq!(
            plan(0x1000, 0x2000, 18, true),
            Plan::Blocks([Some((0x1000, 0)), None])
        );
        // 256 pages across 1 MiB: the 512-page block is within twice.
        assert_eq!(
            plan(0x8_0000, 0x18_0000, 18, true),
            Plan::Blocks([Some((0, 9)), None])
        );
        // 256 pages across 1 GiB: two 128-page blocks, where Linux's one
        // block has 2^19 pages (more than MAMV: the whole domain).
        let (start, end) = ((1 << 30) - 0x8_0000, (1 << 30) + 0x8_0000);
        let across = plan(start, end, 18, true);
        assert_eq!(across, Plan::Blocks([Some((start, 7)), Some((1 << 30, 7))]));
        assert_eq!(linux_plan(start, end, 18, true), Plan::All);
        assert_eq!(linux_plan(start, end, 20, true).pages(), Some(1 << 19));
    }

    #[test]
    fn above_mamv_or_without_psi_everything() {
        assert_eq!(plan(0, 1 << 32, 18, true), Plan::All);
        assert_eq!(plan(0, 1 << 31, 18, true).pages(), Some(1 << 19));
        assert_eq!(plan(0, 0x1000, 18, false), Plan::All);
        assert_eq!(plan(0, 1 << 30, 18, true).pages(), Some(1 << 18));
        assert_eq!(plan(0x1000, 0x1000, 18, true).pages(), Some(0));
    }
}
