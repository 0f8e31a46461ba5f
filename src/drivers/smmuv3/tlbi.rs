//! Which TLBI addresses invalidate an unmapped range (SMMUv3 architecture,
//! "Address range invalidation"), the policy of Linux's
//! `__arm_smmu_tlb_inv_range`: with range invalidation (IDR3.RIL) each
//! command covers NUM + 1 blocks of 2^SCALE pages, taking five bits of the
//! page count at a time, so the range is covered exactly; without it one
//! command per leaf, and the whole ASID / VMID once that would take as many
//! commands as a table has entries.

use super::cmd::Range;

/// How to invalidate a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// These commands' addresses.
    Ranges,
    /// Everything under the ASID / VMID.
    All,
}

/// Bytes of the 4 KiB granule.
const GRANULE: u64 = 4096;
/// The largest NUM field.
const NUM_MAX: u64 = 31;

/// Plan the invalidation of `[start, end)` mapped with leaves of
/// `leaf_size` (4 KiB when unknown; a power of two): call `f` with each
/// command's address range, or return [`Plan::All`] (calling nothing) when
/// the whole ASID / VMID should go. `ril`: the SMMU has range invalidation;
/// `leaf`: no table page was freed.
pub fn plan(
    start: u64,
    end: u64,
    leaf_size: u64,
    ril: bool,
    leaf: bool,
    mut f: impl FnMut(Range),
) -> Plan {
    let size = end.saturating_sub(start);
    let granule = leaf_size.max(GRANULE);
    if size == 0 {
        return Plan::Ranges;
    }
    if !ril {
        // As many commands as a table of `granule` leaves has entries.
        let max_ops = granule / 8;
        if size >= max_ops * granule {
            return Plan::All;
        }
        let mut addr = start & !(granule - 1);
        while addr < end {
            f(Range {
                addr,
                leaf,
                tg: 0,
                num: 0,
                scale: 0,
                ttl: 0,
            });
            addr += granule;
        }
        return Plan::Ranges;
    }
    let tg_bits = GRANULE.trailing_zeros();
    let mut pages = size.div_ceil(GRANULE);
    // The level of the leaves, where they are known to be leaves.
    let ttl = if leaf {
        (4 - (granule.trailing_zeros() - 3) / (tg_bits - 3)) as u8
    } else {
        if pages & NUM_MAX == 1 {
            // SCALE = NUM = 0 with TTL = 0 is a reserved encoding for some
            // SMMUs: cover one page more.
            pages += 1;
        }
        0
    };
    let mut addr = start & !(GRANULE - 1);
    while pages != 0 {
        let scale = pages.trailing_zeros();
        let num = (pages >> scale) & NUM_MAX;
        f(Range {
            addr,
            leaf,
            tg: ((tg_bits - 10) / 2) as u8,
            num: (num - 1) as u8,
            scale: scale as u8,
            ttl,
        });
        addr += num << (scale + tg_bits);
        pages -= num << scale;
    }
    Plan::Ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        start: u64,
        end: u64,
        leaf_size: u64,
        ril: bool,
        leaf: bool,
    ) -> (Plan, heapless::Vec<Range, 600>) {
        let mut v = heapless::Vec::new();
        let p = plan(start, end, leaf_size, ril, leaf, |r| {
            v.push(r).unwrap();
        });
        (p, v)
    }

    fn pages(r: &Range) -> u64 {
        if r.tg == 0 {
            1
        } else {
            (u64::from(r.num) + 1) << r.scale
        }
    }

    #[test]
    fn range_commands_cover_the_range_exactly() {
        for (start, n) in [
            (0u64, 1u64),
            (0x1000, 3),
            (0x20_0000, 256),
            (0x7000, 511),
            (0x1_0000_0000, 262_144),
            (0x3000, 1000),
        ] {
            let (p, v) = collect(start, start + n * 4096, 4096, true, true);
            assert_eq!(p, Plan::Ranges);
            assert!(v.len() <= 8);
            let mut at = start;
            for r in &v {
                assert_eq!(r.addr, at, "contiguous");
                assert_eq!((r.tg, r.ttl), (1, 3));
                at += pages(r) * 4096;
            }
            assert_eq!(at, start + n * 4096, "{n} pages exactly");
        }
        // A 2 MiB leaf: one command, level 2.
        let (_, v) = collect(0x20_0000, 0x40_0000, 0x20_0000, true, true);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].ttl, v[0].scale, v[0].num), (2, 9, 0));
    }

    #[test]
    fn without_range_invalidation_one_per_leaf_then_everything() {
        let (p, v) = collect(0x1000, 0x1000 + 16 * 4096, 4096, false, true);
        assert_eq!((p, v.len()), (Plan::Ranges, 16));
        assert!(v.iter().all(|r| r.tg == 0 && r.leaf));
        let (p, v) = collect(0, 512 * 4096, 4096, false, true);
        assert_eq!((p, v.len()), (Plan::All, 0));
        let (p, v) = collect(0, 0x40_0000, 0x20_0000, false, false);
        assert_eq!((p, v.len()), (Plan::Ranges, 2));
    }

    #[test]
    fn a_non_leaf_single_page_avoids_the_reserved_encoding() {
        let (_, v) = collect(0x1000, 0x2000, 4096, true, false);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].num, v[0].scale, v[0].ttl), (0, 1, 0));
    }
}
