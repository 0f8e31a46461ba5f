//! Bit fields of in-memory hardware structures (table entries, queue
//! commands and records), named once per layout and read and written through
//! the same definition.
//!
//! A structure is an array of little-endian 64-bit words as the hardware
//! reads them; a [`Field`] is bits `hi..=lo` of one word. Register blocks use
//! tock-registers instead; these are the structures that live in memory the
//! crate allocates.

/// Bits `hi..=lo` (inclusive, `hi >= lo`, both below 64) of word `word`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Which 64-bit word of the structure.
    pub word: usize,
    /// Highest bit.
    pub hi: u32,
    /// Lowest bit.
    pub lo: u32,
}

impl Field {
    /// Bits `hi..=lo` of word `word`.
    pub const fn new(word: usize, hi: u32, lo: u32) -> Self {
        Field { word, hi, lo }
    }

    /// A one-bit field.
    pub const fn bit(word: usize, bit: u32) -> Self {
        Field::new(word, bit, bit)
    }

    /// The field's bits in its word.
    pub const fn mask(self) -> u64 {
        mask(self.hi, self.lo)
    }

    /// Width in bits.
    pub const fn width(self) -> u32 {
        self.hi - self.lo + 1
    }

    /// Whether `value` fits in the field.
    pub const fn fits(self, value: u64) -> bool {
        fits(value, self.width())
    }

    /// The field's value in `words` (0 when the word is past the end).
    pub fn get(self, words: &[u64]) -> u64 {
        words
            .get(self.word)
            .map_or(0, |w| (w & self.mask()) >> self.lo)
    }

    /// The field's bits in `words` left in place (for address fields whose
    /// low bits are implied zeros).
    pub fn get_in_place(self, words: &[u64]) -> u64 {
        words.get(self.word).map_or(0, |w| w & self.mask())
    }

    /// Set the field to `value` (truncated to its width); a word past the end
    /// is left alone.
    pub fn set(self, words: &mut [u64], value: u64) {
        if let Some(w) = words.get_mut(self.word) {
            *w = (*w & !self.mask()) | ((value << self.lo) & self.mask());
        }
    }

    /// Set the field's bits from `value` taken in place (its bits outside the
    /// field are ignored).
    pub fn set_in_place(self, words: &mut [u64], value: u64) {
        if let Some(w) = words.get_mut(self.word) {
            *w = (*w & !self.mask()) | (value & self.mask());
        }
    }

    /// `value` placed in the field, as a word (to build constants).
    pub const fn encode(self, value: u64) -> u64 {
        (value << self.lo) & self.mask()
    }
}

/// True when `value` fits in `bits` bits (any value fits in 64 or more).
pub const fn fits(value: u64, bits: u32) -> bool {
    bits >= 64 || value >> bits == 0
}

/// Bits `hi..=lo` set (`hi >= lo`, both below 64).
pub const fn mask(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// The union of the masks of `fields` that lie in word `word`.
pub const fn word_mask(fields: &[Field], word: usize) -> u64 {
    let mut m = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].word == word {
            m |= fields[i].mask();
        }
        i += 1;
    }
    m
}
