//! Pieces shared by the differential tests.
// Each test binary includes this module and uses a subset of it.
#![allow(dead_code, reason = "shared by test binaries that each use a part")]

/// A seeded SplitMix64: the same seed gives the same cases on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    pub fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
    /// Index drawn according to integer weights.
    pub fn weighted(&mut self, weights: &[usize]) -> usize {
        let total: usize = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

const ACCT_A: &str = "111111111111";
const ACCT_B: &str = "222222222222";
const ALICE: &str = "arn:aws:iam::111111111111:user/alice";
const BOB: &str = "arn:aws:iam::222222222222:user/bob";
const SESSION: &str = "arn:aws:sts::111111111111:assumed-role/R/s1";
const ROLE: &str = "arn:aws:iam::111111111111:role/R";
const ROOT_A: &str = "arn:aws:iam::111111111111:root";
const SERVICE: &str = "sns.amazonaws.com";
const TRUST_ROLE: &str = "arn:aws:iam::111111111111:role/T";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Alice,
    Session,
    Bob,
    Root,
    Service,
    Anonymous,
}
