//! A faster route through a GPT-2 style tokenizer, same ids: split the text at its special
//! tokens, split each part with GPT-2's pre-tokenizer regex (the one `tokenizers`' ByteLevel
//! uses, through the same fancy-regex crate), map each piece's bytes to GPT-2's printable
//! characters, and hand the pieces to the crate's own BPE model (with its word cache). It skips
//! the library's per-call string bookkeeping (normalized strings with per-byte alignments,
//! offsets, per-token strings), which measured about two thirds of `encode_fast`'s time on the
//! generated corpus. Used only for tokenizers sluice builds itself from GPT-2 files (BPE +
//! ByteLevel, no prefix space, no normalizer); tested equal to `encode_fast` and to the Python
//! package on fresh text.

use tokenizers::models::bpe::BPE;
use tokenizers::Model;

/// GPT-2's pre-tokenizer pattern (`tokenizers::pre_tokenizers::byte_level`).
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

pub(super) struct ByteLevelBpe {
    bpe: BPE,
    pattern: fancy_regex::Regex,
    /// GPT-2's byte → character map (printable bytes stay, the rest move past U+00FF).
    chars: [char; 256],
    /// Special tokens (matched as written, before any splitting) and their ids.
    specials: Vec<(String, u32)>,
}

impl ByteLevelBpe {
    pub fn new(bpe: BPE, specials: Vec<(String, u32)>) -> Self {
        ByteLevelBpe {
            bpe,
            pattern: fancy_regex::Regex::new(GPT2_PATTERN).expect("GPT-2's pattern compiles"),
            chars: byte_chars(),
            specials,
        }
    }

    /// The ids of `text`, as `Tokenizer::encode_fast(text, false)` gives them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut word = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest special token (the longest where two start at the same place).
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| {
                    rest.find(s.as_str())
                        .map(|at| (at, std::cmp::Reverse(s.len()), *id))
                })
                .min();
            let (before, special, skip) = match next {
                Some((at, std::cmp::Reverse(len), id)) => (&rest[..at], Some(id), at + len),
                None => (rest, None, rest.len()),
            };
            self.encode_part(before, &mut word, &mut ids)?;
            ids.extend(special);
            rest = &rest[skip..];
        }
        Ok(ids)
    }

    fn encode_part(&self, text: &str, word: &mut String, ids: &mut Vec<u32>) -> Result<(), String> {
        let mut end = 0;
        for piece in self.pattern.find_iter(text) {
            let piece = piece.map_err(|e| e.to_string())?;
            // The pattern matches every character; a gap would be an isolated piece too.
            if piece.start() > end {
                self.encode_piece(&text[end..piece.start()], word, ids)?;
            }
            self.encode_piece(piece.as_str(), word, ids)?;
            end = piece.end();
        }
        if end < text.len() {
            self.encode_piece(&text[end..], word, ids)?;
        }
        Ok(())
    }

    fn encode_piece(
        &self,
        piece: &str,
        word: &mut String,
        ids: &mut Vec<u32>,
    ) -> Result<(), String> {
        word.clear();
        word.extend(piece.bytes().map(|b| self.chars[b as usize]));
        let tokens = self.bpe.tokenize(word).map_err(|e| e.to_string())?;
        ids.extend(tokens.into_iter().map(|t| t.id));
        Ok(())
    }
}

/// GPT-2's `bytes_to_unicode`: `!`..`~`, `¡`..`¬` and `®`..`ÿ` map to themselves; the other 68
/// bytes, in order, to U+0100 onwards.
fn byte_chars() -> [char; 256] {
    let keeps = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut chars = ['\0'; 256];
    let mut next = 0x100;
    for b in 0..256u32 {
        chars[b as usize] = if keeps(b) {
            char::from_u32(b).unwrap()
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap()
        };
    }
    chars
}
