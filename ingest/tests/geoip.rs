//! Geo enrichment with a real MaxMind-format (MMDB) City database, read by the production
//! [`Enricher`]. The database is built by the test with the PyPI package `mmdb-writer`, so
//! `python3` must be on PATH with `pip install mmdb-writer netaddr` done; the tests fail, not
//! skip, without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use livora_common::Enrichment;
use livora_ingest::enrich::{Enricher, RequestMeta};

/// Writes a GeoIP2-City database to `argv[1]`; `argv[2]` is the IP version (4, or 6 with IPv4 at
/// `::/96` like MaxMind's own databases).
const WRITER: &str = r#"
import sys
from mmdb_writer import MMDBWriter
from netaddr import IPSet

path, version = sys.argv[1], int(sys.argv[2])
writer = MMDBWriter(
    ip_version=version,
    ipv4_compatible=version == 6,
    database_type="GeoIP2-City",
    languages=["en"],
    description="Livora test City database",
    int_type="u32",
)
writer.insert_network(IPSet(["203.0.113.0/24"]), {
    "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
    "country": {"geoname_id": 3017382, "iso_code": "FR", "names": {"en": "France", "fr": "France"}},
    "subdivisions": [{"geoname_id": 3012874, "iso_code": "IDF", "names": {"en": "Île-de-France"}}],
    "city": {"geoname_id": 2988507, "names": {"en": "Paris", "de": "Paris"}},
    "location": {"latitude": 48.8566, "longitude": 2.3522, "time_zone": "Europe/Paris"},
})
# A country-level record: no subdivision, no city.
writer.insert_network(IPSet(["198.51.100.0/24"]), {
    "country": {"geoname_id": 2921044, "iso_code": "DE", "names": {"en": "Germany"}},
})
if version == 6:
    writer.insert_network(IPSet(["2001:db8::/32"]), {
        "country": {"geoname_id": 2750405, "iso_code": "NL", "names": {"en": "Netherlands"}},
        "city": {"geoname_id": 2759794, "names": {"en": "Amsterdam"}},
    })
writer.to_db_file(path)
"#;

/// Builds the test database of IP `version` in `dir`.
fn city_database(dir: &Path, version: u8) -> PathBuf {
    let script = dir.join("write_city_db.py");
    std::fs::write(&script, WRITER).unwrap();
    let path = dir.join(format!("City-v{version}.mmdb"));
    let output = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(version.to_string())
        .output()
        .unwrap_or_else(|e| panic!("python3 must be on PATH to build the test GeoIP database: {e}"));
    assert!(
        output.status.success(),
        "building the test GeoIP database failed; it needs `pip install mmdb-writer netaddr`:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

fn geo(e: &Enrichment) -> (Option<&str>, Option<&str>, Option<&str>) {
    (e.geo_country.as_deref(), e.geo_region.as_deref(), e.geo_city.as_deref())
}

const PARIS: (Option<&str>, Option<&str>, Option<&str>) = (Some("FR"), Some("Île-de-France"), Some("Paris"));
const NOWHERE: (Option<&str>, Option<&str>, Option<&str>) = (None, None, None);

/// What both database layouts must give for IPv4.
fn check_ipv4(enricher: &Enricher) {
    let none = RequestMeta::default();
    let out = enricher.enrich(Some("203.0.113.7"), None, &none);
    assert_eq!(out.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(geo(&out), PARIS);
    // The request's own address when the event names none.
    let meta = RequestMeta { ip: Some("203.0.113.254".parse().unwrap()), user_agent: None };
    assert_eq!(geo(&enricher.enrich(None, None, &meta)), PARIS);
    // `context.ip` wins over the request's address.
    assert_eq!(geo(&enricher.enrich(Some("198.51.100.9"), None, &meta)), (Some("DE"), None, None));
    for outside in ["203.0.114.1", "203.0.112.255", "192.0.2.1", "10.0.0.1"] {
        let out = enricher.enrich(Some(outside), None, &none);
        assert_eq!(geo(&out), NOWHERE, "{outside}");
        assert_eq!(out.ip.as_deref(), Some(outside));
    }
    // No address at all: nothing to look up.
    assert_eq!(geo(&enricher.enrich(None, None, &none)), NOWHERE);
}

#[test]
fn a_city_database_gives_country_region_and_city() {
    let dir = tempfile::tempdir().unwrap();
    let enricher = Enricher::new(Some(&city_database(dir.path(), 6))).unwrap();
    check_ipv4(&enricher);
    let none = RequestMeta::default();
    let out = enricher.enrich(Some("2001:db8:1::7"), None, &none);
    assert_eq!(geo(&out), (Some("NL"), None, Some("Amsterdam")));
    for outside in ["2001:db9::1", "::1"] {
        assert_eq!(geo(&enricher.enrich(Some(outside), None, &none)), NOWHERE, "{outside}");
    }
    let meta = RequestMeta { ip: Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])), user_agent: None };
    assert_eq!(geo(&enricher.enrich(None, None, &meta)).0, Some("NL"));
}

#[test]
fn an_ipv4_only_database_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let enricher = Enricher::new(Some(&city_database(dir.path(), 4))).unwrap();
    check_ipv4(&enricher);
    // An IPv6 address cannot be looked up in an IPv4 database: no geo, no failure.
    assert_eq!(geo(&enricher.enrich(Some("2001:db8::1"), None, &RequestMeta::default())), NOWHERE);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    std::fs::write(&path, b"not a maxmind database").unwrap();
    let err = Enricher::new(Some(&path)).err().expect("refused");
    assert!(err.to_string().contains("GeoLite2-City.mmdb"), "{err}");
}
