//! The tokenizer: Hugging Face's `tokenizers` (pure Rust build), loaded from a `tokenizer.json`,
//! from GPT-2 style `encoder.json` + `vocab.bpe`, or the GPT-2 vocabulary compiled into sluice.

use std::path::Path;
use std::sync::Arc;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// GPT-2's vocabulary (OpenAI's `encoder.json`) and merges (`vocab.bpe`): see assets/gpt2.
const GPT2_VOCAB: &str = include_str!("../../assets/gpt2/vocab.json");
const GPT2_MERGES: &str = include_str!("../../assets/gpt2/merges.txt");
/// GPT-2's one special token: document separator, BOS and EOS at once.
pub const GPT2_END_OF_TEXT: &str = "<|endoftext|>";
/// The tokenizers compiled into sluice, by the names `--tokenizer` and `Tokenize` take.
pub const BUILTIN_TOKENIZERS: [&str; 2] = ["gpt2", "gpt2-mlm"];
/// BERT's special tokens, added after GPT-2's vocabulary by [`TextTokenizer::gpt2_mlm`].
pub const MLM_SPECIALS: [&str; 4] = ["[CLS]", "[SEP]", "[PAD]", "[MASK]"];

/// What to do with bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Utf8Policy {
    /// The sample fails, naming where the first invalid byte is.
    #[default]
    Error,
    /// Each invalid sequence becomes U+FFFD (as Python's `errors="replace"`).
    Replace,
}

/// A loaded tokenizer, cheap to clone (the vocabulary is shared).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Arc<Tokenizer>,
    /// Where it came from, for reports ("GPT-2 (built in)" or a path).
    origin: String,
    /// The file or folder it was opened from ([`TextTokenizer::open`]); None when built in.
    path: Option<std::path::PathBuf>,
    /// The built-in tokenizer's name ([`BUILTIN_TOKENIZERS`]); None when opened from files.
    builtin: Option<&'static str>,
    /// The direct route for GPT-2 style tokenizers sluice built itself (same ids).
    fast: Option<Arc<super::byte_level::ByteLevelBpe>>,
    /// The special tokens a sequence starts and ends with (`AddSpecialTokens`'s defaults).
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// The padding token (`[PAD]`, `<pad>`), if the vocabulary has one.
    pub pad: Option<u32>,
    /// The mask token `MlmMask` writes (`[MASK]`, `<mask>`), if the vocabulary has one.
    pub mask: Option<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TextTokenizer({}, {} ids)",
            self.origin,
            self.vocab_size()
        )
    }
}

impl PartialEq for TextTokenizer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.origin == other.origin
    }
}

impl TextTokenizer {
    /// GPT-2's byte-level BPE, compiled in (no download): ids equal Hugging Face's `gpt2`
    /// tokenizer's; BOS = EOS = `<|endoftext|>` (50256).
    /// Built once per process (parsing the vocabulary takes tens of ms); clones share it.
    pub fn gpt2() -> Self {
        static GPT2: std::sync::OnceLock<TextTokenizer> = std::sync::OnceLock::new();
        GPT2.get_or_init(|| {
            let mut t = Self::from_gpt2_text(GPT2_VOCAB, GPT2_MERGES, "GPT-2 (built in)", &[])
                .expect("the built-in GPT-2 vocabulary loads");
            t.builtin = Some("gpt2");
            t
        })
        .clone()
    }

    /// A built-in tokenizer by name: `gpt2` ([`TextTokenizer::gpt2`]) or `gpt2-mlm`
    /// ([`TextTokenizer::gpt2_mlm`]).
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "gpt2" => Some(Self::gpt2()),
            "gpt2-mlm" => Some(Self::gpt2_mlm()),
            _ => None,
        }
    }

    /// A built-in tokenizer's name, or else a path for [`TextTokenizer::open`] (a file or
    /// folder of that name wins over the built-in).
    pub fn open_or_builtin(name_or_path: &str) -> Result<Self, String> {
        let path = Path::new(name_or_path);
        match Self::builtin(name_or_path) {
            Some(t) if !path.exists() => Ok(t),
            _ => Self::open(path),
        }
    }

    /// The built-in tokenizer's name (None when opened from files).
    pub fn builtin_name(&self) -> Option<&'static str> {
        self.builtin
    }

    /// GPT-2's byte-level BPE with BERT's special tokens added as ids 50257–50260
    /// ([`MLM_SPECIALS`]): BOS = `[CLS]`, EOS = `[SEP]`, pad `[PAD]`, mask `[MASK]` — a
    /// masked-language-model tokenizer with no download (RoBERTa's recipe, BERT's names).
    /// Ids equal those of Hugging Face's gpt2 tokenizer with these tokens added as special.
    /// Built once per process, as [`TextTokenizer::gpt2`].
    pub fn gpt2_mlm() -> Self {
        static GPT2_MLM: std::sync::OnceLock<TextTokenizer> = std::sync::OnceLock::new();
        GPT2_MLM
            .get_or_init(|| {
                let mut t = Self::from_gpt2_text(
                    GPT2_VOCAB,
                    GPT2_MERGES,
                    "GPT-2 + [CLS] [SEP] [PAD] [MASK] (built in)",
                    &MLM_SPECIALS,
                )
                .expect("the built-in GPT-2 vocabulary loads");
                t.bos = t.token_to_id("[CLS]");
                t.eos = t.token_to_id("[SEP]");
                t.builtin = Some("gpt2-mlm");
                t
            })
            .clone()
    }

    /// A GPT-2 style vocabulary: `encoder.json` (token → id) and `vocab.bpe` (merges, one pair
    /// per line, after an optional `#version` line).
    pub fn from_gpt2_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Self, String> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        Self::from_gpt2_text(
            &read(encoder_json)?,
            &read(vocab_bpe)?,
            &format!("{} + {}", encoder_json.display(), vocab_bpe.display()),
            &[],
        )
    }

    /// Any Hugging Face `tokenizer.json`. BOS/EOS are its `<|endoftext|>`, `<s>`/`</s>`,
    /// `[CLS]`/`[SEP]` or `<bos>`/`<eos>` tokens, whichever it has (overridable).
    ///
    /// A GPT-2 style file (BPE under ByteLevel without prefix space, no normalizer, only special
    /// added tokens — Hugging Face's `gpt2`, `distilgpt2`, RoBERTa-style vocabularies) takes
    /// the direct route, with the library's ids.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))?;
        let direct = std::fs::read_to_string(path)
            .ok()
            .and_then(|json| direct_route(&inner, &json));
        let mut wrapped = Self::wrap(inner, path.display().to_string());
        wrapped.fast = direct.map(Arc::new);
        Ok(wrapped)
    }

    /// `from_file` for a `tokenizer.json`, `from_gpt2_files` for a folder holding `encoder.json`
    /// + `vocab.bpe` (or `vocab.json` + `merges.txt`).
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut opened = Self::open_any(path)?;
        opened.path = Some(path.to_path_buf());
        Ok(opened)
    }

    fn open_any(path: &Path) -> Result<Self, String> {
        if !path.is_dir() {
            return Self::from_file(path);
        }
        for (vocab, merges) in [("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")] {
            let (v, m) = (path.join(vocab), path.join(merges));
            if v.is_file() && m.is_file() {
                return Self::from_gpt2_files(&v, &m);
            }
        }
        if path.join("tokenizer.json").is_file() {
            return Self::from_file(&path.join("tokenizer.json"));
        }
        Err(format!(
            "{} holds no tokenizer.json, encoder.json + vocab.bpe or vocab.json + merges.txt",
            path.display()
        ))
    }

    /// A GPT-2 style tokenizer from its files' text, with `extra` special tokens added after
    /// the vocabulary.
    fn from_gpt2_text(
        vocab: &str,
        merges: &str,
        origin: &str,
        extra: &[&str],
    ) -> Result<Self, String> {
        let vocab: std::collections::HashMap<String, u32> = serde_json::from_str(vocab)
            .map_err(|e| format!("{origin}: the vocabulary is not a JSON map of ids: {e}"))?;
        let vocab: Vocab = vocab.into_iter().collect();
        let mut pairs = Vec::new();
        for (n, line) in merges.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            match line.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => pairs.push((a.to_string(), b.to_string())),
                _ => {
                    return Err(format!(
                        "{origin}: merges line {} is not a pair: {line:?}",
                        n + 1
                    ))
                }
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, pairs)
            .build()
            .map_err(|e| format!("{origin}: {e}"))?;
        let mut inner = Tokenizer::new(bpe.clone());
        // Hugging Face's gpt2 tokenizer.json: no prefix space, offsets trimmed, GPT-2's regex.
        inner
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevel::default()));
        let mut added: Vec<&str> = extra.to_vec();
        if inner.token_to_id(GPT2_END_OF_TEXT).is_some() {
            added.insert(0, GPT2_END_OF_TEXT);
        }
        let tokens: Vec<AddedToken> = added.iter().map(|t| AddedToken::from(*t, true)).collect();
        inner
            .add_special_tokens(tokens)
            .map_err(|e| format!("{origin}: {e}"))?;
        let specials = added
            .iter()
            .filter_map(|t| inner.token_to_id(t).map(|id| (t.to_string(), id)))
            .collect();
        let mut wrapped = Self::wrap(inner, origin.to_string());
        wrapped.fast = Some(Arc::new(super::byte_level::ByteLevelBpe::new(
            bpe, specials,
        )));
        Ok(wrapped)
    }

    fn wrap(inner: Tokenizer, origin: String) -> Self {
        let first = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = first(&[
            GPT2_END_OF_TEXT,
            "<s>",
            "[CLS]",
            "<bos>",
            "<|begin_of_text|>",
        ]);
        let eos = first(&[
            GPT2_END_OF_TEXT,
            "</s>",
            "[SEP]",
            "<eos>",
            "<|end_of_text|>",
        ]);
        TextTokenizer {
            pad: first(&["[PAD]", "<pad>", "<|pad|>"]),
            mask: first(&["[MASK]", "<mask>"]),
            inner: Arc::new(inner),
            origin,
            path: None,
            builtin: None,
            fast: None,
            bos,
            eos,
        }
    }

    /// The ids of the vocabulary's special tokens (what `MlmMask` never selects), sorted.
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// What [`TextTokenizer::open`] opened (None: GPT-2 built in, or made otherwise).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Ids in the vocabulary, added tokens included (an embedding table needs this many rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The ids of `text`, without the tokenizer's own post-processing (special tokens are
    /// the pipeline's `AddSpecialTokens`), as Python's `tokenizer.encode(text,
    /// add_special_tokens=False).ids`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        if let Some(fast) = &self.fast {
            return fast.encode(text);
        }
        self.encode_with_library(text)
    }

    /// [`TextTokenizer::encode`] through the library's full `encode_fast` (what the direct
    /// route is tested against).
    pub fn encode_with_library(&self, text: &str) -> Result<Vec<u32>, String> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    /// The ids of `text` and each one's character span `[start, end)` (as Python `tokenizers`
    /// reports `offsets`), through the library's full `encode`: the direct route keeps no spans.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<[u32; 2]>), String> {
        let e = self
            .inner
            .encode_char_offsets(text, false)
            .map_err(|e| e.to_string())?;
        let spans = e
            .get_offsets()
            .iter()
            .map(|&(a, b)| [a as u32, b as u32])
            .collect();
        Ok((e.get_ids().to_vec(), spans))
    }

    /// Text from ids (for tests and inspection).
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.inner.decode(ids, false).map_err(|e| e.to_string())
    }

    /// `bytes` as text under `policy`; the error says where the first invalid byte is.
    pub fn text<'a>(
        bytes: &'a [u8],
        policy: Utf8Policy,
    ) -> Result<std::borrow::Cow<'a, str>, String> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.into()),
            Err(_) if policy == Utf8Policy::Replace => Ok(String::from_utf8_lossy(bytes)),
            Err(e) => Err(format!(
                "invalid UTF-8 at byte {} (decode with invalid_utf8=replace to substitute U+FFFD)",
                e.valid_up_to()
            )),
        }
    }
}

/// The direct route for a loaded `tokenizer.json` (its text `json`), when the file declares
/// exactly what [`super::byte_level::ByteLevelBpe`] computes: no normalizer, a plain ByteLevel
/// pre-tokenizer (GPT-2's regex, no prefix space), a BPE model without dropout, affixes or byte
/// fallback, and added tokens that are all special and matched as written.
fn direct_route(inner: &Tokenizer, json: &str) -> Option<super::byte_level::ByteLevelBpe> {
    use serde_json::Value;
    let file: Value = serde_json::from_str(json).ok()?;
    let is = |v: &Value, want: Value| *v == want;
    let empty = |v: &Value| v.is_null() || v.as_str() == Some("");
    let pre = &file["pre_tokenizer"];
    let model = &file["model"];
    let plain = file["normalizer"].is_null()
        && is(&pre["type"], "ByteLevel".into())
        && is(&pre["add_prefix_space"], false.into())
        && !is(&pre["use_regex"], false.into())
        && is(&model["type"], "BPE".into())
        && model["dropout"].is_null()
        && empty(&model["continuing_subword_prefix"])
        && empty(&model["end_of_word_suffix"])
        && !is(&model["byte_fallback"], true.into())
        && !is(&model["ignore_merges"], true.into());
    let added = file["added_tokens"].as_array().cloned().unwrap_or_default();
    let simple = added.iter().all(|t| {
        is(&t["special"], true.into())
            && [&t["single_word"], &t["lstrip"], &t["rstrip"]]
                .iter()
                .all(|f| !is(f, true.into()))
    });
    let tokenizers::ModelWrapper::BPE(bpe) = inner.get_model() else {
        return None;
    };
    if !(plain && simple) {
        return None;
    }
    let specials = added
        .iter()
        .filter_map(|t| Some((t["content"].as_str()?.to_string(), t["id"].as_u64()? as u32)))
        .collect();
    Some(super::byte_level::ByteLevelBpe::new(bpe.clone(), specials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_gpt2_ids() {
        let t = TextTokenizer::gpt2();
        assert_eq!(t.vocab_size(), 50257);
        assert_eq!((t.bos, t.eos), (Some(50256), Some(50256)));
        // Reference ids from Hugging Face's gpt2 tokenizer (tokenizers 0.23.3).
        assert_eq!(t.encode("Hello world").unwrap(), [15496, 995]);
        assert_eq!(t.encode(" Hello<|endoftext|>").unwrap(), [18435, 50256]);
        let text = "naïve café ☕ 東京";
        assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text);
    }

    #[test]
    fn mlm_variant_adds_bert_tokens() {
        let t = TextTokenizer::gpt2_mlm();
        assert_eq!(t.vocab_size(), 50261);
        assert_eq!(
            (t.bos, t.eos, t.pad, t.mask),
            (Some(50257), Some(50258), Some(50259), Some(50260))
        );
        assert_eq!(t.special_ids(), [50256, 50257, 50258, 50259, 50260]);
        assert_eq!(TextTokenizer::gpt2().special_ids(), [50256]);
        let text = "Hello[MASK] world [SEP]x<|endoftext|>";
        assert_eq!(
            t.encode(text).unwrap(),
            t.encode_with_library(text).unwrap()
        );
        assert_eq!(
            t.encode(text).unwrap(),
            [15496, 50260, 995, 220, 50258, 87, 50256]
        );
    }

    /// Random text from pieces that stress GPT-2's regex and byte map, and random code points.
    fn random_texts(n: usize) -> Vec<String> {
        let mut rng = crate::rng::SampleRng::new(3, 0, 0, 0);
        let pieces = [
            "the",
            " cat",
            "'s",
            "'ll",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\u{a0}",
            "\u{3000}",
            "é",
            "e\u{301}",
            "東京",
            "🙂",
            "<|endoftext|>",
            "<|endoftext",
            "123",
            "4.5",
            "--",
            "?!",
        ];
        (0..n)
            .map(|_| {
                let mut text = String::new();
                for _ in 0..rng.next_u32() % 40 {
                    if rng.next_u32().is_multiple_of(5) {
                        let c = rng.next_u32() % 0x2_FFFF;
                        text.extend(char::from_u32(c));
                    } else {
                        text.push_str(pieces[(rng.next_u32() % pieces.len() as u32) as usize]);
                    }
                }
                text
            })
            .collect()
    }

    fn same_ids_both_routes(t: &TextTokenizer, texts: &[String]) {
        for text in texts {
            assert_eq!(
                t.encode(text).unwrap(),
                t.encode_with_library(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_direct_route_gives_the_library_ids() {
        let t = TextTokenizer::gpt2();
        assert!(t.fast.is_some());
        same_ids_both_routes(&t, &random_texts(500));
    }

    /// A gpt2-style tokenizer.json takes the direct route (same ids); one the route does not
    /// compute (a prefix space) keeps the library's.
    #[test]
    fn gpt2_style_tokenizer_json_files_take_the_direct_route() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        TextTokenizer::gpt2().inner.save(&path, false).unwrap();
        let t = TextTokenizer::from_file(&path).unwrap();
        assert!(t.fast.is_some(), "a gpt2 tokenizer.json is direct");
        same_ids_both_routes(&t, &random_texts(200));
        let json = std::fs::read_to_string(&path).unwrap();
        let spaced = json.replacen("\"add_prefix_space\":false", "\"add_prefix_space\":true", 1);
        assert_ne!(spaced, json);
        std::fs::write(&path, spaced).unwrap();
        let t = TextTokenizer::from_file(&path).unwrap();
        assert!(t.fast.is_none(), "a prefix space is the library's");
        assert_eq!(t.encode("Hello world").unwrap(), [18435, 995]);
    }

    #[test]
    fn utf8_policy() {
        let bad = b"ab\xffcd";
        let err = TextTokenizer::text(bad, Utf8Policy::Error).unwrap_err();
        assert!(err.contains("byte 2"), "{err}");
        assert_eq!(
            TextTokenizer::text(bad, Utf8Policy::Replace).unwrap(),
            "ab\u{FFFD}cd"
        );
    }
}
