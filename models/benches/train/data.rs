//! The generated churn-like dataset and the `.npy` files both engines read.
//!
//! Each row is a user: two latent traits (engagement, spend) drive long-tailed counts (Poisson,
//! lognormal), five features are often missing (never ordered, no email consent, no payment
//! provider), two are categorical. The true log-odds of churn mix thresholds, interactions and a
//! U-shape, so trees have something a linear model cannot see.

use std::path::Path;

use anyhow::{Context, Result};
use livora_models::{Column, Table};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// The numeric features, in column order (the two categoricals follow).
const NUMERIC: [&str; 20] = [
    "tenure_days",
    "sessions_7d",
    "sessions_30d",
    "page_views_30d",
    "days_since_last_session",
    "orders_30d",
    "orders_90d",
    "days_since_last_order",
    "revenue_90d",
    "avg_order_value",
    "cart_adds_30d",
    "cart_abandon_rate",
    "discount_share",
    "support_tickets_90d",
    "returns_90d",
    "email_open_rate",
    "push_enabled",
    "search_count_30d",
    "wishlist_items",
    "refund_amount_90d",
];

/// Countries with their share of users; 30 rare ones (below the encoder's 0.5 %) share the rest.
const COUNTRIES: [(&str, f64); 10] = [
    ("US", 0.35),
    ("GB", 0.12),
    ("DE", 0.10),
    ("FR", 0.08),
    ("CA", 0.07),
    ("AU", 0.05),
    ("NL", 0.04),
    ("ES", 0.04),
    ("IT", 0.04),
    ("SE", 0.03),
];

/// Generated rows: the raw features, the true churn probability and the drawn label.
pub struct Dataset {
    pub table: Table,
    pub p: Vec<f64>,
    pub y: Vec<bool>,
}

fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Poisson(λ): Knuth's product of uniforms below 30, a rounded normal above.
fn poisson(rng: &mut SmallRng, lambda: f64) -> f64 {
    if lambda >= 30.0 {
        return (lambda + lambda.sqrt() * normal(rng)).round().max(0.0);
    }
    let (limit, mut k, mut prod) = ((-lambda).exp(), 0.0, rng.random::<f64>());
    while prod > limit {
        k += 1.0;
        prod *= rng.random::<f64>();
    }
    k
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// One user's features (`None`: missing), country, device and true log-odds of churn.
fn user(rng: &mut SmallRng) -> ([Option<f64>; 20], Option<String>, Option<&'static str>, f64) {
    let (e, s) = (normal(rng), normal(rng));
    let tenure = (5.3 + normal(rng)).exp().ceil().min(3000.0);
    let sessions_7d = poisson(rng, (0.8 + 0.9 * e).exp());
    let sessions_30d = sessions_7d + poisson(rng, 3.0 * (0.8 + 0.9 * e).exp());
    let views_per_session = (1.5 + 0.3 * normal(rng)).exp();
    let page_views = poisson(rng, sessions_30d * views_per_session);
    let since_session =
        if sessions_7d > 0.0 { 7.0 * rng.random::<f64>() } else { (2.8 + 0.9 * normal(rng)).exp().min(365.0) };
    let order_rate = (-1.2 + 0.7 * e + 0.3 * s).exp();
    let orders_30d = poisson(rng, order_rate);
    let orders_90d = orders_30d + poisson(rng, 2.0 * order_rate);
    let ever_ordered = orders_90d > 0.0 || rng.random::<f64>() < 0.5;
    let since_order = ever_ordered.then(|| match (orders_30d > 0.0, orders_90d > 0.0) {
        (true, _) => 30.0 * rng.random::<f64>(),
        (false, true) => 30.0 + 60.0 * rng.random::<f64>(),
        _ => 90.0 + (4.0 + normal(rng)).exp(),
    });
    let aov = ever_ordered.then(|| (3.5 + 0.4 * s + 0.6 * normal(rng)).exp());
    let revenue = orders_90d * aov.unwrap_or(0.0) * (0.2 * normal(rng)).exp();
    let cart_adds = poisson(rng, (0.2 + 0.8 * e).exp());
    let abandon = (cart_adds > 0.0).then(|| ((cart_adds - orders_30d) / cart_adds).max(0.0));
    let discount = ever_ordered.then(|| rng.random::<f64>().powi(2));
    let ticket_rate = 0.3 * (0.5 * normal(rng)).exp();
    let tickets = poisson(rng, ticket_rate);
    let returns = poisson(rng, 0.15 * orders_90d);
    let open_rate = (rng.random::<f64>() >= 0.35).then(|| sigmoid(-1.0 + 0.8 * e + normal(rng)));
    let push = if rng.random::<f64>() < 0.4 { 1.0 } else { 0.0 };
    let searches = poisson(rng, (0.5 + 0.7 * e).exp());
    let wish_rate = (-0.5 + 0.5 * e + 0.5 * normal(rng)).exp();
    let wishlist = poisson(rng, wish_rate);
    let refunds = (rng.random::<f64>() >= 0.25).then(|| returns * (3.0 + 0.7 * normal(rng)).exp());

    let mut draw = rng.random::<f64>();
    let country = COUNTRIES.iter().find(|(_, share)| {
        draw -= share;
        draw < 0.0
    });
    let country = match country {
        Some((c, _)) => Some((*c).to_owned()),
        None if rng.random::<f64>() < 0.9 => Some(format!("X{:02}", rng.random_range(0..30))),
        None => None,
    };
    let device = match rng.random::<f64>() {
        d if d < 0.40 => Some("ios"),
        d if d < 0.75 => Some("android"),
        d if d < 0.95 => Some("web"),
        _ => None,
    };

    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let domestic = matches!(country.as_deref(), Some("US" | "GB"));
    let logit = -1.9 + 1.4 * flag(since_session > 14.0) + 0.8 * flag(since_session > 45.0) - 0.5 * sessions_30d.ln_1p()
        + 1.5 * flag(orders_90d == 0.0 && tenure < 90.0)
        - 0.4 * orders_90d.ln_1p()
        + 1.5 * flag(tickets >= 2.0 && returns >= 1.0)
        + open_rate.map_or(0.5, |r| 0.7 * flag(r < 0.1))
        + 1.0 * flag(device == Some("web") && !domestic)
        + 1.2 * flag(discount.is_some_and(|d| d > 0.6) && orders_30d <= 1.0)
        + aov.map_or(0.0, |a| 0.8 * (a.ln() - 3.5).powi(2))
        - 0.6 * push * flag(sessions_7d > 2.0)
        + 0.5 * flag(abandon.is_some_and(|a| a > 0.8));
    let features = [
        Some(tenure),
        Some(sessions_7d),
        Some(sessions_30d),
        Some(page_views),
        Some(since_session),
        Some(orders_30d),
        Some(orders_90d),
        since_order,
        Some(revenue),
        aov,
        Some(cart_adds),
        abandon,
        discount,
        Some(tickets),
        Some(returns),
        open_rate,
        Some(push),
        Some(searches),
        Some(wishlist),
        refunds,
    ];
    (features, country, device, logit)
}

/// `rows` users drawn from `seed`.
pub fn generate(rows: usize, seed: u64) -> Result<Dataset> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut numeric: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(rows); NUMERIC.len()];
    let (mut country, mut device) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let (mut p, mut y) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for _ in 0..rows {
        let (features, c, d, logit) = user(&mut rng);
        for (column, v) in numeric.iter_mut().zip(features) {
            column.push(v);
        }
        country.push(c);
        device.push(d.map(str::to_owned));
        p.push(sigmoid(logit));
        y.push(rng.random::<f64>() < sigmoid(logit));
    }
    let mut table = Table::default();
    for (name, values) in NUMERIC.iter().zip(numeric) {
        table.push(*name, Column::Numeric(values))?;
    }
    table.push("country", Column::Categorical(country))?;
    table.push("device", Column::Categorical(device))?;
    Ok(Dataset { table, p, y })
}

/// Writes `values` (row-major, `shape`) as a NumPy `.npy` file of little-endian f64 and returns
/// the SHA-256 of the file, which the Python side checks.
pub fn write_npy(path: &Path, shape: &[usize], values: &[f64]) -> Result<String> {
    debug_assert_eq!(shape.iter().product::<usize>(), values.len());
    let dims = match shape {
        [n] => format!("{n},"),
        _ => shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + length (2) + header + newline: a multiple of 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 8);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&u16::try_from(header.len()).context("npy header too long")?.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    values.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Reads a file of raw little-endian f64 (the Python side's predictions).
pub fn read_f64(path: &Path) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8 bytes"))).collect())
}
