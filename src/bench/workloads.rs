//! The pipelines `sluice bench` ships (DESIGN.md, "Workloads"), defined as they are in
//! torchvision recipes.

use crate::audio::{MelNorm, MelScale, Padding, SpectrogramSpec, WindowKind};
use crate::ops::{
    AudioOp, CenterCrop, ColorJitter, DecodeAudio, GaussianBlur, MaskSpec, MelSpec, Normalize,
    RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop, Resize,
};
use crate::ops::{DecodeText, TextOp};
use crate::pipeline::PipelineBuilder;
use crate::text::{EmbeddingTable, MlmSpec, PackSpec, TextTokenizer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// read + decode only: the decode-bound limit.
    DecodeOnly,
    /// ResNet-50 training: RandomResizedCrop 224, flip, normalize.
    Rn50Train,
    /// ResNet-50 validation: resize 256, centre crop 224, normalize.
    Rn50Val,
    /// SimCLR augmentation.
    Simclr,
    /// Speech recognition features for evaluation: 16 kHz log-mel (80 bins), normalized.
    AsrVal,
    /// `AsrVal` with dither and SpecAugment, for training.
    Asr,
    /// cedar's speech pipeline: 8 kHz, complex STFT, phase-vocoder stretch, power, one time
    /// and one frequency mask, 256 mel bins.
    CedarAsr,
    /// cedar's NLP pipeline: GPT-2 BPE → Truncate 254 → BOS/EOS → EmbeddingLookup (vocab ×
    /// 768, f32) → batch padded to the longest, with lengths.
    Nlp,
    /// BERT-style masked-language-model input: BPE (GPT-2 + BERT's special tokens) → Truncate
    /// 510 → [CLS]/[SEP] → MlmMask (0.15; 80/10/10) → ids padded to a multiple of 8 with
    /// length bucketing, with labels and the attention mask.
    BertMlm,
    /// GPT pretraining input: GPT-2 BPE → Pack into 2048-token blocks with `<|endoftext|>`
    /// after each document → `input_ids`, causal-LM `labels`, `cu_seqlens`.
    GptPack,
}

pub const WORKLOADS: [(&str, Workload); 10] = [
    ("decode-only", Workload::DecodeOnly),
    ("rn50-train", Workload::Rn50Train),
    ("rn50-val", Workload::Rn50Val),
    ("simclr", Workload::Simclr),
    ("asr-val", Workload::AsrVal),
    ("asr", Workload::Asr),
    ("cedar-asr", Workload::CedarAsr),
    ("nlp", Workload::Nlp),
    ("bert-mlm", Workload::BertMlm),
    ("gpt-pack", Workload::GptPack),
];

/// `gpt-pack`'s block length (GPT-2/3 context).
pub const GPT_PACK_SEQ_LEN: usize = 2048;

/// `nlp`'s embedding width (GPT-2 small's).
pub const NLP_EMBEDDING_DIM: usize = 768;
/// `nlp`'s truncation, before BOS and EOS make it 256 (cedar's).
pub const NLP_MAX_TOKENS: usize = 254;

/// `bert-mlm`'s truncation, before [CLS] and [SEP] make it 512 (BERT's).
pub const BERT_MAX_TOKENS: usize = 510;
/// `bert-mlm`'s padding multiple (tensor-core friendly) and bucketing window (batches sorted
/// together by length).
pub const BERT_PAD_MULTIPLE: usize = 8;
pub const BERT_BUCKET_WINDOWS: usize = 16;

/// What the text workloads tokenize with and look up in: the given tokenizer, else the
/// workload's built-in one (GPT-2; for `bert-mlm` GPT-2 with BERT's special tokens), and the
/// given table, else a deterministic random one sized to the tokenizer's vocabulary.
#[derive(Debug, Clone, Default)]
pub struct TextAssets {
    pub tokenizer: Option<TextTokenizer>,
    pub embeddings: Option<EmbeddingTable>,
}

impl TextAssets {
    /// The tokenizer `workload` runs with.
    pub fn tokenizer(&self, workload: Workload) -> TextTokenizer {
        match (&self.tokenizer, workload) {
            (Some(t), _) => t.clone(),
            (None, Workload::BertMlm) => TextTokenizer::gpt2_mlm(),
            (None, _) => TextTokenizer::gpt2(),
        }
    }

    /// The embedding table for `tokenizer`: the file's, or the random one sized to its
    /// vocabulary (seed 0).
    pub fn table(&self, tokenizer: &TextTokenizer) -> EmbeddingTable {
        match &self.embeddings {
            Some(t) => t.clone(),
            None => EmbeddingTable::shared_random(tokenizer.vocab_size(), NLP_EMBEDDING_DIM, 0),
        }
    }

    /// Whether `workload` can run with these assets (a masked-LM workload needs a tokenizer
    /// with a mask token).
    pub fn check(&self, workload: Workload) -> Result<(), String> {
        if workload != Workload::BertMlm {
            return Ok(()); // (and no built-in tokenizer parsed for workloads that never use it)
        }
        let t = self.tokenizer(workload);
        if t.mask.is_none() {
            return Err(format!(
                "bert-mlm masks tokens, but the tokenizer {} has no [MASK] or <mask> token",
                t.origin()
            ));
        }
        Ok(())
    }
}

/// How a workload's batches are padded and grouped (settings, not operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDefaults {
    pub pad_multiple: usize,
    pub bucket_windows: usize,
    /// The id written into padding (the tokenizer's pad token where it has one).
    pub pad_id: u32,
}

/// cedar-asr's STFT (torchaudio's `Spectrogram(n_fft=400, hop_length=100, power=None)`): window
/// 400 (periodic Hann), hop 100, centred with reflection, complex output for the phase vocoder.
pub const CEDAR_STFT: SpectrogramSpec = SpectrogramSpec {
    n_fft: 400,
    win_length: 400,
    hop: 100,
    window: WindowKind::HannPeriodic,
    center: true,
    padding: Padding::Reflect,
    power: None,
};

/// One SpecAugment mask of width < 80 (torchaudio's `TimeMasking(80)` / `FrequencyMasking(80)`).
const CEDAR_MASK: MaskSpec = MaskSpec {
    count: 1,
    max_width: 80.0,
    max_fraction: 1.0,
    fill: 0.0,
};

/// The ASR workloads' STFT: n_fft 512, window 400, hop 160, periodic Hann, centred with
/// reflection, power.
pub const ASR_SPECTROGRAM: SpectrogramSpec = SpectrogramSpec {
    n_fft: 512,
    win_length: 400,
    hop: 160,
    window: WindowKind::HannPeriodic,
    center: true,
    padding: Padding::Reflect,
    power: Some(2.0),
};

/// The ASR front end shared by `asr` and `asr-val`: pre-emphasis 0.97, STFT (n_fft 512, window
/// 400, hop 160, periodic Hann, centred with reflection, power), 80 slaney mel bins over
/// 0–8 kHz with slaney norm, ln(x + 2^-24), per-feature normalization.
fn asr_front_end(builder: PipelineBuilder, dither: bool) -> PipelineBuilder {
    let builder = builder
        .decode_audio(DecodeAudio::default())
        .op(AudioOp::Resample { rate: 16_000 });
    let builder = if dither {
        builder.op(AudioOp::Dither { scale: 1e-5 })
    } else {
        builder
    };
    builder
        .op(AudioOp::PreEmphasis { coefficient: 0.97 })
        .op(AudioOp::Spectrogram(ASR_SPECTROGRAM))
        .op(AudioOp::MelScale(MelSpec {
            n_mels: 80,
            f_min: 0.0,
            f_max: Some(8000.0),
            scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
        }))
        .op(AudioOp::Log {
            eps: 2f32.powi(-24),
        })
        .op(AudioOp::FeatureNormalize)
}

impl Workload {
    pub fn from_name(name: &str) -> Option<Workload> {
        WORKLOADS.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
    }

    pub fn name(self) -> &'static str {
        WORKLOADS.iter().find(|(_, w)| *w == self).unwrap().0
    }

    /// Whether the per-epoch order is shuffled (training workloads).
    pub fn shuffles(self) -> bool {
        matches!(
            self,
            Workload::Rn50Train
                | Workload::Simclr
                | Workload::Asr
                | Workload::CedarAsr
                | Workload::Nlp
                | Workload::BertMlm
                | Workload::GptPack
        )
    }

    /// Whether the workload reads audio (its default data is the generated speech dataset).
    pub fn is_audio(self) -> bool {
        matches!(self, Workload::AsrVal | Workload::Asr | Workload::CedarAsr)
    }

    /// Whether the workload reads text (its default data is the generated corpus).
    pub fn is_text(self) -> bool {
        matches!(self, Workload::Nlp | Workload::BertMlm | Workload::GptPack)
    }

    /// The workload's padding and bucketing, with `text`'s tokenizer.
    pub fn batch_defaults(self, text: &TextAssets) -> BatchDefaults {
        match self {
            Workload::BertMlm => BatchDefaults {
                pad_multiple: BERT_PAD_MULTIPLE,
                bucket_windows: BERT_BUCKET_WINDOWS,
                pad_id: text.tokenizer(self).pad.unwrap_or(0),
            },
            // The epoch's last block pads with GPT-2's conventional pad, <|endoftext|>.
            Workload::GptPack => BatchDefaults {
                pad_multiple: 1,
                bucket_windows: 0,
                pad_id: text.tokenizer(self).eos.unwrap_or(0),
            },
            _ => BatchDefaults {
                pad_multiple: 1,
                bucket_windows: 0,
                pad_id: 0,
            },
        }
    }

    /// Append this workload's operators to a builder (text workloads: GPT-2 and a random
    /// embedding table).
    pub fn add_ops(self, builder: PipelineBuilder) -> PipelineBuilder {
        self.add_ops_with(builder, &TextAssets::default())
    }

    /// Append this workload's operators, text workloads with `text`'s tokenizer and table.
    pub fn add_ops_with(self, builder: PipelineBuilder, text: &TextAssets) -> PipelineBuilder {
        match self {
            Workload::Nlp | Workload::BertMlm => {
                let t = text.tokenizer(self);
                let max_len = match self {
                    Workload::Nlp => NLP_MAX_TOKENS,
                    _ => BERT_MAX_TOKENS,
                };
                let builder = builder
                    .decode_text(DecodeText::new(t.clone()))
                    .op(TextOp::Truncate {
                        max_len,
                        keep_end: None,
                    })
                    .op(TextOp::AddSpecialTokens {
                        bos: t.bos,
                        eos: t.eos,
                    });
                match self {
                    Workload::Nlp => builder.op(TextOp::EmbeddingLookup(text.table(&t))),
                    // Without a mask token (TextAssets::check says so first) the spec's
                    // validation names the problem.
                    _ => builder.op(TextOp::MlmMask(MlmSpec::bert(
                        t.mask.unwrap_or(u32::MAX),
                        t.vocab_size() as u32,
                        t.special_ids(),
                    ))),
                }
            }
            Workload::GptPack => {
                let t = text.tokenizer(self);
                builder
                    .decode_text(DecodeText::new(t.clone()))
                    .op(TextOp::Pack(PackSpec {
                        seq_len: GPT_PACK_SEQ_LEN,
                        separator: t.eos,
                    }))
            }
            Workload::DecodeOnly => builder,
            Workload::Rn50Train => builder
                .op(RandomResizedCrop::new(224))
                .op(RandomHorizontalFlip::new(0.5))
                .op(Normalize::imagenet()),
            Workload::Rn50Val => builder
                .op(Resize::new(256))
                .op(CenterCrop::new(224))
                .op(Normalize::imagenet()),
            Workload::Simclr => builder
                .op(RandomResizedCrop::new(224))
                .op(RandomHorizontalFlip::new(0.5))
                .op(ColorJitter::new(0.4, 0.4, 0.4, 0.1).with_probability(0.8))
                .op(RandomGrayscale::new(0.2))
                .op(GaussianBlur::new(23, (0.1, 2.0)).with_probability(0.5))
                .op(Normalize::imagenet()),
            Workload::AsrVal => asr_front_end(builder, false),
            // SpecAugment after normalization: 2 frequency masks up to 27 bins, 10 time masks
            // up to 5% of the frames each, filled with 0.
            Workload::Asr => asr_front_end(builder, true)
                .op(AudioOp::FrequencyMasking(MaskSpec {
                    count: 2,
                    max_width: 27.0,
                    max_fraction: 1.0,
                    fill: 0.0,
                }))
                .op(AudioOp::TimeMasking(MaskSpec {
                    count: 10,
                    max_width: f64::INFINITY,
                    max_fraction: 0.05,
                    fill: 0.0,
                })),
            // Resample to 8 kHz → complex STFT → stretch to 1/0.8 of the length → power →
            // time mask → frequency mask → 256 mel bins (htk, no norm: torchaudio's MelScale
            // defaults) over 0–4 kHz.
            Workload::CedarAsr => builder
                .decode_audio(DecodeAudio::default())
                .op(AudioOp::Resample { rate: 8_000 })
                .op(AudioOp::Spectrogram(CEDAR_STFT))
                .op(AudioOp::TimeStretch {
                    min_rate: 0.8,
                    max_rate: 0.8,
                })
                .op(AudioOp::ComplexNorm { power: 2.0 })
                .op(AudioOp::TimeMasking(CEDAR_MASK))
                .op(AudioOp::FrequencyMasking(CEDAR_MASK))
                .op(AudioOp::MelScale(MelSpec {
                    n_mels: 256,
                    f_min: 0.0,
                    f_max: None,
                    scale: MelScale::Htk,
                    norm: MelNorm::None,
                })),
        }
    }
}
