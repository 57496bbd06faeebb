//! `root/CLASS/*.{wav,flac}`: audio files in the ImageFolder layout (label = class index in
//! sorted order; files sorted within a class).

use super::image_folder::scan_classes;
use super::{FileBacked, PathList};
use crate::error::Result;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct AudioFolder {
    root: PathBuf,
    classes: Vec<String>,
    list: PathList,
}

const AUDIO_EXTENSIONS: [&str; 2] = ["wav", "flac"];

impl AudioFolder {
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let (classes, list) = scan_classes(&root, &AUDIO_EXTENSIONS, "audio files")?;
        Ok(AudioFolder {
            root,
            classes,
            list,
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

impl FileBacked for AudioFolder {
    fn path_list(&self) -> &PathList {
        &self.list
    }
    fn describe(&self) -> String {
        format!(
            "AudioFolder {} ({} files, {} classes)",
            self.root.display(),
            self.list.paths.len(),
            self.classes.len()
        )
    }
}
