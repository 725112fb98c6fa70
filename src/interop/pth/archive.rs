//! The zip side of a `.pth` file: finds the archive's top folder (torch names it after the file it
//! first saved, so it varies), and reads `data.pkl` and storages with their sizes checked against
//! the file before anything is allocated.
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::rebuild::Storages;
use super::Problem;

/// Deflate cannot expand data more than about 1032 times; an entry claiming more is lying.
const MAX_EXPANSION: u64 = 1100;

pub(super) struct Archive {
    zip: ZipArchive<BufReader<File>>,
    /// The top folder with its slash, e.g. `archive/`.
    prefix: String,
    file_len: u64,
}

impl Archive {
    pub(super) fn open(path: &Path) -> Result<Archive, Problem> {
        let mut file = crate::files::open_regular(path)?;
        let file_len = file.metadata()?.len();
        let mut head = [0u8; 512];
        let n = read_up_to(&mut file, &mut head)?;
        if !head[..n].starts_with(b"PK") {
            return Err(not_zip(&head[..n]));
        }
        let file = crate::files::open_regular(path)?;
        let mut zip = ZipArchive::new(BufReader::new(file)).map_err(Problem::Zip)?;
        let prefix = find_prefix(&mut zip)?;
        Ok(Archive { zip, prefix, file_len })
    }

    pub(super) fn pickle(&mut self) -> Result<Vec<u8>, Problem> {
        let name = format!("{}data.pkl", self.prefix);
        self.read(&name, None)
    }

    /// An entry's bytes: all of it, or exactly `want` bytes when given (refusing shorter entries).
    fn read(&mut self, name: &str, want: Option<u64>) -> Result<Vec<u8>, Problem> {
        let file_len = self.file_len;
        let entry = match self.zip.by_name(name) {
            Ok(e) => e,
            Err(ZipError::FileNotFound) => return Err(Problem::Malformed(format!("the archive has no entry {name}"))),
            Err(e) => return Err(Problem::Zip(e)),
        };
        let size = entry.size();
        let bound = match entry.compression() {
            CompressionMethod::Stored => file_len,
            _ => entry.compressed_size().saturating_mul(MAX_EXPANSION),
        };
        if size > bound {
            return Err(Problem::Malformed(format!("entry {name} claims {size} bytes, more than the file can hold")));
        }
        let want = want.unwrap_or(size);
        if want > size {
            return Err(Problem::Malformed(format!("{name} should hold {want} bytes but its entry holds {size}")));
        }
        let mut bytes = Vec::with_capacity(want as usize);
        entry.take(want).read_to_end(&mut bytes)?;
        if (bytes.len() as u64) < want {
            return Err(Problem::Malformed(format!("entry {name} ends after {} of its {want} bytes", bytes.len())));
        }
        Ok(bytes)
    }
}

impl Storages for Archive {
    fn bytes(&mut self, key: &str, nbytes: u64) -> Result<Vec<u8>, Problem> {
        let name = format!("{}data/{key}", self.prefix);
        self.read(&name, Some(nbytes))
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> Result<usize, std::io::Error> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Why a file that is not a zip archive is not readable, recognising torch's legacy formats.
fn not_zip(head: &[u8]) -> Problem {
    // Legacy torch.save starts with a pickled magic number (PROTO, then LONG1 0x1950a86a20f9469cfc6c);
    // the even older tar format has the tar magic at 257.
    let legacy_pickle = head.first() == Some(&0x80) && head.get(2) == Some(&0x8a);
    let legacy_tar = head.get(257..262) == Some(b"ustar");
    if legacy_pickle || legacy_tar {
        Problem::Legacy
    } else {
        Problem::NotZip
    }
}

/// The folder holding `data.pkl`: torch reads the first entry's folder, and so do we, falling back
/// to any top-level folder with a `data.pkl`.
fn find_prefix(zip: &mut ZipArchive<BufReader<File>>) -> Result<String, Problem> {
    let first = match zip.len() {
        0 => None,
        _ => zip.by_index_raw(0).map_err(Problem::Zip)?.name().split_once('/').map(|(folder, _)| format!("{folder}/")),
    };
    let has_pickle = |prefix: &str| zip.file_names().any(|n| n.strip_prefix(prefix) == Some("data.pkl"));
    if let Some(prefix) = first.filter(|p| has_pickle(p)) {
        return Ok(prefix);
    }
    zip.file_names()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .find(|p| p.ends_with('/') && p.matches('/').count() == 1)
        .map(str::to_owned)
        .ok_or_else(|| Problem::Malformed("a zip archive without a FOLDER/data.pkl entry: not a torch.save file".into()))
}
