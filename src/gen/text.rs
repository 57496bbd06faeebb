//! A deterministic English-like corpus for the text workloads: one document per line, words
//! drawn from a Zipfian vocabulary (s = 1.1) of syllable-built words, sentences of 4–28 words
//! with punctuation, numbers and some non-ASCII (accented words, CJK, emoji), documents of 1–12
//! sentences and one in twenty of 20–80 (longer than the workloads' truncation). Each document
//! is a pure function of (seed, index).

use crate::error::{Error, Result};
use crate::rng::{SampleRng, Uniform};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct TextCorpusSpec {
    pub documents: usize,
    pub seed: u64,
}

impl Default for TextCorpusSpec {
    fn default() -> Self {
        TextCorpusSpec {
            documents: 4096,
            seed: 0,
        }
    }
}

const VOCABULARY: usize = 6000;
const SYLLABLES: [&str; 24] = [
    "ka", "to", "ri", "an", "el", "mon", "st", "er", "in", "ou", "pra", "lu", "the", "ve", "sa",
    "ni", "or", "qu", "ba", "de", "wi", "ly", "ch", "ing",
];
/// Words with accents, other scripts and emoji, drawn now and then.
const FOREIGN: [&str; 12] = [
    "café",
    "naïve",
    "über",
    "señor",
    "søster",
    "façade",
    "東京",
    "数据",
    "Ελλάδα",
    "Москва",
    "🙂",
    "—",
];

/// The corpus's word list: common short words first (the Zipf head), then syllable words.
fn vocabulary(seed: u64) -> Vec<String> {
    let mut words: Vec<String> = [
        "the", "of", "and", "to", "a", "in", "is", "it", "that", "was", "for", "on", "with", "as",
        "by", "at", "from", "this", "be", "are",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    let mut rng = SampleRng::new(seed, 0, u64::MAX, 7);
    while words.len() < VOCABULARY {
        let n = 1 + rng.below(4) as usize;
        let word: String = (0..n).map(|_| SYLLABLES[rng.below(24) as usize]).collect();
        words.push(word);
    }
    words
}

/// Cumulative Zipf weights over ranks 1..=n.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|r| {
            acc += (r as f64).powf(-s);
            acc
        })
        .collect();
    cdf.iter_mut().for_each(|c| *c /= acc);
    cdf
}

/// Document `index` of the corpus.
fn document(words: &[String], cdf: &[f64], seed: u64, index: u64) -> String {
    let mut rng = SampleRng::new(seed, 0, index, 1);
    let sentences = if rng.bernoulli(0.05) {
        20 + rng.below(61)
    } else {
        1 + rng.below(12)
    };
    let mut doc = String::new();
    for s in 0..sentences {
        if s > 0 {
            doc.push(' ');
        }
        let n = 4 + rng.below(25);
        for w in 0..n {
            if w > 0 {
                doc.push_str(if rng.bernoulli(0.06) { ", " } else { " " });
            }
            let word = if rng.bernoulli(0.01) {
                FOREIGN[rng.below(FOREIGN.len() as u64) as usize].to_string()
            } else if rng.bernoulli(0.02) {
                rng.below(10_000).to_string()
            } else {
                let u = rng.next_f64();
                words[cdf.partition_point(|&c| c < u).min(words.len() - 1)].clone()
            };
            if w == 0 {
                let mut chars = word.chars();
                doc.extend(chars.next().into_iter().flat_map(char::to_uppercase));
                doc.push_str(chars.as_str());
            } else {
                doc.push_str(&word);
            }
        }
        doc.push(match rng.below(10) {
            0 => '?',
            1 => '!',
            _ => '.',
        });
    }
    doc
}

/// Write the corpus to `dir/corpus.txt` (one document per line); returns its path.
pub fn write_text_corpus(dir: &Path, spec: &TextCorpusSpec) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let words = vocabulary(spec.seed);
    let cdf = zipf_cdf(words.len(), 1.1);
    let docs: Vec<String> = (0..spec.documents as u64)
        .into_par_iter()
        .map(|i| document(&words, &cdf, spec.seed, i))
        .collect();
    let path = dir.join("corpus.txt");
    let mut text = docs.join("\n");
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| Error::io(path.display().to_string(), e))?;
    Ok(path)
}

/// The corpus at `dir/corpus.txt`, written unless one for the same spec is already there.
pub fn ensure_text_corpus(dir: &Path, spec: &TextCorpusSpec) -> Result<PathBuf> {
    let marker = dir.join(".complete");
    let want = format!(
        "text corpus: {} documents, seed {}",
        spec.documents, spec.seed
    );
    let path = dir.join("corpus.txt");
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == want) && path.is_file() {
        return Ok(path);
    }
    let path = write_text_corpus(dir, spec)?;
    std::fs::write(&marker, want).map_err(|e| Error::io(marker.display().to_string(), e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_varied_and_partly_non_ascii() {
        let words = vocabulary(1);
        let cdf = zipf_cdf(words.len(), 1.1);
        let docs: Vec<String> = (0..400).map(|i| document(&words, &cdf, 1, i)).collect();
        assert_eq!(docs[7], document(&words, &cdf, 1, 7));
        assert_ne!(docs[7], document(&words, &cdf, 2, 7));
        assert!(docs.iter().all(|d| !d.contains('\n') && !d.is_empty()));
        assert!(docs.iter().any(|d| !d.is_ascii()));
        let lengths: Vec<usize> = docs.iter().map(|d| d.split(' ').count()).collect();
        assert!(lengths.iter().any(|&n| n < 20) && lengths.iter().any(|&n| n > 400));
        // Zipf: "the" (rank 1) is far more frequent than a mid-ranked word.
        let all = docs.join(" ");
        let the = all.matches(" the ").count();
        assert!(the > 50 * all.matches(&format!(" {} ", words[1000])).count().max(1));
    }
}
