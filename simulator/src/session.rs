//! The session state machine: landing → browsing (category pages, searches, product views, cart
//! changes, sign-up/login) → cart → checkout → purchase, each step with a dwell time.

use rand::Rng;
use rand::rngs::StdRng;

use crate::catalogue::{PRODUCTS_PER_CATEGORY, ProductRef, catalogue, product_at};
use crate::people::{Person, Segment};
use crate::sample::{chance, exp, pick, poisson, unit};
use crate::wire::{Campaign, Kind, Page, Raw};

/// The generator's mutable state shared by all sessions of a run.
pub(crate) struct Gen {
    pub(crate) rng: StdRng,
    /// Events generated and not yet emitted.
    pub(crate) out: Vec<Raw>,
    pub(crate) seq: u64,
    pub(crate) orders: u64,
    /// The end of the run (ms): nothing happens from then on.
    pub(crate) end: i64,
}

/// Where the session is: the clock and who the events are attributed to.
struct Cursor {
    person: u32,
    t: i64,
    session: u64,
    identified: bool,
    campaign: Option<Campaign>,
}

impl Gen {
    fn push(&mut self, c: &Cursor, kind: Kind) {
        if c.t >= self.end {
            return;
        }
        let id = self.rng.random();
        self.out.push(Raw {
            ts: c.t,
            seq: self.seq,
            person: c.person,
            session: c.session,
            identified: c.identified,
            campaign: c.campaign,
            id,
            kind,
        });
        self.seq += 1;
    }

    /// Emits `kind` at the cursor, then advances the clock by a dwell of `min + Exp(mean)` seconds.
    fn step(&mut self, c: &mut Cursor, kind: Kind, min: f64, mean: f64) {
        self.push(c, kind);
        c.t += ((min + exp(&mut self.rng, mean)) * 1000.0) as i64;
    }

    /// An `email_open` (its own `session_id`, no browsing session) at `t`.
    pub(crate) fn email_open(&mut self, person: u32, t: i64, campaign: Campaign) {
        let session = self.rng.random();
        let c = Cursor { person, t, session, identified: true, campaign: Some(campaign) };
        self.push(&c, Kind::EmailOpen);
    }
}

/// Referrers of sessions that do not come from a campaign.
const REFERRERS: [(&str, f64); 7] = [
    ("direct", 0.40),
    ("google", 0.32),
    ("bing", 0.04),
    ("instagram", 0.08),
    ("facebook", 0.06),
    ("tiktok", 0.04),
    ("partner", 0.06),
];
const LOGIN_METHODS: [(&str, f64); 3] = [("password", 0.6), ("google", 0.25), ("apple", 0.15)];
const SIGNUP_METHODS: [(&str, f64); 3] = [("email", 0.6), ("google", 0.25), ("apple", 0.15)];

/// Funnel parameters (documented in the crate doc).
pub(crate) const BOUNCE: f64 = 0.35;
pub(crate) const BOUNCE_CAMPAIGN: f64 = 0.25;
pub(crate) const ADD_BASE: f64 = 0.03;
pub(crate) const CHECKOUT_BASE: f64 = 0.40;
pub(crate) const PURCHASE_AFTER_CHECKOUT: f64 = 0.62;
pub(crate) const PURCHASE_AFTER_CHECKOUT_CAMPAIGN: f64 = 0.72;

/// A product of category `cat`, popular products first (index ∝ u^1.8).
fn product_in(rng: &mut StdRng, cat: u8) -> ProductRef {
    let idx = (PRODUCTS_PER_CATEGORY as f64 * unit(rng).powf(1.8)) as u8;
    ProductRef { cat, idx: idx.min(PRODUCTS_PER_CATEGORY as u8 - 1) }
}

/// A category by popularity over the whole catalogue.
fn any_category(rng: &mut StdRng) -> u8 {
    let mut x = unit(rng);
    for (i, c) in catalogue().iter().enumerate() {
        if x < c.popularity {
            return i as u8;
        }
        x -= c.popularity;
    }
    (catalogue().len() - 1) as u8
}

/// The category of the next product view: campaign feature, then search, then favourites (75%).
fn next_category(rng: &mut StdRng, p: &Person, campaign: Option<Campaign>, searched: Option<u8>) -> u8 {
    if let Some(c) = campaign.filter(|_| chance(rng, 0.3)) {
        return c.featured;
    }
    if let Some(s) = searched.filter(|_| chance(rng, 0.7)) {
        return s;
    }
    if chance(rng, 0.75) {
        let first = p.favourites.len() == 1 || chance(rng, 0.65);
        return if first { p.favourites[0] } else { p.favourites[1] };
    }
    any_category(rng)
}

/// Simulates one browsing session of person `idx` starting at `start`; returns when it ends.
pub(crate) fn browse(g: &mut Gen, idx: u32, p: &mut Person, start: i64, day: u32, campaign: Option<Campaign>) -> i64 {
    if start >= g.end {
        return start;
    }
    let remember = if p.device.has_push() { 0.95 } else { 0.7 };
    let identified = p.has_account && chance(&mut g.rng, remember);
    let session = g.rng.random();
    let mut c = Cursor { person: idx, t: start, session, identified, campaign };
    p.sessions += 1;
    let referrer = match campaign {
        Some(camp) => camp.channel.as_str(),
        None => *pick(&mut g.rng, &REFERRERS),
    };
    // Landing: campaigns land on their featured category, search engines often on a product.
    let landing_product = (referrer == "google" || referrer == "bing") && chance(&mut g.rng, 0.5);
    let landing = match campaign {
        Some(camp) => Page::Category(camp.featured),
        None if chance(&mut g.rng, 0.4) => Page::Category(next_category(&mut g.rng, p, None, None)),
        None => Page::Home,
    };
    let first_product = landing_product.then(|| {
        let cat = next_category(&mut g.rng, p, None, None);
        product_in(&mut g.rng, cat)
    });
    let landing_path = match first_product {
        Some(pr) => format!("/p/{}", product_at(pr).id),
        None => landing.path(),
    };
    g.step(&mut c, Kind::SessionStart { referrer, landing: landing_path }, 0.05, 0.2);
    if campaign.is_some() {
        g.step(&mut c, Kind::CampaignClick, 0.05, 0.3);
    }
    match first_product {
        Some(pr) => g.step(&mut c, Kind::ProductView(pr), 3.0, 30.0),
        None => g.step(&mut c, Kind::PageView(landing), 3.0, 20.0),
    }
    if p.segment == Segment::Bot {
        crawl(g, &mut c);
        return c.t;
    }
    let bounce = if campaign.is_some() { BOUNCE_CAMPAIGN } else { BOUNCE };
    if chance(&mut g.rng, bounce) {
        return c.t;
    }

    let e = p.engagement;
    let views = 2 + poisson(&mut g.rng, 3.0 * (0.6 + 0.4 * p.interest) * (0.5 + 0.5 * e));
    let search_at = chance(&mut g.rng, 0.25).then(|| g.rng.random_range(0..views));
    let signup_at =
        (!p.has_account && chance(&mut g.rng, 0.03 + 0.15 * p.interest)).then(|| g.rng.random_range(0..views));
    let login_at = (p.has_account && !c.identified && chance(&mut g.rng, 0.2)).then_some(0);
    let mut searched = None;
    let mut cart: Vec<(ProductRef, u32)> = Vec::new();
    let mut add_bias = if campaign.is_some() { 1.5 } else { 1.0 };
    add_bias *= p.buy * (0.4 + 0.6 * e);

    for step in 0..views {
        if c.t >= g.end {
            return c.t;
        }
        if login_at == Some(step) {
            let method = *pick(&mut g.rng, &LOGIN_METHODS);
            c.identified = true;
            g.step(&mut c, Kind::Login { method }, 2.0, 5.0);
        }
        if signup_at == Some(step) {
            g.step(&mut c, Kind::PageView(Page::Signup), 5.0, 20.0);
            let source = if chance(&mut g.rng, 0.5) { "newsletter" } else { "account" };
            sign_up(g, &mut c, p, day, source);
        }
        if search_at == Some(step) {
            let cat = if chance(&mut g.rng, 0.8) { p.favourites[0] } else { any_category(&mut g.rng) };
            let terms = catalogue()[usize::from(cat)].search_terms;
            let query = terms[g.rng.random_range(0..terms.len())];
            let results = g.rng.random_range(3..=60);
            searched = Some(cat);
            g.step(&mut c, Kind::Search { query, results }, 2.0, 6.0);
        }
        let cat = next_category(&mut g.rng, p, campaign, searched);
        if searched != Some(cat) && chance(&mut g.rng, 0.35) {
            g.step(&mut c, Kind::PageView(Page::Category(cat)), 3.0, 15.0);
        }
        let pr = product_in(&mut g.rng, cat);
        g.step(&mut c, Kind::ProductView(pr), 5.0, 35.0);

        let favourite = p.favourites.contains(&cat);
        let full = if cart.len() >= 3 { 0.2 } else { 1.0 };
        if chance(&mut g.rng, ADD_BASE * add_bias * if favourite { 1.2 } else { 0.8 } * full) {
            let qty = *pick(&mut g.rng, &[(1, 0.85), (2, 0.12), (3, 0.03)]);
            match cart.iter_mut().find(|(x, _)| *x == pr) {
                Some(l) => l.1 += qty,
                None => cart.push((pr, qty)),
            }
            g.step(&mut c, Kind::AddToCart(pr, qty), 2.0, 8.0);
        } else if !cart.is_empty() && chance(&mut g.rng, 0.05) {
            let (gone, qty) = cart.remove(g.rng.random_range(0..cart.len()));
            g.step(&mut c, Kind::RemoveFromCart(gone, qty), 2.0, 5.0);
        }
    }
    if !cart.is_empty() {
        checkout(g, &mut c, p, day, cart);
    }
    c.t
}

/// A crawler's visit: 4–20 fast page and product views.
fn crawl(g: &mut Gen, c: &mut Cursor) {
    let pages = 3 + poisson(&mut g.rng, 6.0);
    for _ in 0..pages {
        let cat = any_category(&mut g.rng);
        let kind = if chance(&mut g.rng, 0.3) {
            Kind::PageView(Page::Category(cat))
        } else {
            Kind::ProductView(product_in(&mut g.rng, cat))
        };
        g.step(c, kind, 0.5, 1.5);
    }
}

/// A visitor signs up: from this event on, the session carries their `user_id`.
fn sign_up(g: &mut Gen, c: &mut Cursor, p: &mut Person, day: u32, source: &'static str) {
    if c.t >= g.end {
        return;
    }
    let method = *pick(&mut g.rng, &SIGNUP_METHODS);
    p.has_account = true;
    p.signed_up_at = Some(c.t);
    p.welcome_day = Some(day + 1);
    c.identified = true;
    g.step(c, Kind::Signup { method, source }, 3.0, 10.0);
}

/// Cart page, then maybe checkout (identifying first), then maybe the purchase.
fn checkout(g: &mut Gen, c: &mut Cursor, p: &mut Person, day: u32, cart: Vec<(ProductRef, u32)>) {
    g.step(c, Kind::PageView(Page::Cart), 5.0, 25.0);
    if !chance(&mut g.rng, CHECKOUT_BASE + 0.1 * p.buy.min(2.0)) {
        return;
    }
    if !c.identified {
        if p.has_account {
            let method = *pick(&mut g.rng, &LOGIN_METHODS);
            c.identified = true;
            g.step(c, Kind::Login { method }, 3.0, 10.0);
        } else if chance(&mut g.rng, 0.75) {
            g.step(c, Kind::PageView(Page::Signup), 5.0, 20.0);
            sign_up(g, c, p, day, "checkout");
        } else {
            return; // left at the account wall
        }
    }
    let subtotal: u64 = cart.iter().map(|(pr, q)| product_at(*pr).price_cents * u64::from(*q)).sum();
    let units = cart.iter().map(|(_, q)| q).sum();
    g.step(c, Kind::CheckoutStart { cents: subtotal, units }, 40.0, 90.0);
    let p_buy = if c.campaign.is_some() { PURCHASE_AFTER_CHECKOUT_CAMPAIGN } else { PURCHASE_AFTER_CHECKOUT };
    if !chance(&mut g.rng, p_buy) {
        return;
    }
    let coupon = match c.campaign {
        Some(camp) if camp.welcome || chance(&mut g.rng, 0.6) => Some(camp.coupon()),
        _ => chance(&mut g.rng, 0.04).then_some("SAVE5"),
    };
    let discount = match coupon {
        Some("SAVE5") => 500.min(subtotal / 2),
        Some(_) => subtotal / 10,
        None => 0,
    };
    if c.t >= g.end {
        return;
    }
    g.orders += 1;
    let order = g.orders;
    p.purchases += 1;
    p.first_purchase_at.get_or_insert(c.t);
    g.step(c, Kind::Purchase { order, lines: cart, coupon, cents: subtotal - discount }, 5.0, 20.0);
}
