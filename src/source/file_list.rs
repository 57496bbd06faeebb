//! A CSV file list: one `path,label` per line. Relative paths are resolved against the CSV's
//! directory; a first line whose label is not an integer is taken as a header.

use super::{FileBacked, PathList};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FileList {
    csv: PathBuf,
    list: PathList,
}

impl FileList {
    pub fn open(csv: impl AsRef<Path>) -> Result<Self> {
        let csv = csv.as_ref().to_path_buf();
        let text =
            std::fs::read_to_string(&csv).map_err(|e| Error::io(csv.display().to_string(), e))?;
        let base = csv.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut list = PathList::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // The label is after the last comma, so paths may contain commas.
            let Some((path, label)) = line.rsplit_once(',') else {
                return Err(Error::Source(format!(
                    "{}:{}: expected `path,label`, got {line:?}",
                    csv.display(),
                    n + 1
                )));
            };
            let label = match label.trim().parse::<i64>() {
                Ok(l) => l,
                Err(_) if n == 0 => continue, // header
                Err(_) => {
                    return Err(Error::Source(format!(
                        "{}:{}: label {label:?} is not an integer",
                        csv.display(),
                        n + 1
                    )))
                }
            };
            list.paths.push(base.join(path.trim()));
            list.labels.push(label);
        }
        if list.paths.is_empty() {
            return Err(Error::Source(format!("{} lists no files", csv.display())));
        }
        Ok(FileList { csv, list })
    }
}

impl FileBacked for FileList {
    fn path_list(&self) -> &PathList {
        &self.list
    }
    fn describe(&self) -> String {
        format!(
            "FileList {} ({} files)",
            self.csv.display(),
            self.list.paths.len()
        )
    }
}
