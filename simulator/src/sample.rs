//! Small hand-written samplers over the seeded [`StdRng`] (no `rand_distr`).

use rand::Rng;
use rand::rngs::StdRng;

/// A uniform draw in `[0, 1)`.
pub(crate) fn unit(rng: &mut StdRng) -> f64 {
    rng.random::<f64>()
}

/// `true` with probability `p` (any `p`; values outside `[0, 1]` saturate).
pub(crate) fn chance(rng: &mut StdRng, p: f64) -> bool {
    unit(rng) < p
}

/// Exponential with the given mean: `-ln(1 - u) * mean`.
pub(crate) fn exp(rng: &mut StdRng, mean: f64) -> f64 {
    -(1.0 - unit(rng)).ln() * mean
}

/// Standard normal via Box–Muller.
pub(crate) fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - unit(rng); // (0, 1]
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal with mean 1 and log-scale spread `sigma`: `exp(sigma·z − sigma²/2)`.
pub(crate) fn lognormal_mean1(rng: &mut StdRng, sigma: f64) -> f64 {
    (sigma * normal(rng) - sigma * sigma / 2.0).exp()
}

/// Poisson with mean `lambda` (Knuth's product method; the simulator only uses small means).
pub(crate) fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u32;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = unit(rng);
    while p > limit {
        k += 1;
        p *= unit(rng);
    }
    k
}

/// An index drawn with probability proportional to `weights` (which must not all be zero).
pub(crate) fn weighted(rng: &mut StdRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = unit(rng) * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// An element of `items` drawn with probability proportional to its weight.
pub(crate) fn pick<'a, T>(rng: &mut StdRng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = unit(rng) * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

/// 16 lowercase hex digits from the rng (device, session and order ids).
pub(crate) fn hex16(rng: &mut StdRng) -> String {
    format!("{:016x}", rng.random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn samplers_have_the_documented_means() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 40_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        let e = mean(&mut || exp(&mut rng, 3.0));
        assert!((e - 3.0).abs() < 0.1, "exp mean {e}");
        let l = mean(&mut || lognormal_mean1(&mut rng, 0.5));
        assert!((l - 1.0).abs() < 0.03, "lognormal mean {l}");
        let p = mean(&mut || f64::from(poisson(&mut rng, 2.5)));
        assert!((p - 2.5).abs() < 0.05, "poisson mean {p}");
        let z = mean(&mut || normal(&mut rng));
        assert!(z.abs() < 0.03, "normal mean {z}");
        let w = mean(&mut || weighted(&mut rng, &[1.0, 3.0]) as f64);
        assert!((w - 0.75).abs() < 0.02, "weighted {w}");
    }
}
