//! A seeded, deterministic generator of realistic shop traffic, in Livora's wire format.
//!
//! Used by `livora simulate`, tests, benchmarks, the feature-store and model-training tests,
//! notebooks and the demo. A run is fixed by its [`SimConfig`]: the same config (seed included)
//! yields a byte-identical stream; another seed yields another stream (other devices, event ids and
//! behaviour). The shop — its [`catalogue`](Simulator::catalogue) — is the same for every run.
//!
//! ```
//! use livora_common::ClientId;
//! use livora_simulator::{SimConfig, Simulator};
//!
//! let config = SimConfig::new(ClientId::new("demo").unwrap(), 200, 3, 42);
//! let mut sim = Simulator::new(config);
//! let events: Vec<serde_json::Value> = sim.events().collect();
//! assert!(events.windows(2).all(|w| w[0]["timestamp"].as_str() <= w[1]["timestamp"].as_str()));
//! let truth = sim.ground_truth(); // labels: churn, sign-up, first purchase, favourite categories
//! assert_eq!(truth.len(), 200);
//! ```
//!
//! # The stream
//!
//! [`Simulator::events`] yields every event of the run as one JSON object, in non-decreasing
//! `timestamp` order (ties keep generation order), all within `[start, start + days)`. It is lazy:
//! each 24-hour window is generated when the previous one is exhausted, and only events due before
//! the window's end are released; sessions that run past it wait for the next window. Memory is
//! about one day of traffic plus the population (~200 bytes a person). Session activity past the
//! end of the run never happens (and is not in the ground truth either).
//!
//! ```json
//! {"event_id":"<uuid v4 from the seeded rng>", "timestamp":"2026-01-05T20:15:00.123Z",
//!  "client_id":"demo", "user_id":"u_000123", "anon_id":"a_<16 hex>", "session_id":"s_<16 hex>",
//!  "event_type":"add_to_cart", "props":{...},
//!  "context":{"ip":"203.0.113.7","ua":"Mozilla/5.0 ...","locale":"fr-FR","channel":"web",
//!             "utm_source":"newsletter","utm_medium":"email","utm_campaign":"cmp_email_20260106"}}
//! ```
//!
//! * `user_id` (`u_` + the person's index + 1, zero-padded to 6 digits) is present once the person is identified
//!   in the session: from `session_start` when the login is remembered, else from the `login` /
//!   `signup` event on. Anonymous visitors never carry one before their `signup`.
//! * `anon_id` is the device (one per person), `session_id` the browsing session. `email_open`
//!   events have their own `session_id` and no `session_start` (they are not browsing sessions).
//! * `context.utm_*` appear on every event of a session started by a `campaign_click`, and only there.
//! * `context.ip` is always in the RFC 5737 documentation ranges ([`IP_RANGES`]); `context.ua` is one
//!   of a small set of real user agents ([`user_agents`]); `channel` is `web`, `ios` or `android`.
//!
//! | `event_type` | `props` |
//! |---|---|
//! | `session_start` | `referrer` (`direct`, `google`, `bing`, `instagram`, `facebook`, `tiktok`, `partner` or the campaign channel), `landing` (path) |
//! | `page_view` | `page` (`home`, `category`, `cart`, `signup`), `path`, `category` (category pages) |
//! | `product_view` | `product_id`, `category`, `price`, `path` |
//! | `search` | `query`, `results` |
//! | `add_to_cart`, `remove_from_cart` | `product_id`, `category`, `price`, `quantity` |
//! | `checkout_start` | `cart_value` (EUR), `items` (units) |
//! | `purchase` | `order_id` (`o_` + 8 digits), `revenue` (EUR, 2 decimals, after coupon), `currency` `EUR`, `items` `[{product_id, category, price, quantity}]`, `coupon` (optional) |
//! | `signup` | `method` (`email`, `google`, `apple`), `source` (`checkout`, `newsletter`, `account`) |
//! | `login` | `method` (`password`, `google`, `apple`) |
//! | `campaign_click`, `email_open` | `campaign_id` (`cmp_<channel>_<yyyymmdd>` or `cmp_welcome`), `channel` (`email`, `whatsapp`, `sms`, `push`) |
//!
//! # The population
//!
//! `users` people, each drawn independently: 1% bots, 40% customers (an account from the start),
//! 59% anonymous visitors. Every person has one device (desktop 42%, phone browser 32%, tablet 6%,
//! iOS app 9%, Android app 11%; bots use Googlebot 60% / bingbot 25% / AhrefsBot 15%), a locale
//! (fr-FR 35%, de-DE 20%, en-GB 15%, es-ES, it-IT 10% each, nl-NL, en-US 5% each), one IP, and
//! 1 (40%) or 2 (60%) favourite categories drawn by category popularity.
//!
//! | segment | share | sessions/day¹ | decline hazard/day | buy propensity² |
//! |---|---|---|---|---|
//! | loyal | 15% of customers | 0.45 | 0.003 | 1.6 |
//! | regular | 35% of customers | 0.18 | 0.008 | 1.2 |
//! | occasional | 35% of customers | 0.06 | 0.015 | 1.0 |
//! | one-off | 15% of customers | 0.02 | 0.03 | 0.8 |
//! | visitor | 59% of people | 0.02 + 0.15·interest² (+ 1 on arrival) | 0.04 | 0.3 + 1.2·interest |
//! | bot | 1% of people | 0.15 | — | — |
//!
//! ¹ Per person × log-normal(σ = 0.5, mean 1); × engagement; × weekday factor ([`WEEKLY`], Monday
//! 0.95 … Saturday 1.05, Sunday 1.15); × 1.5 for 14 days after a sign-up. Sessions per day are
//! Poisson; start times follow [`HOURLY`] (UTC; trough 2–5h, lunch bump, peak 20–21h).
//! Visitors' `interest` is uniform in [0, 1); each arrives on a uniform day of the run with a first
//! session that day. ² Customers' × log-normal(σ = 0.3, mean 1).
//!
//! **Churn.** Each day an active person starts declining with their segment's hazard. Engagement
//! is then 0.7 and is multiplied by 0.7 every day; on the 7th day it is below 0.1 and the person has
//! churned: no more organic sessions. Engagement scales session rate, product views and
//! add-to-cart, so activity visibly decays for six days before churn, and recency/frequency
//! features separate churners. Campaigns still reach declining (×0.5 response) and churned (×0.2)
//! people; a churned person who clicks is reactivated with probability 0.25.
//!
//! # Sessions
//!
//! | step | rule |
//! |---|---|
//! | identified at start | account holders: 70% on the web, 95% in the apps; else a `login` at the first view (20%) or at checkout |
//! | landing | campaign → its featured category; search engines → a product page 50%; else a category page 40%, home 60% |
//! | bounce | 35% of human sessions (25% of campaign sessions) end after the landing |
//! | product views | 2 + Poisson(3·(0.6 + 0.4·interest)·(0.5 + 0.5·engagement)) — mean ≈ 4.9 in browsing sessions |
//! | view category | campaign feature 30%; after a search its category 70%; favourites 75% (the first 65% when two); else by popularity. A category page precedes 35% of views; products within a category are skewed to the popular ones (rank ∝ u^1.8) |
//! | search | 25% of browsing sessions, for a term of the first favourite (80%) |
//! | add to cart | per view: 0.03 × buy × (0.4 + 0.6·engagement) × (1.2 favourite / 0.8 other) × (1.5 campaign) × (0.2 once 3 lines); quantity 1/2/3 at 85/12/3% |
//! | remove from cart | 5% per later view without an add |
//! | sign-up while browsing | visitors: 3% + 15%·interest of browsing sessions (`newsletter`/`account`) |
//! | checkout | with a cart: cart page, then `checkout_start` with 0.40 + 0.1·min(buy, 2); an anonymous visitor must sign up first (75%, `source: checkout`) or leaves |
//! | purchase | 62% of checkouts (72% from a campaign), 40–130 s later; coupon: campaign code 60% of campaign orders (10% off), `WELCOME10` from the welcome e-mail, else `SAVE5` 4% (5 EUR off) |
//! | dwell | each step waits min + Exp(mean): views 5 + 35 s, category pages 3 + 15 s, bots 0.5 + 1.5 s |
//!
//! Bot sessions are 3 + Poisson(6) fast page and product views, never identified, never buying.
//! Prices are fixed per product: category median × log-normal(σ = 0.45), ending in .99
//! (10 categories × 20 products, medians 15–85 EUR).
//!
//! # Campaigns and leads
//!
//! | campaign | when (UTC) | audience (account holders who opted in) | response |
//! |---|---|---|---|
//! | e-mail newsletter | Tue, Fri 09:00 | 70% | open 22%, then click 15%; open after Exp(3 h) |
//! | push | Thu 18:00 | 60% of app users | click 4% after Exp(20 min) |
//! | SMS | Sat 10:00 | 25% | click 3% after Exp(15 min) |
//! | WhatsApp | Sun 16:00 | 20% | click 7% after Exp(30 min) |
//! | welcome e-mail | 09:00 the day after a sign-up | every new sign-up | open 50%, then click 30% |
//!
//! A click starts a session (`session_start`, `campaign_click`, landing page) with the utm fields.
//! A **lead** is a visitor who signs up; it converts if it purchases within 14 days. Interest
//! drives return visits, depth, adding to cart, signing up and buying, so pre-sign-up engagement
//! (views, searches, carts) predicts conversion.
//!
//! # Measured (2,000 people × 14 days, seed 42; bands asserted by `tests/behaviour.rs`)
//!
//! | quantity | value | band |
//! |---|---|---|
//! | events / sessions | 23.8k / 3.5k | |
//! | session → purchase | 2.9% | 1.5–6% |
//! | cart abandonment | 71% | 60–85% |
//! | mean order value (median) | 62 EUR (40 EUR) | 45–90 EUR |
//! | product views per browsing session | 4.9 | 3–8 |
//! | purchased items from a favourite category | 88% | 50–95% |
//! | customers active in week 1, absent in week 2 (of whom 23% declining vs 4% of the others) | 35% | 20–50% |
//! | visitors who sign up / leads converting in 14 days | 15% / 24% | 5–30% / 10–60% |
//! | lead conversion, less / more engaged half before sign-up | 4.5% / 43% | more > less + 10 pts |
//! | campaign vs organic sessions: with a cart / converting | 14% / 4.2% vs 10% / 2.9% | higher |
//! | session rate while declining / before | 0.32 | ≤ 0.65 |
//! | bot share of events | 1.0% | 0.5–4% |
//! | evening (18–22h) / night (2–6h) sessions | 18× | 4–30× |
//! | weekend / weekday sessions per day | 1.15 | 1.02–1.5 |
//!
//! Speed (release, one core): about 450–600k events/s as `serde_json::Value`s, 150–200k events/s
//! including serialising each to a string.
//!
//! Determinism covers one build: `StdRng` (ChaCha12 in rand 0.9) may change between rand versions,
//! and `f64` `ln`/`exp`/`cos` come from the platform's math library.

mod catalogue;
mod config;
mod devices;
mod people;
mod sample;
mod session;
mod traffic;
mod wire;

use std::collections::VecDeque;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

pub use catalogue::{Category, PRODUCTS_PER_CATEGORY, Product, catalogue, category, product};
pub use config::SimConfig;
pub use devices::{Device, IP_RANGES, user_agents};
pub use people::{Life, PersonTruth, Segment};
pub use traffic::{CAMPAIGNS, DAY_MS, EMAIL_CLICK, HOURLY, WEEKLY, WELCOME};

use people::Person;
use session::Gen;
use traffic::Start;
use wire::Raw;

/// The simulator of one run: a lazy, day-by-day iterator over the run's events.
///
/// The simulator is itself the iterator; [`Simulator::events`] is a readable way to borrow it.
/// Iteration resumes where it stopped and ends after the last day; create a new simulator (same
/// config) to replay the run.
pub struct Simulator {
    config: SimConfig,
    start_ms: i64,
    people: Vec<Person>,
    g: Gen,
    /// The next day to generate.
    day: u32,
    /// Events of generated days that are due (before the end of the last generated day), in order.
    ready: VecDeque<Raw>,
}

impl Simulator {
    /// Draws the population of `config.users` people; no event is generated before iteration.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let people = (0..config.users).map(|i| Person::draw(&mut rng, i, config.days)).collect();
        let end = config.end().timestamp_millis();
        Self {
            start_ms: config.start.timestamp_millis(),
            config,
            people,
            g: Gen { rng, out: Vec::new(), seq: 0, orders: 0, end },
            day: 0,
            ready: VecDeque::new(),
        }
    }

    /// Every event of the run, in non-decreasing timestamp order, each a JSON object in the wire
    /// format. Generated lazily day by day: memory is bounded by about one day of traffic.
    pub fn events(&mut self) -> impl Iterator<Item = Value> + '_ {
        self
    }

    /// The shop's catalogue (the same for every run).
    pub fn catalogue() -> &'static [Category] {
        catalogue::catalogue()
    }

    /// The run's config.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The ground truth about every person (index `i` is person `u_<i+1>`), as of the events
    /// generated so far: drain the iterator first to get the truth of the whole run.
    pub fn ground_truth(&self) -> Vec<PersonTruth> {
        self.people.iter().map(Person::truth).collect()
    }

    /// Generates day `self.day` and moves every event due before its end to `ready`.
    fn generate_day(&mut self) {
        let day = self.day;
        let window_start = self.start_ms + i64::from(day) * DAY_MS;
        let weekday_factor = WEEKLY[traffic::weekday(window_start + DAY_MS / 2)];
        let rng = &mut self.g.rng;
        let mut starts: Vec<Start> = Vec::new();
        for (i, p) in self.people.iter_mut().enumerate() {
            p.start_day(rng, day, window_start);
            let arrival = u32::from(p.segment == Segment::Visitor && p.arrival_day == day);
            let n = arrival + sample::poisson(rng, p.session_rate(day, window_start, weekday_factor));
            for _ in 0..n {
                starts.push((traffic::diurnal_instant(rng, window_start), i as u32, None));
            }
        }
        traffic::campaigns(&mut self.g, &mut self.people, day, window_start, &mut starts);
        // Chronological order, so that a person's state flows from one session to the next.
        starts.sort_by_key(|s| s.0);
        for (t, i, campaign) in starts {
            let p = &mut self.people[i as usize];
            let start = t.max(p.busy_until.saturating_add(60_000));
            p.busy_until = session::browse(&mut self.g, i, p, start, day, campaign);
        }

        let out = &mut self.g.out;
        out.sort_by_key(|r| (r.ts, r.seq));
        let last = day + 1 == self.config.days;
        let due = window_start + DAY_MS;
        let cut = out.partition_point(|r| r.ts < due);
        self.ready.extend(out.drain(..cut));
        if last {
            out.clear(); // spills past the end of the run are dropped
        }
        self.day += 1;
    }
}

impl Iterator for Simulator {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(raw) = self.ready.pop_front() {
                let person = &self.people[raw.person as usize];
                return Some(wire::render(&raw, person, self.config.client_id.as_str()));
            }
            if self.day >= self.config.days {
                return None;
            }
            self.generate_day();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livora_common::ClientId;

    #[test]
    fn memory_is_bounded_by_about_a_day_of_traffic() {
        let config = SimConfig::new(ClientId::new("t").expect("valid"), 500, 30, 1);
        let mut sim = Simulator::new(config);
        let (mut total, mut peak) = (0usize, 0usize);
        while sim.next().is_some() {
            total += 1;
            peak = peak.max(sim.ready.len() + sim.g.out.len());
        }
        assert!(total > 5_000, "{total}");
        assert!(peak * 10 < total, "{peak} events buffered out of {total}");
    }
}
