//! When traffic happens: the diurnal and weekly patterns and the campaign calendar.

use chrono::{DateTime, Datelike};
use rand::rngs::StdRng;

use crate::people::{Life, Person, Segment};
use crate::sample::{chance, exp, unit, weighted};
use crate::session::Gen;
use crate::wire::{Campaign, MsgChannel};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Relative session-start intensity per UTC hour (0–23): night trough, lunch bump, 20–21h peak.
pub const HOURLY: [f64; 24] = [
    0.6, 0.35, 0.25, 0.2, 0.2, 0.3, 0.6, 1.1, 1.6, 1.9, 2.0, 2.1, //
    2.3, 2.2, 2.0, 2.0, 2.1, 2.4, 2.9, 3.5, 3.9, 3.7, 2.8, 1.5,
];

/// Multiplier of the daily session rate, Monday to Sunday (mean 1).
pub const WEEKLY: [f64; 7] = [0.95, 0.92, 0.95, 0.98, 1.0, 1.05, 1.15];

/// The instant in the day window starting at `window_start` whose UTC time of day is `clock_ms`.
/// Every time of day occurs exactly once in a 24-hour window, whatever the window's start.
pub(crate) fn in_window(window_start: i64, clock_ms: i64) -> i64 {
    window_start + (clock_ms - window_start.rem_euclid(DAY_MS)).rem_euclid(DAY_MS)
}

/// A session start in the window, following [`HOURLY`].
pub(crate) fn diurnal_instant(rng: &mut StdRng, window_start: i64) -> i64 {
    let hour = weighted(rng, &HOURLY) as i64;
    let clock = hour * HOUR_MS + (unit(rng) * HOUR_MS as f64) as i64;
    in_window(window_start, clock)
}

/// Weekday of an instant, 0 = Monday.
pub(crate) fn weekday(ms: i64) -> usize {
    DateTime::from_timestamp_millis(ms).map_or(0, |t| t.weekday().num_days_from_monday() as usize)
}

fn yyyymmdd(ms: i64) -> u32 {
    DateTime::from_timestamp_millis(ms).map_or(0, |t| t.year().unsigned_abs() * 10_000 + t.month() * 100 + t.day())
}

/// A recurring campaign: channel, weekday (0 = Monday), UTC send hour, click probability of an
/// active recipient (for e-mail: open probability; click given open is [`EMAIL_CLICK`]) and the
/// mean response delay in minutes.
pub const CAMPAIGNS: [(&str, usize, i64, f64, f64); 5] = [
    ("email", 1, 9, 0.22, 180.0),
    ("email", 4, 9, 0.22, 180.0),
    ("push", 3, 18, 0.04, 20.0),
    ("sms", 5, 10, 0.03, 15.0),
    ("whatsapp", 6, 16, 0.07, 30.0),
];
/// Probability an opened e-mail is clicked.
pub const EMAIL_CLICK: f64 = 0.15;
/// Welcome e-mail (day after sign-up, 09:00): open and click-given-open probabilities.
pub const WELCOME: (f64, f64) = (0.5, 0.3);

fn channel(name: &str) -> MsgChannel {
    match name {
        "push" => MsgChannel::Push,
        "sms" => MsgChannel::Sms,
        "whatsapp" => MsgChannel::Whatsapp,
        _ => MsgChannel::Email,
    }
}

/// Response factor by life stage: declining recipients respond half as often, churned ones 20%.
fn life_factor(life: Life) -> f64 {
    match life {
        Life::Active => 1.0,
        Life::Declining => 0.5,
        Life::Churned => 0.2,
    }
}

/// A campaign session to start: (instant, person index, campaign).
pub(crate) type Start = (i64, u32, Option<Campaign>);

/// Sends the day's campaigns: emits `email_open` events and pushes click sessions to `starts`.
pub(crate) fn campaigns(g: &mut Gen, people: &mut [Person], day: u32, window_start: i64, starts: &mut Vec<Start>) {
    for (name, wd, hour, p_respond, delay_min) in CAMPAIGNS {
        let send = in_window(window_start, hour * HOUR_MS);
        if weekday(send) != wd {
            continue;
        }
        let ch = channel(name);
        let date = yyyymmdd(send);
        let featured = ((date + 3 * ch.index() as u32) % 10) as u8;
        let camp = Campaign { channel: ch, date, featured, welcome: false };
        for (i, p) in people.iter_mut().enumerate() {
            let signed_up_later = p.signed_up_at.is_some_and(|s| s >= send);
            if !p.has_account || signed_up_later || !p.opt_in[ch.index()] || p.segment == Segment::Bot {
                continue;
            }
            let p_respond = p_respond * life_factor(p.life);
            let click_p = if ch == MsgChannel::Email { EMAIL_CLICK } else { 1.0 };
            respond(g, p, i as u32, send, camp, (p_respond, click_p, delay_min), starts);
        }
    }
    let send = in_window(window_start, 9 * HOUR_MS);
    let featured_of = |p: &Person| p.favourites[0];
    for (i, p) in people.iter_mut().enumerate() {
        if p.welcome_day == Some(day) && p.signed_up_at.is_some_and(|s| s >= send) {
            p.welcome_day = Some(day + 1); // a sign-up spilling past the send time: tomorrow
        } else if p.welcome_day == Some(day) {
            let camp =
                Campaign { channel: MsgChannel::Email, date: yyyymmdd(send), featured: featured_of(p), welcome: true };
            respond(g, p, i as u32, send, camp, (WELCOME.0, WELCOME.1, 180.0), starts);
        }
    }
}

fn respond(
    g: &mut Gen,
    p: &mut Person,
    idx: u32,
    send: i64,
    camp: Campaign,
    (p_respond, p_click, delay_min): (f64, f64, f64),
    starts: &mut Vec<Start>,
) {
    let rng = &mut g.rng;
    if !chance(rng, p_respond) {
        return;
    }
    let mut t = send + (exp(rng, delay_min).min(20.0 * 60.0) * 60_000.0) as i64;
    if camp.channel == MsgChannel::Email {
        g.email_open(idx, t, camp);
        if !chance(&mut g.rng, p_click) {
            return;
        }
        t += 5_000 + (unit(&mut g.rng) * 115_000.0) as i64;
    }
    p.maybe_reactivate(&mut g.rng);
    starts.push((t, idx, Some(camp)));
}
