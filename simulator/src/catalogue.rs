//! The simulated shop's catalogue: 10 categories × 20 products with fixed, deterministic prices.

use std::sync::LazyLock;

use serde::Serialize;

/// Products per category.
pub const PRODUCTS_PER_CATEGORY: usize = 20;

/// A product category of the simulated shop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Category {
    /// Stable id, used as `props.category` and in paths (`/c/<id>`).
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Share of the shop's interest: how likely a person picks it as a favourite and how often
    /// it is browsed outside favourites. The shares of all categories sum to 1.
    pub popularity: f64,
    /// Median product price in the category, EUR.
    pub median_price: f64,
    /// What people type into the search box to find the category's products.
    pub search_terms: &'static [&'static str],
    /// The products, most popular first.
    pub products: Vec<Product>,
}

/// A product of the simulated shop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    /// Stable id, `p_<category>_<nn>` (used as `props.product_id`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The id of the product's [`Category`].
    pub category: &'static str,
    /// Price in euro cents (always ends in 99).
    pub price_cents: u64,
}

impl Product {
    /// The price in EUR.
    pub fn price(&self) -> f64 {
        cents_to_eur(self.price_cents)
    }
}

/// Converts cents to EUR with exactly two decimals' worth of precision.
pub(crate) fn cents_to_eur(cents: u64) -> f64 {
    cents as f64 / 100.0
}

struct Spec {
    id: &'static str,
    name: &'static str,
    popularity: f64,
    median_price: f64,
    adjectives: [&'static str; 4],
    nouns: [&'static str; 5],
    search_terms: &'static [&'static str],
}

#[rustfmt::skip]
const SPECS: [Spec; 10] = [
    Spec { id: "fashion", name: "Fashion", popularity: 0.18, median_price: 35.0,
        adjectives: ["Classic", "Organic", "Slim", "Oversized"],
        nouns: ["T-Shirt", "Jeans", "Dress", "Jacket", "Sweater"],
        search_terms: &["t-shirt", "jeans", "dress", "jacket", "sweater"] },
    Spec { id: "shoes", name: "Shoes", popularity: 0.10, median_price: 65.0,
        adjectives: ["Leather", "Canvas", "Waterproof", "Lightweight"],
        nouns: ["Sneakers", "Boots", "Sandals", "Loafers", "Running Shoes"],
        search_terms: &["sneakers", "boots", "sandals", "running shoes"] },
    Spec { id: "beauty", name: "Beauty", popularity: 0.12, median_price: 18.0,
        adjectives: ["Hydrating", "Vegan", "Matte", "Revitalising"],
        nouns: ["Serum", "Moisturiser", "Lipstick", "Shampoo", "Perfume"],
        search_terms: &["serum", "moisturiser", "lipstick", "perfume"] },
    Spec { id: "home", name: "Home", popularity: 0.10, median_price: 40.0,
        adjectives: ["Linen", "Ceramic", "Nordic", "Velvet"],
        nouns: ["Cushion", "Lamp", "Throw", "Vase", "Candle"],
        search_terms: &["cushion", "lamp", "vase", "candle"] },
    Spec { id: "kitchen", name: "Kitchen", popularity: 0.08, median_price: 28.0,
        adjectives: ["Steel", "Cast-Iron", "Bamboo", "Enamel"],
        nouns: ["Chef Knife", "Frying Pan", "Coffee Grinder", "Cutting Board", "Teapot"],
        search_terms: &["knife", "pan", "coffee grinder", "teapot"] },
    Spec { id: "electronics", name: "Electronics", popularity: 0.12, median_price: 85.0,
        adjectives: ["Wireless", "Portable", "Fast", "Compact"],
        nouns: ["Headphones", "Speaker", "Charger", "Smartwatch", "Keyboard"],
        search_terms: &["headphones", "speaker", "charger", "smartwatch"] },
    Spec { id: "sports", name: "Sports", popularity: 0.10, median_price: 42.0,
        adjectives: ["Pro", "Eco", "Adjustable", "Insulated"],
        nouns: ["Yoga Mat", "Dumbbells", "Water Bottle", "Backpack", "Tracksuit"],
        search_terms: &["yoga mat", "dumbbells", "bottle", "backpack"] },
    Spec { id: "books", name: "Books", popularity: 0.08, median_price: 15.0,
        adjectives: ["Illustrated", "Pocket", "Hardcover", "Bestselling"],
        nouns: ["Novel", "Cookbook", "Travel Guide", "Comic", "Biography"],
        search_terms: &["novel", "cookbook", "travel guide", "comic"] },
    Spec { id: "toys", name: "Toys", popularity: 0.06, median_price: 25.0,
        adjectives: ["Wooden", "Giant", "Junior", "Family"],
        nouns: ["Puzzle", "Building Set", "Plush Bear", "Board Game", "Kite"],
        search_terms: &["puzzle", "lego", "board game", "plush"] },
    Spec { id: "garden", name: "Garden", popularity: 0.06, median_price: 30.0,
        adjectives: ["Terracotta", "Expandable", "Heavy-Duty", "Solar"],
        nouns: ["Planter", "Hose", "Pruner", "Bird Feeder", "Lantern"],
        search_terms: &["planter", "hose", "pruner", "solar lantern"] },
];

/// Log-scale spread of product prices around their category's median.
const PRICE_SIGMA: f64 = 0.45;

static CATALOGUE: LazyLock<Vec<Category>> = LazyLock::new(|| {
    SPECS
        .iter()
        .enumerate()
        .map(|(c, spec)| Category {
            id: spec.id,
            name: spec.name,
            popularity: spec.popularity,
            median_price: spec.median_price,
            search_terms: spec.search_terms,
            products: (0..PRODUCTS_PER_CATEGORY)
                .map(|i| {
                    let z = hashed_normal((c * 100 + i) as u64);
                    let eur = (spec.median_price * (PRICE_SIGMA * z).exp()).round().max(2.0);
                    Product {
                        id: format!("p_{}_{i:02}", spec.id),
                        name: format!("{} {}", spec.adjectives[i / 5], spec.nouns[i % 5]),
                        category: spec.id,
                        price_cents: eur as u64 * 100 - 1,
                    }
                })
                .collect(),
        })
        .collect()
});

/// The shop's categories (with their products). Identical for every seed and every run.
pub fn catalogue() -> &'static [Category] {
    &CATALOGUE
}

/// Looks a category up by id.
pub fn category(id: &str) -> Option<&'static Category> {
    catalogue().iter().find(|c| c.id == id)
}

/// Looks a product up by id.
pub fn product(id: &str) -> Option<&'static Product> {
    catalogue().iter().flat_map(|c| &c.products).find(|p| p.id == id)
}

/// A product by (category index, product index) — how the generator refers to products.
pub(crate) fn product_at(r: ProductRef) -> &'static Product {
    &catalogue()[usize::from(r.cat)].products[usize::from(r.idx)]
}

/// A compact reference to a product of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProductRef {
    pub(crate) cat: u8,
    pub(crate) idx: u8,
}

/// A seed-independent standard normal from an integer (splitmix64 + Box–Muller), so that prices
/// are part of the catalogue, not of a run.
fn hashed_normal(x: u64) -> f64 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let a = mix(x);
    let b = mix(a);
    let u1 = ((a >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (b >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_well_formed() {
        let cats = catalogue();
        assert_eq!(cats.len(), 10);
        let total: f64 = cats.iter().map(|c| c.popularity).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let mut ids = std::collections::HashSet::new();
        for c in cats {
            assert_eq!(c.products.len(), PRODUCTS_PER_CATEGORY);
            for p in &c.products {
                assert!(ids.insert(p.id.clone()), "duplicate {}", p.id);
                assert_eq!(p.category, c.id);
                assert_eq!(p.price_cents % 100, 99);
                assert!(p.price() > 0.5 && p.price() < 1000.0, "{} {}", p.id, p.price());
                assert_eq!(product(&p.id), Some(p));
            }
            assert_eq!(category(c.id).map(|x| x.id), Some(c.id));
        }
        let mut prices: Vec<f64> = cats.iter().flat_map(|c| &c.products).map(Product::price).collect();
        prices.sort_by(f64::total_cmp);
        let median = prices[prices.len() / 2];
        assert!((20.0..60.0).contains(&median), "median price {median}");
    }
}
