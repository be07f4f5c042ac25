//! Weighted choice for the identity and request mixes.
//!
//! The mix is a fixed cycle, not a random draw: weights 9:1 give exactly nine of one and one of
//! the other in every ten consecutive picks, interleaved (smooth weighted round robin, as nginx
//! balances upstreams), so two runs of the same command send the same mix and a short run is
//! not skewed by chance.

use std::fmt;

/// Largest accepted sum of weights: the cycle is materialised, one entry per unit of weight.
pub const MAX_TOTAL_WEIGHT: u64 = 10_000;

/// An interleaved cycle of item indexes in proportion to their weights.
#[derive(Debug, Clone)]
pub struct WeightedCycle {
    order: Box<[u32]>,
}

/// Why a set of weights cannot make a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightError {
    /// No items to choose from.
    Empty,
    /// An item has weight 0: it could never be chosen, which is surely a mistake.
    Zero { item: usize },
    /// The weights add up to more than [`MAX_TOTAL_WEIGHT`].
    TooLarge { total: u64 },
}

impl WeightedCycle {
    pub fn new(weights: &[u32]) -> Result<WeightedCycle, WeightError> {
        if weights.is_empty() {
            return Err(WeightError::Empty);
        }
        if let Some(item) = weights.iter().position(|&w| w == 0) {
            return Err(WeightError::Zero { item });
        }
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total > MAX_TOTAL_WEIGHT {
            return Err(WeightError::TooLarge { total });
        }
        // Smooth weighted round robin: every step each item gains its weight, the richest is
        // picked and pays the total. Ties go to the first item, so the cycle is deterministic.
        let total = total as i64;
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i64::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            order.push(best as u32);
        }
        Ok(WeightedCycle {
            order: order.into_boxed_slice(),
        })
    }

    /// The item for the `n`-th pick (any `n`: the cycle repeats).
    pub fn pick(&self, n: u64) -> usize {
        self.order[(n % self.order.len() as u64) as usize] as usize
    }

    /// The length of one cycle: the sum of the weights.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Never true: a cycle has at least one entry.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl fmt::Display for WeightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightError::Empty => f.write_str("nothing to choose from"),
            WeightError::Zero { item } => write!(f, "item {} has weight 0", item + 1),
            WeightError::TooLarge { total } => write!(
                f,
                "weights add up to {total}; at most {MAX_TOTAL_WEIGHT} (use smaller ratios)"
            ),
        }
    }
}

impl std::error::Error for WeightError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(cycle: &WeightedCycle, items: usize, picks: u64) -> Vec<u64> {
        let mut counts = vec![0; items];
        for n in 0..picks {
            counts[cycle.pick(n)] += 1;
        }
        counts
    }

    #[test]
    fn every_cycle_has_exact_proportions() {
        let cycle = WeightedCycle::new(&[9, 1]).unwrap();
        assert_eq!(cycle.len(), 10);
        assert_eq!(counts(&cycle, 2, 10), vec![9, 1]);
        // Any window of whole cycles, wherever it starts.
        let mut window = [0u64; 2];
        for n in 7..107 {
            window[cycle.pick(n)] += 1;
        }
        assert_eq!(window, [90, 10]);
        let cycle = WeightedCycle::new(&[3, 1, 2]).unwrap();
        assert_eq!(counts(&cycle, 3, 600), vec![300, 100, 200]);
    }

    #[test]
    fn picks_are_interleaved_not_runs() {
        let cycle = WeightedCycle::new(&[1, 1]).unwrap();
        let picks: Vec<usize> = (0..6).map(|n| cycle.pick(n)).collect();
        assert_eq!(picks, vec![0, 1, 0, 1, 0, 1]);
        // 3:1 spreads the minority item out instead of appending it after three of the other.
        let cycle = WeightedCycle::new(&[1, 3]).unwrap();
        let picks: Vec<usize> = (0..4).map(|n| cycle.pick(n)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 1);
        assert_ne!(picks[3], 0, "{picks:?}: the minority item is not last");
        assert_ne!(picks[0], 0, "{picks:?}: the heavier item leads");
    }

    #[test]
    fn single_item_is_always_chosen() {
        let cycle = WeightedCycle::new(&[5]).unwrap();
        assert!((0..20).all(|n| cycle.pick(n) == 0));
    }

    #[test]
    fn refuses_empty_zero_and_oversized_weights() {
        assert_eq!(WeightedCycle::new(&[]).unwrap_err(), WeightError::Empty);
        assert_eq!(
            WeightedCycle::new(&[2, 0]).unwrap_err(),
            WeightError::Zero { item: 1 }
        );
        assert_eq!(
            WeightedCycle::new(&[6_000, 5_000]).unwrap_err(),
            WeightError::TooLarge { total: 11_000 }
        );
        assert!(WeightedCycle::new(&[5_000, 5_000]).is_ok());
    }
}
