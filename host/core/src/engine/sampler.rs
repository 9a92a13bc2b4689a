//! Turning one position's logits into the next token: biases, penalties, temperature, top-p,
//! a seeded RNG, and log-probabilities when asked.

use std::collections::HashMap;

use crate::error::{CoreError, SamplingField};

/// Sampling parameters of one sequence (validated by [`SamplingParams::validate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn validate(&self, vocab_size: usize) -> Result<(), CoreError> {
        let in_range = |v: f32, lo: f32, hi: f32| v.is_finite() && (lo..=hi).contains(&v);
        let bad = |field, rule| Err(CoreError::InvalidSampling { field, rule });
        if !in_range(self.temperature, 0.0, 2.0) {
            return bad(SamplingField::Temperature, "must be between 0 and 2");
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(SamplingField::TopP, "must be greater than 0 and at most 1");
        }
        if !in_range(self.presence_penalty, -2.0, 2.0) {
            return bad(SamplingField::PresencePenalty, "must be between -2 and 2");
        }
        if !in_range(self.frequency_penalty, -2.0, 2.0) {
            return bad(SamplingField::FrequencyPenalty, "must be between -2 and 2");
        }
        for &(tok, bias) in &self.logit_bias {
            if tok as usize >= vocab_size {
                return bad(
                    SamplingField::LogitBias,
                    "names a token outside the vocabulary",
                );
            }
            if !in_range(bias, -100.0, 100.0) {
                return bad(
                    SamplingField::LogitBias,
                    "values must be between -100 and 100",
                );
            }
        }
        Ok(())
    }
}

/// A small, fast, seedable generator (PCG-XSH-RR 64/32). Its output for a seed never changes,
/// which is what `seed` promises clients.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    const MUL: u64 = 6364136223846793005;
    const INC: u64 = 1442695040888963407;

    pub fn new(seed: u64) -> Self {
        let mut rng = Rng { state: 0 };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(Self::INC);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let hi = u64::from(self.next_u32()) << 21;
        let lo = u64::from(self.next_u32()) >> 11;
        ((hi | lo) as f64) / (1u64 << 53) as f64
    }
}

/// The sampler state of one sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// How often each token was generated so far (for the penalties).
    counts: HashMap<u32, u32>,
}

/// The outcome of one sampling step.
pub struct Sampled {
    pub token: u32,
    /// `(logprob of the sampled token, top alternatives)` when requested.
    pub logprobs: Option<(f32, Vec<(u32, f32)>)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now())
        });
        Sampler {
            rng: Rng::new(seed),
            params,
            counts: HashMap::new(),
        }
    }

    /// Samples from `logits` (modified in place), recording the token for later penalties.
    pub fn sample(&mut self, logits: &mut [f32], top_logprobs: Option<usize>) -> Sampled {
        for &(tok, bias) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(tok as usize) {
                *l += bias;
            }
        }
        if self.params.presence_penalty != 0.0 || self.params.frequency_penalty != 0.0 {
            for (&tok, &n) in &self.counts {
                if let Some(l) = logits.get_mut(tok as usize) {
                    *l -= self.params.presence_penalty + self.params.frequency_penalty * n as f32;
                }
            }
        }
        let logprobs = top_logprobs.map(|k| log_softmax_top(logits, k));
        let token = if self.params.temperature == 0.0 {
            argmax(logits)
        } else {
            self.sample_random(logits)
        };
        *self.counts.entry(token).or_default() += 1;
        let logprobs = logprobs.map(|(lse, top)| (logits[token as usize] - lse, top));
        Sampled { token, logprobs }
    }

    fn sample_random(&mut self, logits: &[f32]) -> u32 {
        let inv_t = 1.0 / self.params.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp()))
            .collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        let mut mass = total;
        if self.params.top_p < 1.0 {
            // Stable order (probability, then id) so a seed always picks the same token.
            probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let target = self.params.top_p * total;
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p.1;
                if cum >= target {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            mass = cum;
        }
        let mut r = self.rng.next_f64() as f32 * mass;
        for &(tok, p) in &probs {
            if r < p {
                return tok;
            }
            r -= p;
        }
        probs.last().map_or(0, |p| p.0)
    }
}

/// Index of the largest logit; the lowest id wins a tie.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-sum-exp of the logits and the `k` most likely tokens with their log-probabilities.
pub(crate) fn log_softmax_top(logits: &[f32], k: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = max + sum.ln() as f32;
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k > 0 {
        idx.select_nth_unstable_by(k - 1, |&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
    }
    idx.truncate(k);
    idx.sort_unstable_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    (
        lse,
        idx.into_iter()
            .map(|i| (i, logits[i as usize] - lse))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            seed: Some(seed),
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_lowest_id_on_tie() {
        let mut s = Sampler::new(params(0.0, 1.0, 1));
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, 2.0], None).token, 1);
    }

    #[test]
    fn same_seed_same_tokens_and_seeds_differ() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(params(1.0, 0.9, seed));
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), None).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn tiny_top_p_is_greedy_and_bias_bans() {
        let mut s = Sampler::new(params(1.5, 1e-6, 7));
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 5.0, 4.9], None).token, 1);
        }
        let mut p = params(0.0, 1.0, 7);
        p.logit_bias = vec![(1, -100.0)];
        assert_eq!(Sampler::new(p).sample(&mut [0.0, 5.0, 4.9], None).token, 2);
    }

    #[test]
    fn frequency_penalty_discourages_repeats() {
        let mut p = params(0.0, 1.0, 7);
        p.frequency_penalty = 2.0;
        let mut s = Sampler::new(p);
        assert_eq!(s.sample(&mut [0.0, 1.0, 0.5], None).token, 1);
        assert_eq!(s.sample(&mut [0.0, 1.0, 0.5], None).token, 2);
    }

    #[test]
    fn logprobs_are_normalised() {
        let mut s = Sampler::new(params(0.0, 1.0, 7));
        let out = s.sample(&mut [0.0, (2.0f32).ln(), 0.0], Some(2));
        let (lp, top) = out.logprobs.unwrap();
        assert!((lp - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0, 1);
        assert_eq!(top[1].0, 0);
    }

    #[test]
    fn validation_names_the_param() {
        let bad = SamplingParams {
            temperature: 3.0,
            ..SamplingParams::default()
        };
        match bad.validate(10) {
            Err(CoreError::InvalidSampling { field, .. }) => {
                assert_eq!(field, SamplingField::Temperature)
            }
            other => panic!("{other:?}"),
        }
    }
}
