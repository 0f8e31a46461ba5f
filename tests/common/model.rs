//! The model of an I/O address space: the leaves a correct engine must have
//! written, predicted from the requests alone.
//!
//! Kept per leaf (4 KiB page, 2 MiB or 1 GiB block) rather than per 4 KiB
//! page so that 1 GiB blocks stay cheap; `lookup` answers per page.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::walk::entry_span;

/// One predicted leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MLeaf<P> {
    /// Bytes.
    pub size: u64,
    /// Output address of its first byte.
    pub out: u64,
    /// Protection it was mapped with.
    pub prot: P,
}

/// Why the model says an unmap must fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UnmapRefusal {
    /// First page of the range that is not mapped.
    pub not_mapped: Option<u64>,
    /// A leaf (iova, size) the range cuts partially.
    pub split: Option<(u64, u64)>,
}

/// The first reason to refuse an unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not mapped at this address.
    NotMapped(u64),
    /// Would cut the leaf (iova, size).
    Split(u64, u64),
}

/// The model.
#[derive(Clone, Debug)]
pub struct Model<P> {
    leaves: BTreeMap<u64, MLeaf<P>>,
    /// Leaf sizes the format may use, largest first.
    sizes: Vec<u64>,
}

impl<P: Copy + Eq + core::fmt::Debug> Model<P> {
    /// An empty address space whose format uses the given leaf sizes.
    pub fn new(sizes: &[u64]) -> Self {
        let mut sizes = sizes.to_vec();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        assert!(sizes.contains(&4096));
        Model {
            leaves: BTreeMap::new(),
            sizes,
        }
    }

    /// All leaves by input address.
    pub fn leaves(&self) -> &BTreeMap<u64, MLeaf<P>> {
        &self.leaves
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Nothing mapped?
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Greedy split into the largest leaves alignment of both addresses and
    /// the remaining length allow: (iova, out, size).
    pub fn decompose(&self, iova: u64, paddr: u64, len: u64) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < len {
            let (i, p, rest) = (iova + off, paddr + off, len - off);
            let size = *self
                .sizes
                .iter()
                .find(|&&s| i % s == 0 && p % s == 0 && rest >= s)
                .expect("4 KiB always fits");
            out.push((i, p, size));
            off += size;
        }
        out
    }

    /// Leaves intersecting [a, b), by address.
    pub fn overlapping(&self, a: u64, b: u64) -> Vec<(u64, MLeaf<P>)> {
        let mut v: Vec<_> = self
            .leaves
            .range(..b)
            .rev()
            .take_while(|(k, l)| **k + l.size > a)
            .map(|(k, l)| (*k, *l))
            .collect();
        v.reverse();
        // take_while stops at the first non-intersecting leaf walking down,
        // which is right because leaves never overlap each other.
        v
    }

    /// Map, or return the first leaf in the way (iova, leaf) and change nothing.
    pub fn map(&mut self, iova: u64, paddr: u64, len: u64, prot: P) -> Result<(), (u64, MLeaf<P>)> {
        if let Some(first) = self.overlapping(iova, iova + len).first() {
            return Err(*first);
        }
        for (i, p, size) in self.decompose(iova, paddr, len) {
            self.leaves.insert(i, MLeaf { size, out: p, prot });
        }
        Ok(())
    }

    /// What an unmap of [iova, iova+len) must do: Ok(leaves removed) or the
    /// refusal (the model then is unchanged).
    pub fn check_unmap(&self, iova: u64, len: u64) -> Result<Vec<(u64, MLeaf<P>)>, UnmapRefusal> {
        let end = iova + len;
        let hit = self.overlapping(iova, end);
        let mut refusal = UnmapRefusal::default();
        let mut cursor = iova;
        for (k, l) in &hit {
            if *k > cursor && refusal.not_mapped.is_none() {
                refusal.not_mapped = Some(cursor);
            }
            if (*k < iova || *k + l.size > end) && refusal.split.is_none() {
                refusal.split = Some((*k, l.size));
            }
            cursor = *k + l.size;
        }
        if cursor < end && refusal.not_mapped.is_none() {
            refusal.not_mapped = Some(cursor.max(iova));
        }
        if refusal == UnmapRefusal::default() {
            Ok(hit)
        } else {
            Err(refusal)
        }
    }

    /// The error an engine that checks the range in address order reports
    /// first: whichever of the hole and the cut leaf comes first.
    pub fn first_refusal(r: UnmapRefusal, iova: u64) -> Refusal {
        match (r.not_mapped, r.split) {
            (Some(h), Some((k, s))) => {
                if h < k.max(iova) {
                    Refusal::NotMapped(h)
                } else {
                    Refusal::Split(k, s)
                }
            }
            (Some(h), None) => Refusal::NotMapped(h),
            (None, Some((k, s))) => Refusal::Split(k, s),
            (None, None) => unreachable!(),
        }
    }

    /// First chunk of the decomposition of a refused map that intersects
    /// something mapped (where an engine checking in address order stops).
    pub fn first_overlap_chunk(&self, iova: u64, paddr: u64, len: u64) -> Option<u64> {
        self.decompose(iova, paddr, len)
            .into_iter()
            .find(|&(i, _, s)| !self.overlapping(i, i + s).is_empty())
            .map(|(i, _, _)| i)
    }

    /// Apply an unmap the model accepts; returns the removed leaves.
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<Vec<(u64, MLeaf<P>)>, UnmapRefusal> {
        let hit = self.check_unmap(iova, len)?;
        for (k, _) in &hit {
            self.leaves.remove(k);
        }
        Ok(hit)
    }

    /// Maximal runs of adjacent leaves: (start, len).
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (&k, l) in &self.leaves {
            match out.last_mut() {
                Some((s, n)) if *s + *n == k => *n += l.size,
                _ => out.push((k, l.size)),
            }
        }
        out
    }

    /// Translation of one address: (phys, leaf size, prot).
    pub fn lookup(&self, iova: u64) -> Option<(u64, u64, P)> {
        let (k, l) = self.leaves.range(..=iova).next_back()?;
        (iova < k + l.size).then(|| (l.out + (iova - k), l.size, l.prot))
    }

    /// Table pages a minimal table needs for these leaves: `root_pages` plus,
    /// for every non-root height, one page per distinct region holding a leaf
    /// small enough to live at or below that height.
    pub fn expected_table_pages(&self, top: u32, root_pages: usize) -> usize {
        let mut n = root_pages;
        for h in 1..top {
            let span = entry_span(h + 1);
            let set: BTreeSet<u64> = self
                .leaves
                .iter()
                .filter(|(_, l)| l.size <= entry_span(h))
                .map(|(k, _)| k / span)
                .collect();
            n += set.len();
        }
        n
    }
}
