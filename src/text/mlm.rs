//! BERT's masked-language-model corruption (`MlmMask`): each non-special token is selected with
//! probability `probability`; a selected token becomes the mask token (`mask_fraction`), a
//! random id (`random_fraction`) or stays itself (the rest); its label is its original id, every
//! other label [`IGNORE_LABEL`]. Hugging Face's `DataCollatorForLanguageModeling` defaults:
//! 0.15, 0.8, 0.1.
//!
//! Every decision about token `p` comes from one Philox block at counter `p` of the sample's
//! stream ([`SampleRng::block`]) and is integer arithmetic on its words, so the result depends
//! only on (seed, epoch, sample, operator, position) and a GPU kernel reproduces it bit for bit:
//! word 0 < `select` selects, word 1 < `mask` masks, else word 1 < `mask + random` replaces with
//! `(word 2 × vocab) >> 32`.

use super::Tokens;
use crate::rng::SampleRng;

/// The label of a token the loss ignores (PyTorch's `cross_entropy` default `ignore_index`).
pub const IGNORE_LABEL: i32 = -100;

#[derive(Debug, Clone, PartialEq)]
pub struct MlmSpec {
    /// Chance that a non-special token is selected for prediction.
    pub probability: f64,
    /// Of the selected: the share replaced by `mask_id`…
    pub mask_fraction: f64,
    /// …and the share replaced by a random id below `vocab_size` (the rest keep their id).
    pub random_fraction: f64,
    pub mask_id: u32,
    pub vocab_size: u32,
    /// Ids never selected (the tokenizer's special tokens), sorted.
    pub special: Vec<u32>,
}

/// A probability as a threshold on a uniform u32 word: `word < threshold` has that chance
/// (2^32 when the probability is 1).
fn threshold(p: f64) -> u64 {
    (p * 4_294_967_296.0).round() as u64
}

impl MlmSpec {
    /// BERT's recipe with the given mask token, vocabulary and special ids.
    pub fn bert(mask_id: u32, vocab_size: u32, mut special: Vec<u32>) -> Self {
        special.sort_unstable();
        special.dedup();
        MlmSpec {
            probability: 0.15,
            mask_fraction: 0.8,
            random_fraction: 0.1,
            mask_id,
            vocab_size,
            special,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| match (0.0..=1.0).contains(&v) {
            true => Ok(()),
            false => Err(format!("{name} must be within [0, 1], not {v}")),
        };
        unit("probability", self.probability)?;
        unit("mask_fraction", self.mask_fraction)?;
        unit("random_fraction", self.random_fraction)?;
        if self.mask_fraction + self.random_fraction > 1.0 + 1e-12 {
            return Err(format!(
                "mask_fraction + random_fraction must be at most 1, not {}",
                self.mask_fraction + self.random_fraction
            ));
        }
        if self.vocab_size == 0 || self.mask_id >= self.vocab_size {
            return Err(format!(
                "the mask id {} is outside the vocabulary of {} ids",
                self.mask_id, self.vocab_size
            ));
        }
        Ok(())
    }

    /// The three thresholds on a block's words: (select, mask, mask + random).
    pub fn thresholds(&self) -> (u64, u64, u64) {
        let (mask, random) = (self.mask_fraction, self.random_fraction);
        (
            threshold(self.probability),
            threshold(mask),
            threshold(mask + random),
        )
    }

    /// Corrupt `tokens` in place and set their labels (any earlier labels are replaced).
    pub fn apply(&self, tokens: &mut Tokens, rng: &SampleRng) {
        let (select, mask, random) = self.thresholds();
        let vocab = u64::from(self.vocab_size);
        tokens.labels.clear();
        tokens.labels.reserve(tokens.ids.len());
        for (p, id) in tokens.ids.iter_mut().enumerate() {
            let w = rng.block(p as u32);
            let chosen = u64::from(w[0]) < select && self.special.binary_search(id).is_err();
            if !chosen {
                tokens.labels.push(IGNORE_LABEL);
                continue;
            }
            tokens.labels.push(*id as i32);
            let action = u64::from(w[1]);
            if action < mask {
                *id = self.mask_id;
            } else if action < random {
                *id = ((u64::from(w[2]) * vocab) >> 32) as u32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: u32) -> Tokens {
        Tokens::new((0..n).map(|i| 10 + i % 90).collect())
    }

    #[test]
    fn labels_hold_the_originals_of_the_selected() {
        let spec = MlmSpec::bert(3, 100, vec![1, 2, 3]);
        let mut t = tokens(2000);
        let original = t.ids.clone();
        spec.apply(&mut t, &SampleRng::new(1, 0, 7, 4));
        assert_eq!(t.labels.len(), t.ids.len());
        for ((&id, &label), &was) in t.ids.iter().zip(&t.labels).zip(&original) {
            if label == IGNORE_LABEL {
                assert_eq!(id, was);
            } else {
                assert_eq!(label, was as i32);
            }
        }
        // Same key, same corruption; another sample, another one.
        let mut again = tokens(2000);
        spec.apply(&mut again, &SampleRng::new(1, 0, 7, 4));
        assert_eq!(again, t);
        let mut other = tokens(2000);
        spec.apply(&mut other, &SampleRng::new(1, 0, 8, 4));
        assert_ne!(other.labels, t.labels);
    }

    /// Over 10^6 tokens (a tenth of them special), the selection, mask, random and keep rates
    /// are BERT's within 5 standard deviations, random ids are spread over the vocabulary, and
    /// no special token is ever selected.
    #[test]
    fn rates_over_a_million_tokens() {
        let vocab = 1000u32;
        let special = vec![0, 1, 2, 3];
        let spec = MlmSpec::bert(3, vocab, special.clone());
        let (mut tokens, mut selected, mut masked, mut random, mut kept) = (0u64, 0, 0, 0, 0);
        let mut random_ids = vec![0u64; vocab as usize];
        for sample in 0..1000u64 {
            let ids: Vec<u32> = (0..1000u32)
                .map(|p| {
                    if p % 10 == 0 {
                        p / 10 % 4
                    } else {
                        4 + (p * 7 + sample as u32) % 996
                    }
                })
                .collect();
            let mut t = Tokens::new(ids.clone());
            spec.apply(&mut t, &SampleRng::new(11, 2, sample, 5));
            for ((&was, &id), &label) in ids.iter().zip(&t.ids).zip(&t.labels) {
                if special.contains(&was) {
                    assert_eq!(
                        (id, label),
                        (was, IGNORE_LABEL),
                        "a special token was selected"
                    );
                    continue;
                }
                tokens += 1;
                if label == IGNORE_LABEL {
                    continue;
                }
                selected += 1;
                if id == 3 {
                    masked += 1;
                } else if id == was {
                    kept += 1;
                } else {
                    random += 1;
                }
                if id != 3 && id != was {
                    random_ids[id as usize] += 1;
                }
            }
        }
        assert_eq!(tokens, 900_000);
        let within = |what: &str, count: u64, n: u64, p: f64| {
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let rate = count as f64 / n as f64;
            assert!(
                (rate - p).abs() < 5.0 * sd,
                "{what}: {rate} vs {p} (sd {sd})"
            );
        };
        within("selected", selected, tokens, 0.15);
        // A random id that equals the original counts as kept: 1/vocab of the random share.
        let random_p = 0.1 * (1.0 - 1.0 / f64::from(vocab));
        within("masked", masked, selected, 0.8);
        within("random", random, selected, random_p);
        within("kept", kept, selected, 1.0 - 0.8 - random_p);
        // Random ids cover the vocabulary: every id drawn, none more than 3x its share (the
        // mask id drawn at random reads as masked, so it is left out).
        let share = random as f64 / f64::from(vocab);
        let spread = |(id, &c): (usize, &u64)| id == 3 || (c > 0 && (c as f64) < 3.0 * share);
        assert!(random_ids.iter().enumerate().all(spread), "{random_ids:?}");
    }

    #[test]
    fn extremes() {
        let mut all = MlmSpec::bert(3, 100, vec![10]);
        all.probability = 1.0;
        all.mask_fraction = 1.0;
        all.random_fraction = 0.0;
        let mut t = tokens(500);
        all.apply(&mut t, &SampleRng::new(0, 0, 0, 1));
        for (&id, &label) in t.ids.iter().zip(&t.labels) {
            match label {
                10 => unreachable!("a special token was selected"),
                IGNORE_LABEL => assert_eq!(id, 10),
                _ => assert_eq!(id, 3),
            }
        }
        all.probability = 0.0;
        let mut t = tokens(500);
        all.apply(&mut t, &SampleRng::new(0, 0, 0, 1));
        assert!(t.labels.iter().all(|&l| l == IGNORE_LABEL));
        assert_eq!(t, {
            let mut u = tokens(500);
            u.labels = vec![IGNORE_LABEL; 500];
            u
        });
    }

    #[test]
    fn settings_are_checked() {
        let mut s = MlmSpec::bert(3, 100, vec![]);
        assert!(s.validate().is_ok());
        s.mask_fraction = 0.95;
        assert!(s.validate().unwrap_err().contains("at most 1"));
        let s = MlmSpec::bert(100, 100, vec![]);
        assert!(s.validate().unwrap_err().contains("outside the vocabulary"));
    }
}
