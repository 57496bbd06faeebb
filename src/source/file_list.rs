//! A list of files with labels and/or transcripts: a CSV/TSV table or a JSON-lines manifest.
//! Relative paths are resolved against the list's directory.
//!
//! - `path,label` lines, with or without a header line: the label is after the last comma, so
//!   paths may contain commas (the original format).
//! - A CSV (`.tsv`: tab-separated) table with a header naming its columns — a transcript column
//!   or more than two columns: the path in `path`, `audio_filepath`, `file` or `filename`;
//!   optionally `label` (an integer) and a transcript in `text`, `transcript` or `sentence`
//!   (Common Voice's TSV). Quoted fields may hold commas, quotes and newlines; other columns
//!   are ignored.
//! - `.jsonl` / `.ndjson` / `.json`: one JSON object per line with the same keys (NeMo's ASR
//!   manifests: `{"audio_filepath": ..., "duration": ..., "text": ...}`).
//!
//! A list without labels gives every sample the label -1. A transcript travels with its sample
//! as metadata ([`crate::source::Source::text`]) and comes out with the batch
//! ([`crate::Batch::texts`]).

use super::{FileBacked, PathList};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FileList {
    csv: PathBuf,
    list: PathList,
}

/// The label of a sample whose list has no label column.
pub const NO_LABEL: i64 = -1;

const PATH_KEYS: [&str; 4] = ["path", "audio_filepath", "file", "filename"];
const TEXT_KEYS: [&str; 3] = ["text", "transcript", "sentence"];

impl FileList {
    pub fn open(file: impl AsRef<Path>) -> Result<Self> {
        let file = file.as_ref().to_path_buf();
        let text =
            std::fs::read_to_string(&file).map_err(|e| Error::io(file.display().to_string(), e))?;
        let base = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut list = Builder {
            file: &file,
            base,
            list: PathList::default(),
        };
        let extension = file
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match extension.as_deref() {
            Some("jsonl" | "ndjson" | "json") => list.json_lines(&text)?,
            Some("tsv") => list.table(&text, b'\t')?,
            _ => list.table(&text, b',')?,
        }
        let list = list.finish()?;
        Ok(FileList { csv: file, list })
    }
}

/// The list being read, with what error messages need.
struct Builder<'a> {
    file: &'a Path,
    base: PathBuf,
    list: PathList,
}

impl Builder<'_> {
    fn error(&self, line: usize, what: impl std::fmt::Display) -> Error {
        Error::Source(format!("{}:{line}: {what}", self.file.display()))
    }

    fn push(&mut self, path: &str, label: i64, text: Option<String>) {
        self.list.paths.push(self.base.join(path.trim()));
        self.list.labels.push(label);
        if let Some(t) = text {
            self.list.texts.push(t);
        }
    }

    fn label(&self, line: usize, value: &str) -> Result<i64> {
        value
            .trim()
            .parse()
            .map_err(|_| self.error(line, format!("label {value:?} is not an integer")))
    }

    fn finish(self) -> Result<PathList> {
        if self.list.paths.is_empty() {
            return Err(Error::Source(format!(
                "{} lists no files",
                self.file.display()
            )));
        }
        Ok(self.list)
    }

    /// `path,label` lines, or a table whose header names its columns.
    fn table(&mut self, text: &str, delimiter: u8) -> Result<()> {
        let Some((first_line, first)) =
            text.lines().enumerate().find(|(_, l)| !l.trim().is_empty())
        else {
            return Ok(());
        };
        let header: Vec<String> = first
            .split(delimiter as char)
            .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let has = |keys: &[&str]| header.iter().any(|c| keys.contains(&c.as_str()));
        // Two columns without a transcript keep the original format (commas in paths).
        let named = has(&PATH_KEYS) && (has(&TEXT_KEYS) || header.len() > 2 || delimiter != b',');
        if named {
            return self.named_columns(text, delimiter);
        }
        if delimiter != b',' {
            return Err(self.error(
                first_line + 1,
                format!(
                    "expected a header naming a path column ({})",
                    PATH_KEYS.join(", ")
                ),
            ));
        }
        self.path_label_lines(text)
    }

    /// The original format: `path,label`, the label after the last comma; a first line whose
    /// label is not an integer is a header.
    fn path_label_lines(&mut self, text: &str) -> Result<()> {
        let mut first = true;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((path, label)) = line.rsplit_once(',') else {
                return Err(self.error(n + 1, format!("expected `path,label`, got {line:?}")));
            };
            let header = std::mem::take(&mut first) && label.trim().parse::<i64>().is_err();
            if !header {
                let label = self.label(n + 1, label)?;
                self.push(path, label, None);
            }
        }
        Ok(())
    }

    /// A CSV/TSV table read with the `csv` crate (quoted fields), columns found by name.
    fn named_columns(&mut self, text: &str, delimiter: u8) -> Result<()> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .trim(csv::Trim::Headers)
            .from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| self.error(1, e))?
            .iter()
            .map(|h| h.trim_matches('"').to_ascii_lowercase())
            .collect();
        let column = |keys: &[&str]| headers.iter().position(|h| keys.contains(&h.as_str()));
        let path_at = column(&PATH_KEYS).expect("checked by the caller");
        let label_at = column(&["label"]);
        let text_at = column(&TEXT_KEYS);
        for record in reader.records() {
            let line = |r: &csv::StringRecord| r.position().map_or(0, |p| p.line() as usize);
            let record = record.map_err(|e| {
                let at = e.position().map_or(0, |p| p.line() as usize);
                self.error(at, e)
            })?;
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let field = |at: usize, what: &str| {
                record
                    .get(at)
                    .ok_or_else(|| self.error(line(&record), format!("no {what} field")))
            };
            let path = field(path_at, "path")?;
            if path.trim().is_empty() {
                return Err(self.error(line(&record), "empty path"));
            }
            let label = match label_at {
                Some(at) => self.label(line(&record), field(at, "label")?)?,
                None => NO_LABEL,
            };
            let text = match text_at {
                Some(at) => Some(field(at, "text")?.to_string()),
                None => None,
            };
            let path = path.to_string();
            self.push(&path, label, text);
        }
        Ok(())
    }

    /// One JSON object per line.
    fn json_lines(&mut self, text: &str) -> Result<()> {
        let mut with_text = None;
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| self.error(line_no, format!("not a JSON object: {e}")))?;
            let object = value
                .as_object()
                .ok_or_else(|| self.error(line_no, "not a JSON object"))?;
            let get = |keys: &[&str]| keys.iter().find_map(|k| object.get(*k));
            let path = get(&PATH_KEYS).and_then(|p| p.as_str()).ok_or_else(|| {
                self.error(
                    line_no,
                    format!(
                        "no path: expected a string in one of {}",
                        PATH_KEYS.join(", ")
                    ),
                )
            })?;
            let label = match object.get("label") {
                None => NO_LABEL,
                Some(l) => l
                    .as_i64()
                    .ok_or_else(|| self.error(line_no, format!("label {l} is not an integer")))?,
            };
            let text = match get(&TEXT_KEYS) {
                None => None,
                Some(t) => Some(
                    t.as_str()
                        .ok_or_else(|| self.error(line_no, format!("text {t} is not a string")))?
                        .to_string(),
                ),
            };
            // Transcripts are all or nothing, so batch i's texts line up with its samples.
            if *with_text.get_or_insert(text.is_some()) != text.is_some() {
                return Err(self.error(
                    line_no,
                    "some lines have a transcript and others not: give every line one",
                ));
            }
            let path = path.to_string();
            self.push(&path, label, text);
        }
        Ok(())
    }
}

impl FileBacked for FileList {
    fn path_list(&self) -> &PathList {
        &self.list
    }
    fn describe(&self) -> String {
        let texts = if self.list.texts.is_empty() {
            ""
        } else {
            ", with transcripts"
        };
        format!(
            "FileList {} ({} files{texts})",
            self.csv.display(),
            self.list.paths.len()
        )
    }
}
