//! The simulated population: segments, activity, category taste and the churn process.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::catalogue::catalogue;
use crate::devices::{self, Device, HUMAN_DEVICES};
use crate::sample::{chance, hex16, lognormal_mean1, pick, unit};

/// Who a person is, which fixes their activity level and churn hazard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Customer with an account, visiting several times a week.
    Loyal,
    /// Customer with an account, visiting about weekly.
    Regular,
    /// Customer with an account, visiting a few times a month.
    Occasional,
    /// Customer with an account who rarely comes back.
    OneOff,
    /// Anonymous visitor who arrives during the run and may sign up (a lead).
    Visitor,
    /// A crawler: never identified, never buys, never churns.
    Bot,
}

/// Where a person is in the churn process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Life {
    /// Visiting at their segment's rate.
    Active,
    /// Engagement is 0.7 on the first day of decline and decays by a factor 0.7 a day; once it
    /// drops below 0.1 (on the 7th day) the person has churned.
    Declining,
    /// No organic sessions any more; only a campaign click can bring them back.
    Churned,
}

/// Segment parameters: (segment, share of customers, sessions/day, decline hazard/day, buy propensity).
pub(crate) const CUSTOMER_SEGMENTS: [(Segment, f64, f64, f64, f64); 4] = [
    (Segment::Loyal, 0.15, 0.45, 0.003, 1.6),
    (Segment::Regular, 0.35, 0.18, 0.008, 1.2),
    (Segment::Occasional, 0.35, 0.06, 0.015, 1.0),
    (Segment::OneOff, 0.15, 0.02, 0.03, 0.8),
];
/// Share of people who are bots.
pub(crate) const BOT_SHARE: f64 = 0.01;
/// Share of people who are customers with an account at the start.
pub(crate) const CUSTOMER_SHARE: f64 = 0.40;
/// Bot sessions per day.
const BOT_RATE: f64 = 0.15;
/// Daily decline hazard of visitors.
const VISITOR_HAZARD: f64 = 0.04;
/// Daily engagement factor while declining, and the level below which a person has churned.
pub(crate) const DECAY: f64 = 0.7;
const CHURN_LEVEL: f64 = 0.1;

/// One simulated person (one device).
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) segment: Segment,
    pub(crate) anon_id: String,
    /// The person's id at the shop once they have an account (`u_<index>`).
    pub(crate) user_id: String,
    pub(crate) has_account: bool,
    pub(crate) device: Device,
    pub(crate) ua: &'static str,
    pub(crate) ip: String,
    pub(crate) locale: &'static str,
    /// Organic sessions per day when fully engaged.
    pub(crate) rate: f64,
    /// Purchase propensity (multiplies add-to-cart and checkout probabilities).
    pub(crate) buy: f64,
    /// Visitors' latent interest in `[0, 1)`; 1 for customers.
    pub(crate) interest: f64,
    /// Favourite category indices (1 or 2).
    pub(crate) favourites: Vec<u8>,
    pub(crate) arrival_day: u32,
    hazard: f64,
    pub(crate) engagement: f64,
    pub(crate) life: Life,
    /// Opt-ins by `crate::wire::MsgChannel` index: email, whatsapp, sms, push.
    pub(crate) opt_in: [bool; 4],
    pub(crate) busy_until: i64,
    pub(crate) welcome_day: Option<u32>,
    pub(crate) signed_up_at: Option<i64>,
    pub(crate) first_purchase_at: Option<i64>,
    decline_at: Option<i64>,
    churned_at: Option<i64>,
    pub(crate) sessions: u32,
    pub(crate) purchases: u32,
    pub(crate) reactivations: u32,
}

impl Person {
    /// Draws person number `index` (0-based) of a run of `days` days.
    pub(crate) fn draw(rng: &mut StdRng, index: u32, days: u32) -> Self {
        let r = unit(rng);
        let (segment, rate, hazard, buy, interest) = if r < BOT_SHARE {
            (Segment::Bot, BOT_RATE, 0.0, 0.0, 0.0)
        } else if r < BOT_SHARE + CUSTOMER_SHARE {
            let weights: Vec<_> = CUSTOMER_SEGMENTS.iter().map(|s| (*s, s.1)).collect();
            let (seg, _, rate, hazard, buy) = *pick(rng, &weights);
            (seg, rate * lognormal_mean1(rng, 0.5), hazard, buy * lognormal_mean1(rng, 0.3), 1.0)
        } else {
            let interest = unit(rng);
            let rate = (0.02 + 0.15 * interest * interest) * lognormal_mean1(rng, 0.5);
            (Segment::Visitor, rate, VISITOR_HAZARD, 0.3 + 1.2 * interest, interest)
        };
        let device = if segment == Segment::Bot { Device::Bot } else { *pick(rng, &HUMAN_DEVICES) };
        let cat_weights: Vec<(u8, f64)> =
            catalogue().iter().enumerate().map(|(i, c)| (i as u8, c.popularity)).collect();
        let first = *pick(rng, &cat_weights);
        let mut favourites = vec![first];
        if chance(rng, 0.6) {
            let others: Vec<_> = cat_weights.iter().copied().filter(|(c, _)| *c != first).collect();
            favourites.push(*pick(rng, &others));
        }
        let customer = !matches!(segment, Segment::Visitor | Segment::Bot);
        Person {
            segment,
            anon_id: format!("a_{}", hex16(rng)),
            user_id: format!("u_{:06}", u64::from(index) + 1),
            has_account: customer,
            device,
            ua: devices::user_agent(rng, device),
            ip: devices::ip(rng),
            locale: devices::locale(rng),
            rate,
            buy,
            interest,
            favourites,
            arrival_day: if segment == Segment::Visitor { rng.random_range(0..days.max(1)) } else { 0 },
            hazard,
            engagement: 1.0,
            life: Life::Active,
            opt_in: [chance(rng, 0.7), chance(rng, 0.2), chance(rng, 0.25), device.has_push() && chance(rng, 0.6)],
            busy_until: i64::MIN,
            welcome_day: None,
            signed_up_at: None,
            first_purchase_at: None,
            decline_at: None,
            churned_at: None,
            sessions: 0,
            purchases: 0,
            reactivations: 0,
        }
    }

    /// Advances the churn process at the start of `day` (which begins at `day_start` ms).
    pub(crate) fn start_day(&mut self, rng: &mut StdRng, day: u32, day_start: i64) {
        if day < self.arrival_day || self.segment == Segment::Bot {
            return;
        }
        match self.life {
            Life::Active => {
                if chance(rng, self.hazard) {
                    self.life = Life::Declining;
                    self.decline_at = Some(day_start);
                    self.engagement = DECAY;
                }
            }
            Life::Declining => {
                self.engagement *= DECAY;
                if self.engagement < CHURN_LEVEL {
                    self.life = Life::Churned;
                    self.engagement = 0.0;
                    self.churned_at = Some(day_start);
                }
            }
            Life::Churned => {}
        }
    }

    /// Expected organic sessions on `day` given the weekday factor.
    pub(crate) fn session_rate(&self, day: u32, day_start: i64, weekday_factor: f64) -> f64 {
        if day < self.arrival_day || self.life == Life::Churned {
            return 0.0;
        }
        // New sign-ups are curious for two weeks.
        let lead_boost = match self.signed_up_at {
            Some(t) if day_start - t < 14 * crate::DAY_MS => 1.5,
            _ => 1.0,
        };
        self.rate * self.engagement * weekday_factor * lead_boost
    }

    /// A campaign click by a churned person brings them back with probability 0.25.
    pub(crate) fn maybe_reactivate(&mut self, rng: &mut StdRng) {
        if self.life == Life::Churned && chance(rng, 0.25) {
            self.life = Life::Active;
            self.engagement = 1.0;
            self.reactivations += 1;
        }
    }

    /// The person's ground truth.
    pub(crate) fn truth(&self) -> PersonTruth {
        let at = |t: Option<i64>| t.and_then(DateTime::from_timestamp_millis);
        PersonTruth {
            anon_id: self.anon_id.clone(),
            user_id: self.has_account.then(|| self.user_id.clone()),
            segment: self.segment,
            device: self.device,
            favourite_categories: self.favourites.iter().map(|c| catalogue()[usize::from(*c)].id).collect(),
            interest: self.interest,
            life: self.life,
            signed_up_at: at(self.signed_up_at),
            first_purchase_at: at(self.first_purchase_at),
            decline_started_at: at(self.decline_at),
            churned_at: at(self.churned_at),
            sessions: self.sessions,
            purchases: self.purchases,
            reactivations: self.reactivations,
        }
    }
}

/// What the simulator knows about a person and the stream does not say outright — labels for
/// model tests (churn, lead conversion, favourite categories). Reflects the events generated so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonTruth {
    /// The device id (`anon_id` of all the person's events).
    pub anon_id: String,
    /// The shop's id, once the person has an account (customers from the start, visitors after `signup`).
    pub user_id: Option<String>,
    /// The person's segment.
    pub segment: Segment,
    /// The person's device.
    pub device: Device,
    /// The 1–2 favourite category ids, most favourite first.
    pub favourite_categories: Vec<&'static str>,
    /// Visitors' latent interest in `[0, 1)` (drives return rate, sign-up and buying); 1 for others.
    pub interest: f64,
    /// Where the person is in the churn process now.
    pub life: Life,
    /// When a visitor signed up.
    pub signed_up_at: Option<DateTime<Utc>>,
    /// When the person first purchased during the run.
    pub first_purchase_at: Option<DateTime<Utc>>,
    /// Start of the day the person started declining (last time, if reactivated since).
    pub decline_started_at: Option<DateTime<Utc>>,
    /// Start of the day the person churned (last time, if reactivated since).
    pub churned_at: Option<DateTime<Utc>>,
    /// Browsing sessions so far.
    pub sessions: u32,
    /// Purchases so far.
    pub purchases: u32,
    /// How many times a campaign brought the person back after churning.
    pub reactivations: u32,
}
