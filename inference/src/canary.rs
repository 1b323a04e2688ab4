//! Which entities a canary scores.
//!
//! An alias may carry a canary (`livora models canary churn 4 --alias production --weight 10`):
//! a second version that scores `weight` percent of the alias's entities. Each entity key falls
//! in a bucket from 0 to 99, a fixed function of (client, model, alias, entity key); the canary
//! scores the entities whose bucket is below the weight. So the split is
//!
//! - **sticky**: an entity gets the same version on every request, on every server and across
//!   restarts, for as long as the weight stays;
//! - **monotone**: raising the weight only moves entities to the canary (those of the buckets
//!   it adds), lowering it only moves them back;
//! - **independent per alias**: each alias's canary takes its own slice of the entities.
//!
//! The bucket is [`bucket`]: FNV-1a 64 over the four UTF-8 strings, each followed by a zero
//! byte, then MurmurHash3's 64-bit finaliser (`fmix64`), modulo 100. FNV-1a alone is stable and
//! cheap, but its low bits depend only on the low bits of the input bytes, so keys that differ
//! only in high bits would share buckets; the finaliser spreads every input bit over the word.
//! The function is part of the serving contract: changing it reassigns entities, so its values
//! are pinned by a test.

use livora_common::ClientId;

/// FNV-1a's 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The bucket (0–99) of `entity_key` for the canary of `alias` of `model`: the canary scores
/// the entity when the bucket is below its weight. See the module documentation for the
/// function.
pub fn bucket(client: &ClientId, model: &str, alias: &str, entity_key: &str) -> u32 {
    let mut h = FNV_OFFSET;
    for part in [client.as_str(), model, alias, entity_key] {
        for &byte in part.as_bytes().iter().chain(&[0]) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    // Below 100: the cast cannot truncate.
    (fmix64(h) % 100) as u32
}

/// Whether the canary of `alias` of `model`, at `weight` percent, scores `entity_key`.
pub fn scores(client: &ClientId, model: &str, alias: &str, entity_key: &str, weight: u32) -> bool {
    bucket(client, model, alias, entity_key) < weight
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn shop() -> ClientId {
        ClientId::new("shop").unwrap()
    }

    #[test]
    fn the_hash_is_fnv_1a_64_then_fmix64() {
        // FNV-1a 64's published test vectors (the empty string is the offset basis).
        let fnv = |s: &str| s.bytes().fold(FNV_OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv("foobar"), 0x8594_4171_f739_67e8);
        // fmix64 fixes zero and is a bijection elsewhere.
        assert_eq!(fmix64(0), 0);
        let expected = fmix64(fnv("shop\0churn\0production\0u-1\0")) % 100;
        assert_eq!(u64::from(bucket(&shop(), "churn", "production", "u-1")), expected);
    }

    #[test]
    fn buckets_are_pinned_because_changing_them_reassigns_entities() {
        let buckets: Vec<u32> =
            ["u-1", "u-2", "u-3", "u-new", ""].iter().map(|k| bucket(&shop(), "churn", "production", k)).collect();
        assert_eq!(buckets, PINNED);
        // The canary takes a bucket below its weight: u-1 (bucket 69) from weight 70 on.
        assert!(!scores(&shop(), "churn", "production", "u-1", 69));
        assert!(scores(&shop(), "churn", "production", "u-1", 70));
        // Each part counts, and parts do not run into each other.
        assert_ne!(bucket(&shop(), "churn", "production", "u-1"), bucket(&shop(), "churn", "staging", "u-1"));
        assert_ne!(bucket(&shop(), "churn", "production", "u-1"), bucket(&shop(), "chur", "nproduction", "u-1"));
    }

    /// `buckets_are_pinned_because_changing_them_reassigns_entities`'s values, computed
    /// independently (Python: FNV-1a 64 of `b"shop\0churn\0production\0u-1\0"`, fmix64, % 100).
    const PINNED: [u32; 5] = [69, 26, 33, 58, 84];

    #[test]
    fn a_weight_takes_about_its_share_and_raising_it_only_adds_entities() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let share = |w: u32| keys.iter().filter(|k| scores(&shop(), "churn", "production", k, w)).count();
        for w in [1, 10, 30, 50, 90] {
            let expected = 100 * w as usize;
            let got = share(w);
            assert!(got.abs_diff(expected) < 300, "weight {w}: {got} of 10,000");
        }
        assert_eq!(share(100), keys.len());
        for k in &keys[..1_000] {
            for w in 1..100 {
                if scores(&shop(), "churn", "production", k, w) {
                    assert!(scores(&shop(), "churn", "production", k, w + 1), "{k} left the canary at {}", w + 1);
                }
            }
        }
    }
}
