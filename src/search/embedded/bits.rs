//! A dense set of a segment's document ids, one bit each, in 64-bit words: what the
//! embedded search evaluates a query into. Intersections, counts and facet counts are
//! word-wise (a million documents are 15,625 words), so a filter or a word matching most
//! of the index costs microseconds once its bits exist.

use tantivy::DocId;

/// Document ids below `len`, as bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: u32,
}

impl Bits {
    /// No document of a segment of `len` documents.
    pub fn empty(len: u32) -> Bits {
        Bits {
            words: vec![0; words_for(len)],
            len,
        }
    }

    /// Every document of a segment of `len` documents.
    pub fn full(len: u32) -> Bits {
        let mut bits = Bits {
            words: vec![u64::MAX; words_for(len)],
            len,
        };
        bits.trim();
        bits
    }

    /// The ids in `docs` (each below `len`).
    pub fn from_docs(len: u32, docs: impl IntoIterator<Item = DocId>) -> Bits {
        let mut bits = Bits::empty(len);
        for doc in docs {
            bits.insert(doc);
        }
        bits
    }

    /// Clears the bits past `len` in the last word.
    fn trim(&mut self) {
        let tail = self.len % 64;
        if tail != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << tail) - 1;
            }
        }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    #[inline]
    pub fn insert(&mut self, doc: DocId) {
        self.words[(doc / 64) as usize] |= 1u64 << (doc % 64);
    }

    #[inline]
    pub fn contains(&self, doc: DocId) -> bool {
        self.words
            .get((doc / 64) as usize)
            .is_some_and(|word| word & (1u64 << (doc % 64)) != 0)
    }

    /// How many documents are in the set.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Keeps the documents also in `other`.
    pub fn and(&mut self, other: &Bits) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word &= other;
        }
    }

    /// Adds the documents of `other`.
    pub fn or(&mut self, other: &Bits) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word |= other;
        }
    }

    /// How many documents are in both sets, without building the intersection.
    pub fn and_count(&self, other: &Bits) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }

    /// The documents in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = DocId> + '_ {
        self.words.iter().enumerate().flat_map(|(index, word)| {
            let base = index as u32 * 64;
            BitsOf(*word).map(move |bit| base + bit)
        })
    }

    /// Keeps only the documents `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(DocId) -> bool) {
        for (index, word) in self.words.iter_mut().enumerate() {
            let base = index as u32 * 64;
            for bit in BitsOf(*word) {
                if !keep(base + bit) {
                    *word &= !(1u64 << bit);
                }
            }
        }
    }
}

fn words_for(len: u32) -> usize {
    (len as usize).div_ceil(64)
}

/// The set bits of one word, lowest first.
pub struct BitsOf(pub u64);

impl Iterator for BitsOf {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_combine_word_wise_and_iterate_in_order() {
        let mut a = Bits::from_docs(200, [0, 3, 64, 130, 199]);
        let b = Bits::from_docs(200, [3, 64, 65, 199]);
        assert_eq!(a.count(), 5);
        assert_eq!(a.and_count(&b), 3);
        let mut union = a.clone();
        union.or(&b);
        assert_eq!(
            union.iter().collect::<Vec<_>>(),
            vec![0, 3, 64, 65, 130, 199]
        );
        a.and(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 64, 199]);
        a.retain(|doc| doc != 64);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 199]);
        assert!(a.contains(199) && !a.contains(64) && !a.contains(5_000));
        assert_eq!(Bits::full(130).count(), 130, "no bit past the universe");
        assert!(Bits::empty(0).is_empty());
    }
}
