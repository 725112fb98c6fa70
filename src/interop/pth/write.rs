//! Saves a state dict as a file `torch.load` reads, `weights_only=True` included, so weights
//! trained here load in the Python ecosystem. The layout copies `torch.save`'s: a zip archive of
//! stored (uncompressed) entries `archive/data.pkl`, `archive/data/N`, `archive/version` and
//! `archive/byteorder`. Entries' data start on 64-byte boundaries as in `torch.save`'s files:
//! torch 2.11's `torch.load` does not need it (checked with misaligned float64 storages, `mmap=True`
//! included), but readers that map storages in place get aligned tensors for free.
use std::fs::File;
use std::io::Write;
use std::path::Path;

use tch::{Device, Tensor};
use zip::write::FileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::rebuild::STORAGE_KINDS;
use super::{Problem, PthError};

const FOLDER: &str = "archive";
const ALIGNMENT: u16 = 64;

/// Writes `tensors` as an `OrderedDict` of name → tensor (each with its own storage, contiguous, on
/// the CPU as torch.load sees it). Written to a `.partial` file that is renamed over `path` once
/// complete, so an interrupted save never leaves a truncated checkpoint behind.
pub fn write(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<(), PthError> {
    let path = path.as_ref();
    write_inner(path, tensors).map_err(|p| p.at(path))
}

/// What the pickle says about one tensor.
struct Meta {
    class: &'static str,
    numel: usize,
    size: Vec<i64>,
    nbytes: u64,
}

fn write_inner(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), Problem> {
    let metas = tensors.iter().map(|(name, t)| meta(name, t)).collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let pickle = pickle(&names, &metas);
    // A device or a link in place of `path` is written through, never replaced.
    crate::files::write_output_via(path, |partial| write_zip(partial, &pickle, tensors, &metas))
}

fn meta(name: &str, t: &Tensor) -> Result<Meta, Problem> {
    let kind = t.f_kind()?;
    let class = STORAGE_KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(c, _)| *c)
        .ok_or_else(|| Problem::Unsupported(format!("tensor {name} has kind {kind:?}, which has no torch storage class")))?;
    let numel = t.numel();
    Ok(Meta { class, numel, size: t.size(), nbytes: (numel * kind.elt_size_in_bytes()) as u64 })
}

fn write_zip(path: &Path, pickle: &[u8], tensors: &[(String, Tensor)], metas: &[Meta]) -> Result<(), Problem> {
    let mut zip = ZipWriter::new(File::create(path)?);
    entry(&mut zip, "data.pkl", pickle.len() as u64)?;
    zip.write_all(pickle)?;
    entry(&mut zip, "byteorder", 6)?;
    zip.write_all(b"little")?;
    for (i, ((name, t), m)) in tensors.iter().zip(metas).enumerate() {
        entry(&mut zip, &format!("data/{i}"), m.nbytes)?;
        zip.write_all(&tensor_bytes(name, t, m)?)?;
    }
    entry(&mut zip, "version", 2)?;
    zip.write_all(b"3\n")?;
    let file = zip.finish().map_err(Problem::Zip)?;
    file.sync_all()?;
    Ok(())
}

fn entry(zip: &mut ZipWriter<File>, name: &str, size: u64) -> Result<(), Problem> {
    let options = FileOptions::default()
        .compression_method(CompressionMethod::Stored)
        // Zip64 only where needed: entries of 4 GiB and more.
        .large_file(size >= u64::from(u32::MAX));
    zip.start_file_aligned(format!("{FOLDER}/{name}"), options, ALIGNMENT).map_err(Problem::Zip)?;
    Ok(())
}

/// The tensor's elements in C order, little-endian (the byte order of every machine libtorch runs on).
fn tensor_bytes(name: &str, t: &Tensor, m: &Meta) -> Result<Vec<u8>, Problem> {
    let mut bytes = vec![0u8; m.nbytes as usize];
    let cpu = t.f_to_device(Device::Cpu)?;
    cpu.f_copy_data_u8(&mut bytes, m.numel).map_err(|e| Problem::Unsupported(format!("tensor {name}: {e}")))?;
    Ok(bytes)
}

/// `OrderedDict([(name, _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())), ...])`
/// in protocol 2, using only what torch's weights-only unpickler allows.
fn pickle(names: &[&str], metas: &[Meta]) -> Vec<u8> {
    let mut p = Pickler(vec![0x80, 2]);
    p.ordered_dict();
    p.0.push(b'(');
    for (i, (name, m)) in names.iter().zip(metas).enumerate() {
        p.str(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(b'(');
        p.storage(m.class, i, m.numel);
        p.int(0);
        p.ints(&m.size);
        p.ints(&contiguous_strides(&m.size));
        p.0.push(0x89); // NEWFALSE: requires_grad
        p.ordered_dict(); // backward hooks
        p.0.extend_from_slice(b"tR");
    }
    p.0.extend_from_slice(b"u.");
    p.0
}

fn contiguous_strides(size: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; size.len()];
    for i in (0..size.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * size[i + 1].max(1);
    }
    strides
}

struct Pickler(Vec<u8>);

impl Pickler {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        for part in [module, name] {
            self.0.extend_from_slice(part.as_bytes());
            self.0.push(b'\n');
        }
    }

    fn str(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        match v {
            0..=0xff => self.0.extend_from_slice(&[b'K', v as u8]),
            0x100..=0xffff => {
                self.0.push(b'M');
                self.0.extend_from_slice(&(v as u16).to_le_bytes());
            }
            _ if i32::try_from(v).is_ok() => {
                self.0.push(b'J');
                self.0.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                self.0.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes of two's complement
                self.0.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn ints(&mut self, vs: &[i64]) {
        self.0.push(b'(');
        for &v in vs {
            self.int(v);
        }
        self.0.push(b't');
    }

    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(b")R");
    }

    /// `BINPERSID ('storage', torch.CLASS, 'KEY', 'cpu', numel)`.
    fn storage(&mut self, class: &str, key: usize, numel: usize) {
        self.0.push(b'(');
        self.str("storage");
        self.global("torch", class);
        self.str(&key.to_string());
        self.str("cpu");
        self.int(numel as i64);
        self.0.extend_from_slice(b"tQ");
    }
}
