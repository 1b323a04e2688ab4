//! A seeded, deterministic generator of realistic shop traffic (DOC PLACEHOLDER).

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

pub use catalogue::{Category, PRODUCTS_PER_CATEGORY, Product, category, product};
pub use config::SimConfig;
pub use devices::{Device, IP_RANGES, user_agents};
pub use people::{Life, PersonTruth, Segment};
pub use traffic::{CAMPAIGNS, DAY_MS, HOURLY, WEEKLY};

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
        Self {
            start_ms: config.start.timestamp_millis(),
            config,
            people,
            g: Gen { rng, out: Vec::new(), seq: 0, orders: 0 },
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
