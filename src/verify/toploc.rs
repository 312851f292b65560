//! TOPLOC-style activation proofs (docs/reference.md §6.2): per chunk of 32 decode
//! positions, the 128 largest-|value| entries of the final hidden states
//! (flattened over the chunk) are committed as a polynomial over GF(65497)
//! through the points (index mod m, bf16 bits): 2 bytes of modulus + 128
//! two-byte coefficients = 258 bytes per chunk. The validator recomputes the
//! hidden states in its prefill pass, evaluates the polynomial at ITS top
//! indices and compares sign+exponent and mantissa.
//!
//! Written for nsed from the paper's description (arXiv 2501.16007).

use serde::Serialize;

/// The prime of the field the polynomial lives in, GF(65497).
pub const PRIME: u32 = 65_497;
/// Decode positions per proof chunk.
pub const CHUNK: usize = 32;
/// Largest-|value| hidden-state entries committed per chunk.
pub const TOPK: usize = 128;
/// The scheme tag written in artifacts' proofs.
pub const SCHEME: &str = "toploc-bf16-v1";
/// Acceptance (docs/reference.md §6.2): at least 90 of 128 exponents match, mean mantissa
/// error at most 10, median at most 8.
const MIN_EXP_MATCHES: usize = 90;
const MAX_MEAN_MANTISSA: f64 = 10.0;
const MAX_MEDIAN_MANTISSA: f64 = 8.0;

/// One chunk's commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkProof {
    /// The m that makes the chunk's top indices distinct mod m; in (2^15, 65497].
    pub modulus: u16,
    /// Monomial coefficients, lowest degree first.
    pub coeffs: Vec<u16>,
}

/// Round-to-nearest-even bf16 bits of an f32.
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return 0x7fc0;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

fn pow_mod(mut b: u64, mut e: u64) -> u64 {
    let p = PRIME as u64;
    let mut r = 1;
    b %= p;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % p;
        }
        b = b * b % p;
        e >>= 1;
    }
    r
}

fn inv(a: u64) -> u64 {
    pow_mod(a, PRIME as u64 - 2)
}

/// The largest m in (2^15, 65497] making `indices mod m` all distinct.
fn injective_modulus(indices: &[usize]) -> Option<u16> {
    let mut seen = vec![false; PRIME as usize];
    (32_769..=PRIME as usize).rev().find_map(|m| {
        seen[..m].iter_mut().for_each(|s| *s = false);
        let ok = indices
            .iter()
            .all(|&i| !std::mem::replace(&mut seen[i % m], true));
        ok.then_some(m as u16)
    })
}

/// Interpolate through (xs, ys) over GF(p); monomial coefficients.
fn interpolate(xs: &[u64], ys: &[u64]) -> Vec<u64> {
    let p = PRIME as u64;
    let n = xs.len();
    // Newton divided differences.
    let mut c: Vec<u64> = ys.to_vec();
    for j in 1..n {
        for i in (j..n).rev() {
            let num = (c[i] + p - c[i - 1]) % p;
            let den = (xs[i] + p - xs[i - j]) % p;
            c[i] = num * inv(den) % p;
        }
    }
    // Expand c0 + c1 (x - x0) + c2 (x - x0)(x - x1) + ... by Horner from the top.
    let mut poly = vec![0u64; n];
    for k in (0..n).rev() {
        // poly = poly * (x - x_k) + c_k
        let mut next = vec![0u64; n];
        for d in 0..n {
            if poly[d] == 0 {
                continue;
            }
            if d + 1 < n {
                next[d + 1] = (next[d + 1] + poly[d]) % p;
            }
            next[d] = (next[d] + p - poly[d] * xs[k] % p) % p;
        }
        next[0] = (next[0] + c[k]) % p;
        poly = next;
    }
    poly
}

impl ChunkProof {
    /// The committed value (bf16 bits mod 65497) at a flattened hidden-state index.
    pub fn eval(&self, index: usize) -> u16 {
        let p = PRIME as u64;
        let x = (index % self.modulus as usize) as u64;
        let mut acc = 0u64;
        for &c in self.coeffs.iter().rev() {
            acc = (acc * x + c as u64) % p;
        }
        acc as u16
    }

    /// The wire form: the modulus then each coefficient, all little-endian u16 (258 bytes for 128).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.modulus.to_le_bytes().to_vec();
        for c in &self.coeffs {
            out.extend(c.to_le_bytes());
        }
        out
    }

    /// Decode [`to_bytes`](Self::to_bytes)'s layout; `None` when too short, odd-length, or out of
    /// the field (modulus outside (2^15, 65497], a coefficient >= 65497).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 4 || !b.len().is_multiple_of(2) {
            return None;
        }
        let words: Vec<u16> = b
            .chunks_exact(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .collect();
        let modulus = words[0];
        if !(32_769..=PRIME as u16).contains(&modulus)
            || words[1..].iter().any(|&c| c as u32 >= PRIME)
        {
            return None;
        }
        Some(Self {
            modulus,
            coeffs: words[1..].to_vec(),
        })
    }
}

/// Indices of the `k` largest |values| (largest first, lowest index on ties).
fn top_abs(values: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(values.len());
    let by = |a: &usize, b: &usize| values[*b].abs().total_cmp(&values[*a].abs()).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..values.len()).collect();
    if k == 0 {
        return idx;
    }
    idx.select_nth_unstable_by(k - 1, by);
    idx.truncate(k);
    idx.sort_by(by);
    idx
}

/// The proof of one chunk of hidden-state rows.
pub fn prove_chunk(rows: &[Vec<f32>]) -> Option<ChunkProof> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let idx = top_abs(&flat, TOPK);
    let modulus = injective_modulus(&idx)?;
    let xs: Vec<u64> = idx.iter().map(|&i| (i % modulus as usize) as u64).collect();
    let ys: Vec<u64> = idx
        .iter()
        .map(|&i| bf16_bits(flat[i]) as u64 % PRIME as u64)
        .collect();
    let coeffs = interpolate(&xs, &ys)
        .into_iter()
        .map(|c| c as u16)
        .collect();
    Some(ChunkProof { modulus, coeffs })
}

/// Proofs for every chunk of `CHUNK` positions.
pub fn prove(hidden: &[Vec<f32>]) -> Vec<ChunkProof> {
    hidden.chunks(CHUNK).filter_map(prove_chunk).collect()
}

/// One proof chunk checked against the validator's recomputed hidden states.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkCheck {
    /// How many of the validator's top entries match the proof in sign and exponent (of [`TOPK`]).
    pub exp_matches: usize,
    /// Mean absolute 7-bit mantissa difference over the matched entries (infinite when none).
    pub mean_mantissa_error: f64,
    /// Median absolute 7-bit mantissa difference over the matched entries (infinite when none).
    pub median_mantissa_error: f64,
    /// Whether the chunk meets the acceptance bounds (exponent matches and mantissa errors).
    pub pass: bool,
}

/// Check a chunk's proof against the validator's recomputed rows.
pub fn check_chunk(proof: &ChunkProof, rows: &[Vec<f32>]) -> ChunkCheck {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let idx = top_abs(&flat, TOPK);
    let mut exp_matches = 0;
    let mut errors = Vec::new();
    for &i in &idx {
        let claimed = proof.eval(i);
        let mine = bf16_bits(flat[i]);
        // Sign and exponent: the top 9 bits.
        if claimed >> 7 == mine >> 7 {
            exp_matches += 1;
            errors.push(((claimed & 0x7f) as i32 - (mine & 0x7f) as i32).unsigned_abs() as f64);
        }
    }
    let (mean, median) = if errors.is_empty() {
        (f64::INFINITY, f64::INFINITY)
    } else {
        errors.sort_by(f64::total_cmp);
        let m = errors.len();
        let median = if m % 2 == 1 {
            errors[m / 2]
        } else {
            (errors[m / 2 - 1] + errors[m / 2]) / 2.0
        };
        (errors.iter().sum::<f64>() / m as f64, median)
    };
    let needed = MIN_EXP_MATCHES.min(idx.len() * MIN_EXP_MATCHES / TOPK);
    ChunkCheck {
        exp_matches,
        mean_mantissa_error: mean,
        median_mantissa_error: median,
        pass: exp_matches >= needed && mean <= MAX_MEAN_MANTISSA && median <= MAX_MEDIAN_MANTISSA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitMix64;

    fn rows(seed: u64, n: usize, width: usize) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| (0..width).map(|_| rng.uniform(4.0)).collect())
            .collect()
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(-2.0), 0xc000);
        // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
    }

    #[test]
    fn polynomial_passes_through_its_points() {
        let xs: Vec<u64> = (0..128).map(|i| i * 37 + 5).collect();
        let ys: Vec<u64> = (0..128).map(|i| (i * i * 7919) % PRIME as u64).collect();
        let poly = ChunkProof {
            modulus: PRIME as u16,
            coeffs: interpolate(&xs, &ys)
                .into_iter()
                .map(|c| c as u16)
                .collect(),
        };
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(poly.eval(*x as usize) as u64, *y);
        }
    }

    #[test]
    fn proof_is_258_bytes_and_checks_its_own_rows() {
        let r = rows(1, 32, 576);
        let proof = prove_chunk(&r).expect("modulus");
        let bytes = proof.to_bytes();
        assert_eq!(bytes.len(), 258);
        assert_eq!(ChunkProof::from_bytes(&bytes), Some(proof.clone()));
        let c = check_chunk(&proof, &r);
        assert_eq!(c.exp_matches, 128);
        assert_eq!(c.mean_mantissa_error, 0.0);
        assert!(c.pass);
    }

    #[test]
    fn small_noise_passes_other_activations_fail() {
        let r = rows(2, 32, 576);
        let proof = prove_chunk(&r).expect("modulus");
        let noisy: Vec<Vec<f32>> = r
            .iter()
            .map(|row| row.iter().map(|v| v * (1.0 + 1e-3)).collect())
            .collect();
        assert!(check_chunk(&proof, &noisy).pass);
        let other = rows(3, 32, 576);
        let c = check_chunk(&proof, &other);
        assert!(!c.pass, "{c:?}");
    }
}
