//! Per-identity limits: what an allowed identity may do, so that a compromised one cannot
//! call an API at any rate. A limit sits on an allow rule or on a route; the data plane counts
//! it per identity (or per identity and route), in each replica on its own.

use std::fmt;

/// A request rate (a token bucket) and/or a number of requests in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    pub rate: Option<Rate>,
    pub in_flight: Option<u32>,
    pub per: LimitScope,
}

/// A token bucket: `per_second` tokens a second, holding at most `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// Whose requests one counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// Every request of one identity (its SPIFFE ID, or a token's subject) that the limit
    /// covers, on whatever route.
    Identity,
    /// One identity on one route.
    IdentityAndRoute,
}

/// The fastest rate a limit may name: beyond it a limit limits nothing a replica could serve.
const MAX_PER_SECOND: f64 = 1_000_000.0;

/// `N/s`, `N/m` or `N/h` (N a positive number, fractions allowed): requests per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate like `50/s`, `600/m` or `1000/h`"))?;
    let count: f64 = count
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .ok_or_else(|| format!("`{text}`: `{count}` is not a positive number"))?;
    let seconds = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("`{text}`: `{other}` is not one of s, m, h")),
    };
    let per_second = count / seconds;
    if per_second > MAX_PER_SECOND {
        return Err(format!(
            "`{text}` is over {MAX_PER_SECOND} requests a second"
        ));
    }
    Ok(per_second)
}

impl LimitScope {
    pub fn parse(text: &str) -> Option<LimitScope> {
        match text {
            "identity" => Some(LimitScope::Identity),
            "identity_route" => Some(LimitScope::IdentityAndRoute),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Identity => "identity",
            LimitScope::IdentityAndRoute => "identity_route",
        }
    }
}

impl Rate {
    /// How long until a bucket holding `tokens` holds one whole token.
    pub fn wait_for_one(&self, tokens: f64) -> f64 {
        ((1.0 - tokens) / self.per_second).max(0.0)
    }
}

impl fmt::Display for Rate {
    /// In the largest unit of `s`, `m`, `h` that counts at least one request: `10/s`, `1/m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (count, unit) = if self.per_second >= 1.0 {
            (self.per_second, "s")
        } else if self.per_second * 60.0 >= 1.0 {
            (self.per_second * 60.0, "m")
        } else {
            (self.per_second * 3600.0, "h")
        };
        let count = format!("{count:.3}");
        let count = count.trim_end_matches('0').trim_end_matches('.');
        write!(f, "{count}/{unit}")
    }
}

impl fmt::Display for Limit {
    /// `50/s (burst 100), 20 in flight, per identity`: what events and logs say of a limit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(rate) = &self.rate {
            write!(f, "{rate} (burst {})", rate.burst)?;
            if self.in_flight.is_some() {
                f.write_str(", ")?;
            }
        }
        if let Some(n) = self.in_flight {
            write!(f, "{n} in flight")?;
        }
        let per = match self.per {
            LimitScope::Identity => "identity",
            LimitScope::IdentityAndRoute => "identity and route",
        };
        write!(f, ", per {per}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_in_requests_per_second() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("600/m"), Ok(10.0));
        assert_eq!(parse_rate("1800/h"), Ok(0.5));
        assert_eq!(parse_rate(" 2.5 / s "), Ok(2.5));
        for bad in [
            "",
            "50",
            "50/d",
            "0/s",
            "-1/s",
            "x/s",
            "inf/s",
            "NaN/s",
            "2000000/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_limit_says_what_it_is() {
        let limit = Limit {
            rate: Some(Rate {
                per_second: 50.0,
                burst: 100,
            }),
            in_flight: Some(20),
            per: LimitScope::IdentityAndRoute,
        };
        assert_eq!(
            limit.to_string(),
            "50/s (burst 100), 20 in flight, per identity and route"
        );
        let only_rate = Limit {
            in_flight: None,
            per: LimitScope::Identity,
            ..limit
        };
        assert_eq!(only_rate.to_string(), "50/s (burst 100), per identity");
        for (text, shown) in [
            ("1/m", "1/m"),
            ("90/m", "1.5/s"),
            ("2/h", "2/h"),
            ("2.5/s", "2.5/s"),
        ] {
            let rate = Rate {
                per_second: parse_rate(text).unwrap(),
                burst: 1,
            };
            assert_eq!(rate.to_string(), shown);
        }
        assert_eq!(
            Rate {
                per_second: 4.0,
                burst: 4
            }
            .wait_for_one(0.0),
            0.25
        );
    }
}
