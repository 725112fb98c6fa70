//! NumPy `.npy` files, so features and embeddings computed here load with `numpy.load` for
//! analysis in the Python ecosystem. Format 1.0: magic, version, a little-endian u16 header length,
//! a Python-literal header dict padded with spaces to a multiple of 64 bytes, then the data.
use crate::files::ShowPath;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NpyError {
    #[error("{}: {source}", path.shown())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: a {rows}×{cols} array needs {} values, got {got}", path.shown(), rows * cols)]
    Shape { path: PathBuf, rows: usize, cols: usize, got: usize },
}

/// Writes a `rows × cols` float32 matrix given in C (row-major) order.
pub fn write_f32(path: impl AsRef<Path>, rows: usize, cols: usize, data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(NpyError::Shape { path: path.to_path_buf(), rows, cols, got: data.len() });
    }
    let io_err = |source| NpyError::Io { path: path.to_path_buf(), source };
    // Whole or not at all for a file; a device or a link in its place is written through.
    let mut output = crate::files::Output::create(path).map_err(io_err)?;
    let mut out = BufWriter::new(&mut output.file);
    out.write_all(&header(&format!("({rows}, {cols})"))).map_err(io_err)?;
    for v in data {
        out.write_all(&v.to_le_bytes()).map_err(io_err)?;
    }
    out.flush().map_err(io_err)?;
    drop(out);
    output.commit().map_err(io_err)
}

/// Magic, version 1.0, length and the padded dict for a little-endian float32 C-order array.
fn header(shape: &str) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // 10 bytes of preamble plus the dict and its newline, rounded up to 64 (numpy's own alignment).
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::testpy;

    #[test]
    fn header_is_padded_to_64_and_ends_in_newline() {
        let h = header("(3, 4)");
        assert_eq!(h.len() % 64, 0);
        assert_eq!(h.last(), Some(&b'\n'));
        assert_eq!(usize::from(u16::from_le_bytes([h[8], h[9]])), h.len() - 10);
    }

    #[test]
    fn rejects_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_f32(dir.path().join("x.npy"), 2, 3, &[1.0; 5]).unwrap_err();
        assert!(err.to_string().contains("2×3 array needs 6 values, got 5"), "{err}");
    }

    #[test]
    fn numpy_loads_what_we_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feats.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.25).collect();
        write_f32(&path, 3, 4, &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let h = header("(3, 4)");
        assert_eq!(&bytes[..h.len()], &h[..]);
        let back: Vec<f32> = bytes[h.len()..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(back, data);
        let Some(py) = testpy::python_with("numpy") else { return };
        let script = "import sys, numpy as np\na = np.load(sys.argv[1])\nprint(a.dtype.str, a.shape, a.flags['C_CONTIGUOUS'], ' '.join(repr(float(x)) for x in a.ravel()))";
        let out = testpy::run(&py, script, &[path.as_os_str()]);
        let expected = format!("<f4 (3, 4) True {}", data.iter().map(|v| format!("{:?}", f64::from(*v))).collect::<Vec<_>>().join(" "));
        assert_eq!(out.trim(), expected);
    }
}
