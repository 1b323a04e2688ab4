//! Enrichment before append: receive time, parsed user agent, and geo when a MaxMind database is
//! configured.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use livora_common::Enrichment;
use maxminddb::{Reader, geoip2};

/// What the collector knows about a request, beyond its body.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The client address (peer, or `X-Forwarded-For` when trusted).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// How many distinct user agents the parse cache holds before it starts over.
const UA_CACHE_ENTRIES: usize = 10_000;

/// Derives [`Enrichment`] for events.
pub struct Enricher {
    geo: Option<Reader<Vec<u8>>>,
    ua: woothee::parser::Parser,
    /// Parsed user agents: a shop's traffic comes from a few thousand distinct agents, and
    /// parsing one costs microseconds, far more than a lookup.
    ua_cache: Mutex<HashMap<String, UaFields>>,
}

/// What a user agent tells.
#[derive(Debug, Clone, Default)]
struct UaFields {
    browser: Option<String>,
    browser_version: Option<String>,
    os: Option<String>,
    device_type: Option<String>,
    is_bot: bool,
}

/// Why the enricher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open geoip database {path}: {message}")]
pub struct GeoIpError {
    path: String,
    message: String,
}

impl Enricher {
    /// An enricher, with geo lookups when `geoip_database` is given.
    pub fn new(geoip_database: Option<&Path>) -> Result<Self, GeoIpError> {
        let geo = geoip_database
            .map(|path| {
                Reader::open_readfile(path)
                    .map_err(|e| GeoIpError { path: path.display().to_string(), message: e.to_string() })
            })
            .transpose()?;
        Ok(Self { geo, ua: woothee::parser::Parser::new(), ua_cache: Mutex::new(HashMap::new()) })
    }

    /// The enrichment of one event: `context.ip`/`context.ua` win over the request's own.
    pub fn enrich(&self, context_ip: Option<&str>, context_ua: Option<&str>, meta: &RequestMeta) -> Enrichment {
        let ip = match context_ip {
            Some(ip) => ip.parse().ok(),
            None => meta.ip,
        };
        let user_agent = context_ua.map(str::to_owned).or_else(|| meta.user_agent.clone());
        let mut out = Enrichment { ip: ip.map(|ip| ip.to_string()), ..Default::default() };
        if let Some(ua) = &user_agent {
            let fields = self.user_agent_fields(ua);
            out.browser = fields.browser;
            out.browser_version = fields.browser_version;
            out.os = fields.os;
            out.device_type = fields.device_type;
            out.is_bot = fields.is_bot;
        }
        if let (Some(reader), Some(ip)) = (&self.geo, ip) {
            lookup_geo(reader, ip, &mut out);
        }
        out.user_agent = user_agent;
        out
    }

    fn user_agent_fields(&self, ua: &str) -> UaFields {
        let mut cache = self.ua_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fields) = cache.get(ua) {
            return fields.clone();
        }
        let fields = self.parse_user_agent(ua);
        if cache.len() >= UA_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(ua.to_owned(), fields.clone());
        fields
    }

    fn parse_user_agent(&self, ua: &str) -> UaFields {
        let Some(parsed) = self.ua.parse(ua) else {
            return UaFields { device_type: Some("other".into()), ..UaFields::default() };
        };
        let known = |s: &str| (!s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN).then(|| s.to_owned());
        let tablet = parsed.os == "iPad" || (parsed.os == "Android" && !ua.contains("Mobile"));
        let device_type = match parsed.category {
            "crawler" => "bot",
            "pc" => "desktop",
            "smartphone" | "mobilephone" if tablet => "tablet",
            "smartphone" | "mobilephone" => "mobile",
            _ => "other",
        };
        UaFields {
            browser: known(parsed.name),
            browser_version: known(parsed.version),
            os: known(parsed.os),
            device_type: Some(device_type.to_owned()),
            is_bot: parsed.category == "crawler",
        }
    }
}

fn lookup_geo(reader: &Reader<Vec<u8>>, ip: IpAddr, out: &mut Enrichment) {
    let city = match reader.lookup::<geoip2::City>(ip) {
        Ok(Some(city)) => city,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(%ip, error = %e, "geoip lookup failed");
            return;
        }
    };
    let english = |names: Option<&std::collections::BTreeMap<&str, &str>>| {
        names.and_then(|n| n.get("en")).map(|s| (*s).to_owned())
    };
    out.geo_country = city.country.as_ref().and_then(|c| c.iso_code).map(str::to_owned);
    out.geo_region = city.subdivisions.as_ref().and_then(|s| s.first()).and_then(|s| english(s.names.as_ref()));
    out.geo_city = city.city.as_ref().and_then(|c| english(c.names.as_ref()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrich_ua(ua: &str) -> Enrichment {
        let e = Enricher::new(None).expect("no geo");
        e.enrich(None, None, &RequestMeta { ip: None, user_agent: Some(ua.into()) })
    }

    #[test]
    fn desktop_mobile_tablet_and_bots_are_told_apart() {
        let chrome = enrich_ua(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        assert_eq!(chrome.browser.as_deref(), Some("Chrome"));
        assert_eq!(chrome.device_type.as_deref(), Some("desktop"));
        assert!(!chrome.is_bot);
        let iphone = enrich_ua(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(iphone.device_type.as_deref(), Some("mobile"));
        assert_eq!(iphone.os.as_deref(), Some("iPhone"));
        let ipad = enrich_ua(
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(ipad.device_type.as_deref(), Some("tablet"));
        let bot = enrich_ua("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert!(bot.is_bot);
        assert_eq!(bot.device_type.as_deref(), Some("bot"));
        assert!(!enrich_ua("curl/8.5.0").is_bot);
    }

    #[test]
    fn context_wins_over_the_request_and_geo_is_empty_without_a_database() {
        let e = Enricher::new(None).expect("no geo");
        let meta = RequestMeta { ip: Some("198.51.100.1".parse().expect("ip")), user_agent: Some("curl/8".into()) };
        let out = e.enrich(Some("203.0.113.9"), None, &meta);
        assert_eq!(out.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(out.user_agent.as_deref(), Some("curl/8"));
        assert_eq!((out.geo_country, out.geo_city), (None, None));
        let out = e.enrich(None, None, &meta);
        assert_eq!(out.ip.as_deref(), Some("198.51.100.1"));
    }

    #[test]
    fn a_missing_geo_database_is_a_clear_error() {
        let err = Enricher::new(Some(Path::new("/nonexistent/GeoLite2-City.mmdb"))).err().expect("fails");
        assert!(err.to_string().contains("/nonexistent/GeoLite2-City.mmdb"), "{err}");
    }
}
