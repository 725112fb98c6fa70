//! PyTorch `.pth` files without Python: [`read`] loads what `torch.save` wrote (checkpoints of the
//! reference DINO code, plain state dicts) into a [`Value`] tree with tensors on the CPU, and
//! [`write`] saves a state dict that `torch.load(..., weights_only=True)` accepts, so weights move
//! both ways between this app and the Python ecosystem.
//!
//! A `torch.save` file is a zip archive: `FOLDER/data.pkl` (a pickle whose persistent ids name
//! storages), `FOLDER/data/KEY` (each storage's raw little-endian bytes), `FOLDER/version`,
//! `FOLDER/byteorder`.
mod archive;
mod rebuild;
mod unpickle;
mod value;
mod write;

#[cfg(test)]
mod tests;

use crate::files::ShowPath;
use std::path::{Path, PathBuf};

use tch::{TchError, Tensor};
use thiserror::Error;

pub use value::{Object, Value};
pub use write::write;

/// Why a `.pth` file could not be read or written, with the file it was about.
#[derive(Debug, Error)]
#[error("{}: {problem}", path.shown())]
pub struct PthError {
    pub path: PathBuf,
    pub problem: Problem,
}

/// What went wrong with a `.pth` file.
#[derive(Debug, Error)]
pub enum Problem {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "legacy torch.save format (before PyTorch 1.6, or _use_new_zipfile_serialization=False), which is not a zip \
         archive and is not supported: load it in Python and torch.save it again"
    )]
    Legacy,
    #[error("not a PyTorch file: it is not a zip archive (torch.save writes zip archives since PyTorch 1.6)")]
    NotZip,
    #[error("broken zip archive: {0}")]
    Zip(zip::result::ZipError),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

impl Problem {
    fn at(self, path: &Path) -> PthError {
        PthError { path: path.to_path_buf(), problem: self }
    }
}

/// Reads a file written by `torch.save`. Tensors land on the CPU whatever device they were saved
/// from, keeping their strides, offsets and sharing of storage.
pub fn read(path: impl AsRef<Path>) -> Result<Value, PthError> {
    let path = path.as_ref();
    read_inner(path).map_err(|p| p.at(path))
}

fn read_inner(path: &Path) -> Result<Value, Problem> {
    let mut archive = archive::Archive::open(path)?;
    let pickle = archive.pickle()?;
    let (root, memo) = unpickle::unpickle(&pickle)?;
    rebuild::finish(&root, &memo, &mut archive)
}

/// The tensors of a (state) dict as a flat name → tensor list, in file order: nested dicts are
/// flattened with `.` (`{"a": {"b": t}}` gives `a.b`), integer keys (optimizer state) count as
/// names, and anything else (numbers, objects) is skipped. Tensors share memory with `value`.
pub fn state_dict(value: &Value) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    flatten(value, "", &mut out);
    out
}

fn flatten(value: &Value, prefix: &str, out: &mut Vec<(String, Tensor)>) {
    let Some(pairs) = value.as_dict() else { return };
    for (key, v) in pairs {
        let key = match key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => continue,
        };
        let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        match v {
            Value::Tensor(t) => out.push((name, t.shallow_clone())),
            Value::Dict(_) => flatten(v, &name, out),
            _ => {}
        }
    }
}

/// Removes `prefix` (`module.` from DistributedDataParallel, `backbone.` from DINO's wrapper) from
/// the names that start with it and keeps the others as they are, like the reference code's
/// `k.replace("module.", "")` before a non-strict load.
pub fn strip_prefix(entries: Vec<(String, Tensor)>, prefix: &str) -> Vec<(String, Tensor)> {
    entries.into_iter().map(|(k, t)| (k.strip_prefix(prefix).map(str::to_owned).unwrap_or(k), t)).collect()
}

/// Only the entries under `prefix`, with it removed: `select_prefix(teacher, "backbone.")` keeps
/// the backbone and drops the projection head.
pub fn select_prefix(entries: Vec<(String, Tensor)>, prefix: &str) -> Vec<(String, Tensor)> {
    entries.into_iter().filter_map(|(k, t)| k.strip_prefix(prefix).map(|k| (k.to_owned(), t))).collect()
}
