//! Scratch directories for files handed to a program (an upload, a config
//! file, nginx's configuration), removed on drop.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// A fresh directory under the system's temp dir (`mirror-LABEL-XXXXXX`),
/// removed with its contents on drop, also when the caller fails.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
}

impl ScratchDir {
    pub fn new(label: &str) -> Result<Self> {
        Self::create(label, &std::env::temp_dir())
    }

    /// A fresh directory inside `parent` (next to a cache it fills, say).
    pub fn new_in(parent: &Path, label: &str) -> Result<Self> {
        Self::create(label, parent)
    }

    fn create(label: &str, parent: &Path) -> Result<Self> {
        let prefix = format!("mirror-{label}-");
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "cannot create a scratch directory {prefix}* in {}",
                    parent.display()
                )
            })?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> Result<PathBuf> {
        let path = self.path().join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}
