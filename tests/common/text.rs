//! Token-kernel cases shared by the wgpu test (lavapipe in CI) and the CUDA host emulation:
//! fresh random token sequences of ragged lengths (some empty of labels, some carrying them),
//! the CPU reference (MlmSpec::apply on the same counter-RNG streams, the batcher's padding,
//! EmbeddingTable::lookup), the batch the GPU path encodes, and the comparison: bit-exact,
//! ids, labels and embeddings alike (the kernels are integer arithmetic and copies).

use super::test_seed;
use sluice::backend::wgpu::{encode_text, EncodedBatch, TextLayout, TextStage, TokenInput};
use sluice::rng::SampleRng;
use sluice::text::{EmbeddingTable, MlmSpec, Tokens, IGNORE_LABEL};

const PAD_ID: u32 = 7;
const PAD_VALUE: f32 = -3.25;
const OP: u32 = 4;

pub struct Case {
    pub name: String,
    pub tokens: Vec<Tokens>,
    pub mlm: Option<MlmSpec>,
    pub table: Option<EmbeddingTable>,
    pub width: usize,
}

impl Case {
    fn stream(&self, s: usize) -> SampleRng {
        SampleRng::new(test_seed(), 3, s as u64, OP)
    }

    fn stages(&self) -> Vec<TextStage> {
        let mut stages = Vec::new();
        if let Some(spec) = &self.mlm {
            stages.push(TextStage::Mlm {
                spec: spec.clone(),
                streams: (0..self.tokens.len())
                    .map(|s| self.stream(s).stream())
                    .collect(),
            });
        }
        if let Some(t) = &self.table {
            stages.push(TextStage::Gather(t.clone()));
        }
        stages
    }

    /// The batch the GPU runs, and where its tensors lie.
    pub fn encode(&self) -> (EncodedBatch, TextLayout) {
        let inputs: Vec<TokenInput> = self
            .tokens
            .iter()
            .map(|t| TokenInput {
                ids: &t.ids,
                labels: &t.labels,
            })
            .collect();
        encode_text(&inputs, &self.stages(), self.width, (PAD_ID, PAD_VALUE)).unwrap()
    }

    /// The CPU's batch: the main tensor's bytes (embeddings, else ids) and the labels' bytes.
    fn reference(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut tokens = self.tokens.clone();
        if let Some(spec) = &self.mlm {
            for (s, t) in tokens.iter_mut().enumerate() {
                spec.apply(t, &self.stream(s));
            }
        }
        let labelled = tokens.iter().any(|t| !t.labels.is_empty());
        let mut ids = Vec::new();
        let mut labels = Vec::new();
        let mut embeddings = Vec::new();
        for t in &tokens {
            let pad = self.width - t.ids.len();
            ids.extend(
                t.ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(PAD_ID, pad)),
            );
            let own = t.labels.iter().copied();
            let fill = std::iter::repeat(IGNORE_LABEL);
            labels.extend(own.chain(fill).take(self.width));
            if let Some(table) = &self.table {
                let mut out = sluice::text::Embedded::default();
                table.lookup(t, &mut out).unwrap();
                embeddings.extend(out.data);
                embeddings.extend(std::iter::repeat_n(PAD_VALUE, pad * table.dim));
            }
        }
        let bytes = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let main = match &self.table {
            Some(_) => embeddings.iter().flat_map(|x| x.to_le_bytes()).collect(),
            None => bytes(&ids),
        };
        let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        (main, labelled.then(|| bytes(&labels)))
    }

    /// `got`: the run's output (one entry: the whole buffer). Bit-exact, or a panic naming
    /// the case and the first differing word.
    pub fn check(&self, layout: &TextLayout, got: &[Vec<u8>]) {
        assert_eq!(got.len(), 1, "{}: one output buffer", self.name);
        let (main, labels) = layout.split(&got[0]);
        let (want_main, want_labels) = self.reference();
        assert_eq!(labels.is_some(), want_labels.is_some(), "{}", self.name);
        let compare = |what: &str, got: &[u8], want: &[u8]| {
            assert_eq!(got.len(), want.len(), "{}: {what} sizes", self.name);
            if let Some(i) =
                (0..got.len() / 4).find(|&i| got[4 * i..4 * i + 4] != want[4 * i..4 * i + 4])
            {
                panic!(
                    "{}: {what} word {i} is {:02x?}, the CPU's {:02x?}",
                    self.name,
                    &got[4 * i..4 * i + 4],
                    &want[4 * i..4 * i + 4]
                );
            }
        };
        compare("main tensor", main, &want_main);
        if let (Some(g), Some(w)) = (labels, want_labels) {
            compare("labels", g, &w);
        }
    }

    /// How many tokens the MLM changed (so a test can tell the kernel did something).
    pub fn masked(&self) -> usize {
        let Some(spec) = &self.mlm else { return 0 };
        self.tokens
            .iter()
            .enumerate()
            .map(|(s, t)| {
                let mut t = t.clone();
                spec.apply(&mut t, &self.stream(s));
                t.labels.iter().filter(|&&l| l != IGNORE_LABEL).count()
            })
            .sum()
    }
}

/// `n` random sequences of 1..=max ids below `vocab`; every third carries random labels.
fn sequences(r: &mut SampleRng, n: usize, max: usize, vocab: u32, labelled: bool) -> Vec<Tokens> {
    (0..n)
        .map(|s| {
            let len = 1 + (r.next_u32() as usize % max);
            let ids: Vec<u32> = (0..len).map(|_| r.next_u32() % vocab).collect();
            let labels = match labelled && s % 3 == 0 {
                true => ids
                    .iter()
                    .map(|&i| if i % 2 == 0 { i as i32 } else { IGNORE_LABEL })
                    .collect(),
                false => Vec::new(),
            };
            Tokens {
                ids,
                labels,
                ..Tokens::default()
            }
        })
        .collect()
}

/// The cases: padding alone (with and without labels), MLM (BERT's rates with special ids,
/// and the edge where every token is selected and replaced), MLM then lookup, lookup alone.
pub fn cases() -> Vec<Case> {
    let mut r = SampleRng::new(test_seed(), 0, 0, 91);
    let vocab = 300;
    let special = vec![0, 1, 2, 3, 150, 299];
    let bert = MlmSpec::bert(3, vocab, special.clone());
    let mut all = bert.clone();
    (all.probability, all.mask_fraction, all.random_fraction) = (1.0, 0.0, 1.0);
    let table = EmbeddingTable::random(vocab as usize, 24, test_seed());
    // More than 64 × 65535 output words per sample: the gather's grid-stride loop must run.
    let wide = EmbeddingTable::random(4, 600_000, test_seed() ^ 1);
    let mut case =
        |name: &str, n, max, labelled, mlm: Option<MlmSpec>, table: Option<EmbeddingTable>| {
            let rows = table
                .as_ref()
                .map_or(vocab, |t: &EmbeddingTable| t.rows as u32);
            let tokens = sequences(&mut r, n, max, rows, labelled);
            let longest = tokens.iter().map(|t| t.ids.len()).max().unwrap();
            Case {
                name: name.into(),
                tokens,
                mlm,
                table,
                width: longest.next_multiple_of(8),
            }
        };
    vec![
        case("pad ids", 9, 90, false, None, None),
        case("pad ids and some labels", 9, 90, true, None, None),
        case("bert mlm", 12, 400, false, Some(bert.clone()), None),
        case(
            "mlm: every token replaced by a random id",
            5,
            200,
            false,
            Some(all),
            None,
        ),
        case(
            "mlm then lookup",
            6,
            120,
            false,
            Some(bert),
            Some(table.clone()),
        ),
        case("lookup with labels", 7, 60, true, None, Some(table)),
        case(
            "lookup wider than one dispatch",
            2,
            5,
            false,
            None,
            Some(wide),
        ),
    ]
}
