//! Which rules can possibly match a request: rules are bucketed by route, and within a bucket
//! by identity, so that a decision the cache does not hold evaluates the few rules written for
//! this workload rather than every rule of the route.
//!
//! The index only ever skips rules whose `identities` matcher certainly rejects the request;
//! the rules it returns are evaluated in full, in file order. So decisions are exactly those of
//! evaluating every rule, however the rules are spread.

use std::collections::HashMap;

use crate::identity::{IdPattern, SpiffeId};

/// The rules of one route (or of every route), by identity.
#[derive(Debug, Default)]
pub(super) struct Bucket {
    /// Rules with no `identities` matcher, or `*`: candidates for every request.
    always: Vec<usize>,
    /// Rules naming an exact SPIFFE ID, by that ID.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Rules naming `base/*`, by `base`: candidates for IDs strictly below it.
    below: HashMap<Box<str>, Vec<usize>>,
}

impl Bucket {
    /// Adds rule `index` (indexes must be added in ascending order) with its identity patterns.
    pub(super) fn add(&mut self, index: usize, identities: &[IdPattern]) {
        if identities.is_empty() || identities.contains(&IdPattern::Any) {
            self.always.push(index);
            return;
        }
        for pattern in identities {
            let (map, key) = match pattern {
                IdPattern::Exact(id) => (&mut self.exact, id.as_str()),
                IdPattern::Below(base) => (&mut self.below, base.as_str()),
                IdPattern::Any => continue,
            };
            let list = map.entry(key.into()).or_default();
            // A rule listing two patterns that both key here appears once.
            if list.last() != Some(&index) {
                list.push(index);
            }
        }
    }

    /// Appends the rules that may match a request from `id` (no SPIFFE ID: only the rules
    /// without an identity matcher).
    pub(super) fn candidates(&self, id: Option<&SpiffeId>, out: &mut Vec<usize>) {
        out.extend_from_slice(&self.always);
        let Some(id) = id else { return };
        if let Some(rules) = self.exact.get(id.as_str()) {
            out.extend_from_slice(rules);
        }
        if self.below.is_empty() {
            return;
        }
        // `base/*` matches exactly the IDs of which `base` is a proper ancestor: the prefixes
        // of the ID that end before one of its path's `/` (SPIFFE IDs have no empty segments).
        let text = id.as_str();
        let path_start = text.len() - id.path().len();
        for (offset, byte) in id.path().bytes().enumerate() {
            if byte == b'/' {
                if let Some(rules) = self.below.get(&text[..path_start + offset]) {
                    out.extend_from_slice(rules);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(patterns: &[&str]) -> Vec<IdPattern> {
        patterns
            .iter()
            .map(|p| IdPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn candidates_are_exactly_the_rules_whose_identities_match() {
        let rules = [
            ids(&[]),
            ids(&["*"]),
            ids(&["spiffe://td/ns/shop/sa/checkout"]),
            ids(&["spiffe://td/ns/shop/*"]),
            ids(&["spiffe://td/*"]),
            ids(&["spiffe://other/*", "spiffe://td/ns/shop/sa/cart"]),
            ids(&["spiffe://td/ns/shop/sa/checkout/*"]),
            ids(&["spiffe://td/ns/shopping/*", "spiffe://td/ns/shop/*"]),
        ];
        let mut bucket = Bucket::default();
        for (i, r) in rules.iter().enumerate() {
            bucket.add(i, r);
        }
        for id in [
            "spiffe://td/ns/shop/sa/checkout",
            "spiffe://td/ns/shop/sa/cart",
            "spiffe://td/ns/shopping/sa/x",
            "spiffe://td/ns/shop/sa/checkout/canary",
            "spiffe://td/x",
            "spiffe://other/a/b",
            "spiffe://third/a",
        ] {
            let id = SpiffeId::parse(id).unwrap();
            let mut got = Vec::new();
            bucket.candidates(Some(&id), &mut got);
            got.sort_unstable();
            got.dedup();
            let want: Vec<usize> = rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_empty() || r.iter().any(|p| p.matches(&id)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(got, want, "{id}");
        }
        let mut none = Vec::new();
        bucket.candidates(None, &mut none);
        assert_eq!(none, vec![0, 1]);
    }
}
