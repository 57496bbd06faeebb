//! Text sources: a text file with one sample per line, a JSON-lines file with the text in a
//! named field, and a folder of `.txt` documents. A file is indexed once by line offsets (one
//! streaming pass, 8 bytes a line) and read by positioned reads, so a file of many gigabytes is
//! never loaded whole. Empty lines are left out of the samples and counted; a sample's origin is
//! `PATH:LINE` (1-based), so errors and `--dump`'s `samples.txt` point at the line.

use super::{Source, NO_LABEL};
use crate::error::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The longest sample read by default (a line, a JSON line or a document): 8 MiB.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 8 << 20;

/// A text file, one sample per non-empty line (`field`: a JSON-lines file whose samples are the
/// string in that field of each line's object).
pub struct TextLines {
    path: PathBuf,
    file: File,
    /// Byte offset where each line starts, and where the file ends (one past the last).
    starts: Vec<u64>,
    /// Line number (0-based) of each sample, when some lines were empty; else sample = line.
    lines: Option<Vec<u64>>,
    field: Option<String>,
    max_bytes: usize,
}

impl TextLines {
    /// Index `path` as one sample per line.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::index(path.as_ref(), None)
    }

    /// Index a JSON-lines file whose samples are the strings in `field`.
    pub fn open_jsonl(path: impl AsRef<Path>, field: &str) -> Result<Self> {
        Self::index(path.as_ref(), Some(field.to_string()))
    }

    /// The longest line (sample) read; longer ones fail naming the line (default 8 MiB).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Empty lines (only a line ending, or nothing) left out of the samples.
    pub fn empty_lines(&self) -> u64 {
        (self.starts.len() - 1 - self.len()) as u64
    }

    fn index(path: &Path, field: Option<String>) -> Result<Self> {
        let io = |e| Error::io(path.display().to_string(), e);
        let mut file = File::open(path).map_err(io)?;
        let mut starts = vec![0u64];
        // Lines with nothing before their "\n" or "\r\n", found while scanning.
        let mut empty = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        let (mut at, mut last_byte) = (0u64, 0u8);
        loop {
            let n = file.read(&mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            for pos in memchr::memchr_iter(b'\n', &chunk[..n]) {
                let (start, end) = (*starts.last().unwrap(), at + pos as u64);
                let before = if pos > 0 { chunk[pos - 1] } else { last_byte };
                if end == start || (end == start + 1 && before == b'\r') {
                    empty.push(starts.len() as u64 - 1);
                }
                starts.push(end + 1);
            }
            last_byte = chunk[n - 1];
            at += n as u64;
        }
        // A last line without a newline still counts; a file ending in one has no extra line.
        if *starts.last().unwrap() != at {
            starts.push(at);
        }
        let lines = starts.len() as u64 - 1;
        let lines = (!empty.is_empty()).then(|| {
            let mut skip = empty.iter().peekable();
            (0..lines)
                .filter(|l| {
                    let is_empty = skip.peek() == Some(&l);
                    if is_empty {
                        skip.next();
                    }
                    !is_empty
                })
                .collect()
        });
        Ok(TextLines {
            path: path.to_path_buf(),
            file,
            starts,
            lines,
            field,
            max_bytes: DEFAULT_MAX_TEXT_BYTES,
        })
    }

    fn line_of(&self, index: u64) -> u64 {
        self.lines.as_ref().map_or(index, |l| l[index as usize])
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl Source for TextLines {
    fn len(&self) -> usize {
        self.lines.as_ref().map_or(self.starts.len() - 1, Vec::len)
    }

    fn label(&self, _index: u64) -> i64 {
        NO_LABEL
    }

    fn origin(&self, index: u64) -> String {
        format!("{}:{}", self.path.display(), self.line_of(index) + 1)
    }

    fn length_hint(&self, index: u64) -> Option<u64> {
        let line = self.line_of(index) as usize;
        Some(self.starts[line + 1] - self.starts[line])
    }

    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let line = self.line_of(index) as usize;
        let (start, end) = (self.starts[line], self.starts[line + 1]);
        let len = (end - start) as usize;
        if len > self.max_bytes {
            return Err(invalid(format!(
                "the line is {len} bytes, over the limit of {} (raise max_line_bytes)",
                self.max_bytes
            )));
        }
        buf.clear();
        buf.resize(len, 0);
        self.file.read_exact_at(buf, start)?;
        for ending in [b'\n', b'\r'] {
            if buf.last() == Some(&ending) {
                buf.pop();
            }
        }
        if let Some(field) = &self.field {
            let text = json_field(buf, field)?;
            buf.clear();
            buf.extend_from_slice(text.as_bytes());
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let what = match &self.field {
            Some(f) => format!("JSON lines, field {f:?}"),
            None => "text lines".to_string(),
        };
        let empty = match self.empty_lines() {
            0 => String::new(),
            n => format!(", {n} empty lines left out"),
        };
        format!(
            "{what} {} ({} samples{empty})",
            self.path.display(),
            self.len()
        )
    }
}

/// The string in `field` of the JSON object on one line.
fn json_field(line: &[u8], field: &str) -> std::io::Result<String> {
    let object: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| invalid(format!("the line is not JSON: {e}")))?;
    match object.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid(format!(
            "field {field:?} is not a string but {}",
            match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Array(_) => "an array",
                _ => "an object",
            }
        ))),
        None => Err(invalid(format!("the line's object has no field {field:?}"))),
    }
}

/// A folder of `.txt` documents (searched recursively, sorted by path), one sample each.
pub struct TextFolder {
    root: PathBuf,
    paths: Vec<PathBuf>,
    /// Each document's size when the folder was opened.
    sizes: Vec<u64>,
    max_bytes: usize,
}

impl TextFolder {
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut paths = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries =
                std::fs::read_dir(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
            for entry in entries {
                let path = entry
                    .map_err(|e| Error::io(dir.display().to_string(), e))?
                    .path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
                {
                    paths.push(path);
                }
            }
        }
        if paths.is_empty() {
            return Err(Error::Source(format!(
                "{} holds no .txt documents",
                root.display()
            )));
        }
        paths.sort();
        let sizes = paths
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(root.display().to_string(), e))?;
        Ok(TextFolder {
            root,
            paths,
            sizes,
            max_bytes: DEFAULT_MAX_TEXT_BYTES,
        })
    }

    /// The longest document read; longer ones fail naming the file (default 8 MiB).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

impl Source for TextFolder {
    fn len(&self) -> usize {
        self.paths.len()
    }

    fn label(&self, _index: u64) -> i64 {
        NO_LABEL
    }

    fn origin(&self, index: u64) -> String {
        self.paths[index as usize].display().to_string()
    }

    fn length_hint(&self, index: u64) -> Option<u64> {
        Some(self.sizes[index as usize])
    }

    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let file = File::open(&self.paths[index as usize])?;
        let len = file.metadata()?.len();
        if len > self.max_bytes as u64 {
            return Err(invalid(format!(
                "the document is {len} bytes, over the limit of {} (raise max_line_bytes)",
                self.max_bytes
            )));
        }
        buf.clear();
        file.take(self.max_bytes as u64 + 1).read_to_end(buf)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "text documents {} ({} .txt files)",
            self.root.display(),
            self.paths.len()
        )
    }
}

/// The text dataset at `path`: a folder of `.txt` documents, a JSON-lines file (`.jsonl`,
/// `.ndjson`, `.json`: the text in `field`, default "text"), or a text file of lines.
pub fn open_text_path(path: &Path, field: Option<&str>) -> Result<std::sync::Arc<dyn Source>> {
    if path.is_dir() {
        return Ok(std::sync::Arc::new(TextFolder::open(path)?));
    }
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let source = match (extension.as_deref(), field) {
        (Some("jsonl" | "ndjson" | "json"), f) | (_, f @ Some(_)) => {
            TextLines::open_jsonl(path, f.unwrap_or("text"))?
        }
        _ => TextLines::open(path)?,
    };
    if source.is_empty() {
        return Err(Error::Source(format!("{} has no text", path.display())));
    }
    Ok(std::sync::Arc::new(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(source: &dyn Source) -> Vec<(String, String)> {
        let mut buf = Vec::new();
        (0..source.len() as u64)
            .map(|i| {
                source.read(i, &mut buf).unwrap();
                (source.origin(i), String::from_utf8(buf.clone()).unwrap())
            })
            .collect()
    }

    #[test]
    fn lines_skip_empty_ones_and_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.txt");
        std::fs::write(&path, "first\n\nsecond line\r\n\r\nthird").unwrap();
        let lines = TextLines::open(&path).unwrap();
        assert_eq!(lines.empty_lines(), 2);
        let p = path.display();
        assert_eq!(
            read_all(&lines),
            [
                (format!("{p}:1"), "first".into()),
                (format!("{p}:3"), "second line".into()),
                (format!("{p}:5"), "third".into())
            ]
        );
        let long = TextLines::open(&path).unwrap().with_max_bytes(6);
        let err = long.read(1, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("13 bytes, over the limit of 6"), "{err}");
    }

    #[test]
    fn one_character_lines_are_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.txt");
        std::fs::write(&path, "a\n\r\nb").unwrap();
        let lines = TextLines::open(&path).unwrap();
        assert_eq!(lines.empty_lines(), 1);
        let texts: Vec<String> = read_all(&lines).into_iter().map(|t| t.1).collect();
        assert_eq!(texts, ["a", "b"]);
    }

    #[test]
    fn jsonl_field_and_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            "{\"text\": \"a \\u00e9\"}\n{\"txt\": 1}\n{\"text\": 5}\nnot json\n",
        )
        .unwrap();
        let source = open_text_path(&path, None).unwrap();
        let mut buf = Vec::new();
        source.read(0, &mut buf).unwrap();
        assert_eq!(buf, "a é".as_bytes());
        for (i, want) in [
            (1, "no field \"text\""),
            (2, "not a string but a number"),
            (3, "not JSON"),
        ] {
            let err = source.read(i, &mut buf).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn folder_of_documents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.txt"), "two\nlines").unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "one").unwrap();
        std::fs::write(dir.path().join("skip.md"), "no").unwrap();
        let source = open_text_path(dir.path(), None).unwrap();
        let texts: Vec<String> = read_all(source.as_ref()).into_iter().map(|t| t.1).collect();
        assert_eq!(texts, ["two\nlines", "one"]);
    }
}
