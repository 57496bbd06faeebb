//! `root/CLASS/*.{jpg,jpeg,png}`, the torchvision ImageFolder layout. Class index = position of
//! the class directory name in sorted order; files are sorted within a class.

use super::{FileBacked, PathList};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    list: PathList,
}

const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// `root/CLASS/*.{extensions}`: the class names in sorted order and every matching file (sorted
/// within its class) with its class index; an error naming `noun` when there are none.
pub(super) fn scan_classes(
    root: &Path,
    extensions: &[&str],
    noun: &str,
) -> Result<(Vec<String>, PathList)> {
    let mut classes = Vec::new();
    let mut list = PathList::default();
    for class_dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let label = classes.len() as i64;
        classes.push(
            class_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
        for file in sorted_entries(&class_dir)? {
            if file.is_file() && has_extension(&file, extensions) {
                list.paths.push(file);
                list.labels.push(label);
            }
        }
    }
    if list.paths.is_empty() {
        return Err(Error::Source(format!(
            "no {noun} under {} (expected ROOT/CLASS/*.{})",
            root.display(),
            extensions.join("|")
        )));
    }
    Ok((classes, list))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display().to_string(), e))? {
        entries.push(
            entry
                .map_err(|e| Error::io(dir.display().to_string(), e))?
                .path(),
        );
    }
    entries.sort();
    Ok(entries)
}

impl ImageFolder {
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let (classes, list) = scan_classes(&root, &IMAGE_EXTENSIONS, "images")?;
        Ok(ImageFolder {
            root,
            classes,
            list,
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

impl FileBacked for ImageFolder {
    fn path_list(&self) -> &PathList {
        &self.list
    }
    fn describe(&self) -> String {
        format!(
            "ImageFolder {} ({} images, {} classes)",
            self.root.display(),
            self.list.paths.len(),
            self.classes.len()
        )
    }
}
