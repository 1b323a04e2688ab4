//! Exact floating-point summation, so that a sum does not depend on the order of its terms.
//!
//! The stream sees events in arrival order and the batch engine in file order; a naive `f64` sum
//! would differ between them in the last bits. [`ExactSum`] keeps the running sum as a short list
//! of non-overlapping partials (Shewchuk's algorithm, as in Python's `math.fsum`), so the total is
//! the correctly rounded sum of the terms whatever their order, and partial sums (one per window
//! bucket) merge without error.

use serde::{Deserialize, Serialize};

/// An exact sum of `f64` terms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    partials: Vec<f64>,
    /// Set when a term was infinite or NaN: the sum is then that special value.
    special: Option<f64>,
}

impl ExactSum {
    /// Adds one term.
    pub fn add(&mut self, mut x: f64) {
        if !x.is_finite() {
            self.special = Some(match self.special {
                None => x,
                Some(s) => s + x,
            });
            return;
        }
        let mut i = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
            if !x.is_finite() {
                // Overflow of finite terms: the exact sum is out of range.
                self.special = Some(x);
                self.partials.clear();
                return;
            }
        }
        self.partials.truncate(i);
        self.partials.push(x);
    }

    /// Adds every term of `other`.
    pub fn merge(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(p);
        }
        if let Some(s) = other.special {
            self.add(s);
        }
    }

    /// The correctly rounded total.
    pub fn total(&self) -> f64 {
        if let Some(s) = self.special {
            return s;
        }
        let mut n = self.partials.len();
        if n == 0 {
            return 0.0;
        }
        n -= 1;
        let mut hi = self.partials[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = self.partials[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        // Round half to even across the remaining partials, as fsum does.
        if n > 0 && ((lo < 0.0 && self.partials[n - 1] < 0.0) || (lo > 0.0 && self.partials[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sum(xs: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        xs.iter().for_each(|&x| s.add(x));
        s.total()
    }

    #[test]
    fn exact_where_naive_is_not() {
        assert_eq!(sum(&[0.1; 10]), 1.0);
        assert_eq!(sum(&[1e100, 1.0, -1e100, 1e-100]), 1.0);
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(sum(&[f64::INFINITY, 1.0]), f64::INFINITY);
    }

    proptest! {
        #[test]
        fn order_does_not_matter(mut xs in prop::collection::vec(-1e6f64..1e6, 0..60), seed: u64) {
            let forward = sum(&xs);
            // A deterministic shuffle.
            let mut state = seed | 1;
            for i in (1..xs.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                xs.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(sum(&xs).to_bits(), forward.to_bits());
            // Merging partial sums of halves gives the same total.
            let (a, b) = xs.split_at(xs.len() / 2);
            let mut left = ExactSum::default();
            a.iter().for_each(|&x| left.add(x));
            let mut right = ExactSum::default();
            b.iter().for_each(|&x| right.add(x));
            left.merge(&right);
            prop_assert_eq!(left.total().to_bits(), forward.to_bits());
        }

        #[test]
        fn cents_sum_like_decimals(cents in prop::collection::vec(0i64..100_000, 0..50)) {
            let xs: Vec<f64> = cents.iter().map(|&c| c as f64 / 100.0).collect();
            let exact = cents.iter().sum::<i64>() as f64 / 100.0;
            prop_assert!((sum(&xs) - exact).abs() <= exact.abs() * f64::EPSILON);
        }
    }
}
