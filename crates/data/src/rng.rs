//! Counter-based randomness.
//!
//! Every random decision of the pipeline comes from a generator keyed by the values it depends
//! on (seed, purpose, epoch, example index or batch), never from a generator whose state
//! advances as the run goes. That is what lets a resumed run, or a run with another thread
//! count, see exactly the same batches.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The purposes that key independent random streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// The order of the examples in an epoch.
    Shuffle = 1,
    /// The student's (and in shared mode the common) crop and flip of one example.
    View = 2,
    /// The teacher's crop and flip in independent mode.
    TeacherView = 3,
    /// The mixup coefficient of one batch.
    Mixup = 4,
    /// The train/held-out split.
    Split = 5,
}

/// The SplitMix64 finaliser: a bijection of `u64` with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (SplitMix64) whose start state is a hash of a key.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `(seed, stream, parts…)`; equal keys give equal sequences.
    pub fn keyed(seed: u64, stream: Stream, parts: &[u64]) -> Rng {
        let mut h = mix64(seed ^ 0x243F_6A88_85A3_08D3);
        h = mix64(h.rotate_left(17) ^ mix64((stream as u64).wrapping_mul(GOLDEN)));
        for (i, &p) in parts.iter().enumerate() {
            // The position enters the hash so that (1, 2) and (2, 1) give different keys.
            let salted = p.wrapping_add((i as u64 + 1).wrapping_mul(GOLDEN));
            h = mix64(h.rotate_left(23) ^ mix64(salted));
        }
        Rng { state: h }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)`.
    pub fn uniform_in(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Uniform integer in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift; the bias (n / 2^64) is far below anything measurable here.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A standard normal deviate (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // in (0, 1], so the log is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A Gamma(shape, 1) deviate (Marsaglia and Tsang); `shape` must be positive.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            // Gamma(a) = Gamma(a + 1) · U^(1/a) keeps the squeeze method valid below 1.
            let u = 1.0 - self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = 1.0 - self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// A Beta(a, b) deviate; `a` and `b` must be positive.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        if x + y == 0.0 {
            // Both underflowed (tiny shapes): the distribution is then almost all at 0 and 1.
            return if self.uniform() < a / (a + b) { 1.0 } else { 0.0 };
        }
        x / (x + y)
    }

    /// A seeded Fisher–Yates shuffle of `items`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_give_equal_streams_and_different_keys_differ() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::keyed(7, Stream::View, &[1, 2]), |r, _| Some(r.next_u64()))
            .collect();
        let mut r = Rng::keyed(7, Stream::View, &[1, 2]);
        let b: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        let swapped = Rng::keyed(7, Stream::View, &[2, 1]).next_u64();
        let other_stream = Rng::keyed(7, Stream::TeacherView, &[1, 2]).next_u64();
        assert_ne!(a[0], swapped);
        assert_ne!(a[0], other_stream);
    }

    #[test]
    fn beta_has_the_right_mean_and_variance() {
        for &p in &[0.2f64, 1.0, 3.0] {
            let mut r = Rng::keyed(1, Stream::Mixup, &[p.to_bits()]);
            let n = 40_000;
            let xs: Vec<f64> = (0..n).map(|_| r.beta(p, p)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let want_var = 1.0 / (4.0 * (2.0 * p + 1.0));
            assert!((mean - 0.5).abs() < 0.01, "Beta({p},{p}) mean {mean}");
            assert!((var - want_var).abs() < 0.01, "Beta({p},{p}) variance {var} vs {want_var}");
            assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
        }
    }

    #[test]
    fn below_is_uniform() {
        let mut r = Rng::keyed(3, Stream::Shuffle, &[]);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[r.below(10) as usize] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            assert!((9_500..10_500).contains(c), "bucket {i} has {c} of 100000: {counts:?}");
        }
    }
}
