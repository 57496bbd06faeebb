//! Data sources: where encoded samples come from. A source is an indexable collection of
//! (encoded bytes, label); the sampler decides the order, the executor reads in parallel.

mod audio_folder;
mod file_list;
mod image_folder;
mod memory;
pub mod shards;
mod text;

pub use audio_folder::AudioFolder;
pub use file_list::{FileList, NO_LABEL};
pub use image_folder::ImageFolder;
pub use memory::InMemory;
pub use text::{open_text_path, TextFolder, TextLines, DEFAULT_MAX_TEXT_BYTES};

/// The dataset at `path`: a CSV list of `path,label` when it is a file, else an ImageFolder.
pub fn open_path(path: impl AsRef<std::path::Path>) -> crate::Result<std::sync::Arc<dyn Source>> {
    let path = path.as_ref();
    if path.is_file() {
        Ok(std::sync::Arc::new(FileList::open(path)?))
    } else {
        Ok(std::sync::Arc::new(ImageFolder::open(path)?))
    }
}

/// The audio dataset at `path`: a CSV list of `path,label` when it is a file, else an
/// AudioFolder.
pub fn open_audio_path(
    path: impl AsRef<std::path::Path>,
) -> crate::Result<std::sync::Arc<dyn Source>> {
    let path = path.as_ref();
    if path.is_file() {
        Ok(std::sync::Arc::new(FileList::open(path)?))
    } else {
        Ok(std::sync::Arc::new(AudioFolder::open(path)?))
    }
}

/// An indexable collection of encoded samples.
pub trait Source: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Label of sample `index` (class index for classification data).
    fn label(&self, index: u64) -> i64;

    /// Where sample `index` comes from, for error messages (a path, or shard + offset).
    fn origin(&self, index: u64) -> String;

    /// The transcript (or caption) that travels with sample `index` as metadata, when the
    /// source has them (a manifest with a text column); batches carry them in
    /// [`crate::Batch::texts`].
    fn text(&self, _index: u64) -> Option<&str> {
        None
    }

    /// Sample `index`'s size in bytes when the source knows it without reading the sample
    /// (text lines and documents): what length bucketing sorts by.
    fn length_hint(&self, _index: u64) -> Option<u64> {
        None
    }

    /// Replace the contents of `buf` with the encoded bytes of sample `index`.
    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()>;

    /// For sharded data: the index of each shard's first sample (samples are numbered shard
    /// by shard), which shard-window shuffling permutes.
    fn shard_starts(&self) -> Option<&[u64]> {
        None
    }

    /// For remote data: a read-ahead the epoch iterator drives through its order.
    fn read_ahead(&self) -> Option<shards::ReadAhead> {
        None
    }

    /// What identifies the data for a saved state: a resumed run refuses other data.
    fn fingerprint(&self) -> String {
        format!("{}|{}", self.describe(), self.len())
    }

    /// One line for reports: kind and location.
    fn describe(&self) -> String;
}

/// A list of files with labels, read from disk on demand. Shared by the folder and CSV sources.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathList {
    pub paths: Vec<std::path::PathBuf>,
    pub labels: Vec<i64>,
    /// One per path, or empty when the list has no transcripts.
    pub texts: Vec<String>,
}

/// A source backed by a [`PathList`]: implementing this gives the whole [`Source`] trait.
pub(crate) trait FileBacked: Send + Sync {
    fn path_list(&self) -> &PathList;
    fn describe(&self) -> String;
}

impl<T: FileBacked> Source for T {
    fn len(&self) -> usize {
        self.path_list().paths.len()
    }

    fn label(&self, index: u64) -> i64 {
        self.path_list().labels[index as usize]
    }

    fn origin(&self, index: u64) -> String {
        self.path_list().paths[index as usize].display().to_string()
    }

    fn text(&self, index: u64) -> Option<&str> {
        self.path_list()
            .texts
            .get(index as usize)
            .map(String::as_str)
    }

    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        use std::io::Read;
        buf.clear();
        let mut file = std::fs::File::open(&self.path_list().paths[index as usize])?;
        file.read_to_end(buf)?;
        Ok(())
    }

    fn describe(&self) -> String {
        FileBacked::describe(self)
    }
}
