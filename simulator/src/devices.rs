//! Devices, user agents, locales and IP addresses of the simulated population.

use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::sample::pick;

/// The kind of device a person uses (one device, hence one `anon_id`, per person).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// A desktop browser (`channel: web`).
    Desktop,
    /// A phone browser (`channel: web`).
    MobileWeb,
    /// A tablet browser (`channel: web`).
    Tablet,
    /// The shop's iOS app (`channel: ios`).
    IosApp,
    /// The shop's Android app (`channel: android`).
    AndroidApp,
    /// A crawler (`channel: web`).
    Bot,
}

impl Device {
    /// The `context.channel` of the device's events.
    pub fn channel(self) -> &'static str {
        match self {
            Device::IosApp => "ios",
            Device::AndroidApp => "android",
            _ => "web",
        }
    }

    /// Whether the device can receive push notifications (the apps).
    pub fn has_push(self) -> bool {
        matches!(self, Device::IosApp | Device::AndroidApp)
    }
}

/// Device shares among human people.
pub(crate) const HUMAN_DEVICES: [(Device, f64); 5] = [
    (Device::Desktop, 0.42),
    (Device::MobileWeb, 0.32),
    (Device::Tablet, 0.06),
    (Device::IosApp, 0.09),
    (Device::AndroidApp, 0.11),
];

#[rustfmt::skip]
const DESKTOP: [(&str, f64); 6] = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", 0.40),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", 0.15),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15", 0.15),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80", 0.15),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", 0.10),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", 0.05),
];

#[rustfmt::skip]
const MOBILE: [(&str, f64); 3] = [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1", 0.50),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36", 0.30),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36", 0.20),
];

#[rustfmt::skip]
const TABLET: [(&str, f64); 2] = [
    ("Mozilla/5.0 (iPad; CPU OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1", 0.70),
    ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Safari/537.36", 0.30),
];

#[rustfmt::skip]
const IOS_APP: [(&str, f64); 1] = [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", 1.0),
];

#[rustfmt::skip]
const ANDROID_APP: [(&str, f64); 1] = [
    ("Mozilla/5.0 (Linux; Android 14; Pixel 7 Build/AP1A.240405.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36", 1.0),
];

#[rustfmt::skip]
const BOTS: [(&str, f64); 3] = [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 0.60),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 0.25),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", 0.15),
];

/// Every user agent the simulator may emit, with the device it belongs to.
pub fn user_agents() -> impl Iterator<Item = (Device, &'static str)> {
    let all: [(Device, &'static [(&'static str, f64)]); 6] = [
        (Device::Desktop, &DESKTOP),
        (Device::MobileWeb, &MOBILE),
        (Device::Tablet, &TABLET),
        (Device::IosApp, &IOS_APP),
        (Device::AndroidApp, &ANDROID_APP),
        (Device::Bot, &BOTS),
    ];
    all.into_iter().flat_map(|(d, uas)| uas.iter().map(move |(ua, _)| (d, *ua)))
}

/// A user agent for a device.
pub(crate) fn user_agent(rng: &mut StdRng, device: Device) -> &'static str {
    let table: &'static [(&'static str, f64)] = match device {
        Device::Desktop => &DESKTOP,
        Device::MobileWeb => &MOBILE,
        Device::Tablet => &TABLET,
        Device::IosApp => &IOS_APP,
        Device::AndroidApp => &ANDROID_APP,
        Device::Bot => &BOTS,
    };
    pick::<&str>(rng, table)
}

/// Locale shares (a European shop).
const LOCALES: [(&str, f64); 7] = [
    ("fr-FR", 0.35),
    ("de-DE", 0.20),
    ("en-GB", 0.15),
    ("es-ES", 0.10),
    ("it-IT", 0.10),
    ("nl-NL", 0.05),
    ("en-US", 0.05),
];

/// A locale for a person.
pub(crate) fn locale(rng: &mut StdRng) -> &'static str {
    pick::<&str>(rng, &LOCALES)
}

/// The documentation ranges of RFC 5737 — the only addresses the simulator emits.
pub const IP_RANGES: [&str; 3] = ["192.0.2", "198.51.100", "203.0.113"];

/// An address from one of [`IP_RANGES`] (host part 1–254).
pub(crate) fn ip(rng: &mut StdRng) -> String {
    let net = IP_RANGES[rng.random_range(0..IP_RANGES.len())];
    format!("{net}.{}", rng.random_range(1..=254u8))
}
