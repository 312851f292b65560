//! Seeded randomness for everything outside the sampling contract
//! (bootstrap resamples, random partitions, simulations, test data):
//! SplitMix64, and — for any generator of 64-bit words, the engine's
//! seed-bound counter generator included — an unbiased `below` and the two
//! Fisher-Yates shuffles every caller uses.

/// A source of uniform 64-bit words, and the draws built on it.
pub trait Draw {
    /// The next uniform 64-bit word.
    fn next_u64(&mut self) -> u64;

    /// Uniform in `0..total` without modulo bias: words in the incomplete
    /// last block of `total` are rejected and drawn again. For the small
    /// totals of the callers a rejection has probability below 2⁻⁵⁰, so the
    /// accepted draws are those of `next_u64() % total`.
    ///
    /// # Panics
    /// When `total` is 0 (a range with nothing in it).
    fn below(&mut self, total: u64) -> u64 {
        assert!(total > 0, "below(0)");
        // limit = 2^64 - (2^64 mod total); draws at or above it are rejected.
        let rem = (u64::MAX % total + 1) % total;
        loop {
            let x = self.next_u64();
            if rem == 0 || x < u64::MAX - rem + 1 {
                return x % total;
            }
        }
    }

    /// A uniform random permutation of `items` in place (Fisher-Yates, from
    /// the last position down).
    fn shuffle<T>(&mut self, items: &mut [T])
    where
        Self: Sized,
    {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// Put a uniform draw of `n` distinct items first (Fisher-Yates from the
    /// first position up, stopped after `n` steps) and return it; the rest
    /// of `items` is left in an unspecified order.
    fn choose_first<'a, T>(&mut self, items: &'a mut [T], n: usize) -> &'a mut [T]
    where
        Self: Sized,
    {
        let n = n.min(items.len());
        for i in 0..n {
            let j = i + self.below((items.len() - i) as u64) as usize;
            items.swap(i, j);
        }
        &mut items[..n]
    }
}

/// SplitMix64: a tiny, fast, seedable generator for everything outside the
/// sampling contract (the plain sampler, test weights, bootstrap resamples,
/// simulations). Not for seed-bound sampling: that is the engine's
/// `Sha256CounterRng`.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator started at `seed` (every seed is valid).
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-scale, scale).
    pub fn uniform(&mut self, scale: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * scale
    }
}

impl Draw for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        SplitMix64::next_u64(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generator that replays fixed words, to see rejection happen.
    struct Words(Vec<u64>);

    impl Draw for Words {
        fn next_u64(&mut self) -> u64 {
            self.0.remove(0)
        }
    }

    #[test]
    fn below_rejects_the_incomplete_last_block() {
        // total 3: 2^64 mod 3 = 1, so u64::MAX (the one word of the last,
        // incomplete block) is drawn again; u64::MAX - 1 is accepted.
        let mut words = Words(vec![u64::MAX, u64::MAX - 1]);
        assert_eq!(words.below(3), (u64::MAX - 1) % 3);
        assert!(words.0.is_empty(), "the first word was rejected");
        // A power of two has no incomplete block: nothing is rejected.
        let mut words = Words(vec![u64::MAX]);
        assert_eq!(words.below(4), 3);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(5);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[rng.below(3) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 60), "{seen:?}");
    }

    #[test]
    fn shuffles_are_permutations_and_uniform() {
        let mut rng = SplitMix64::new(11);
        // Each of the 6 orders of 3 items about 1/6 of 6,000 times.
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..6000 {
            let mut v = [0, 1, 2];
            rng.shuffle(&mut v);
            *counts.entry(v).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 6);
        assert!(
            counts.values().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
        let mut v: Vec<usize> = (0..10).collect();
        let first = rng.choose_first(&mut v, 4).to_vec();
        assert_eq!(first.len(), 4);
        let mut all = v.clone();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>(), "a permutation");
        assert_eq!(rng.choose_first(&mut v, 99).len(), 10);
    }

    #[test]
    fn the_same_seed_gives_the_same_order() {
        let order = |seed| {
            let mut v: Vec<u32> = (0..20).collect();
            SplitMix64::new(seed).shuffle(&mut v);
            v
        };
        assert_eq!(order(3), order(3));
        assert_ne!(order(3), order(4));
    }
}
