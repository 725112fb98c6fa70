//! TensorBoard event files, so runs of this app show up in TensorBoard next to runs of the Python
//! reference code. Written by hand: the format is TFRecord framing around a handful of protobuf
//! fields, too little to justify a protobuf toolchain.
//!
//! A record is `u64 length (LE) | u32 masked CRC32C of the length bytes | data | u32 masked CRC32C
//! of data`. Each data is an `Event` (tensorflow/core/util/event.proto) with the fields used here:
//!
//! | message        | field          | number | wire type          |
//! | -------------- | -------------- | ------ | ------------------ |
//! | Event          | wall_time      | 1      | 64-bit (double)    |
//! | Event          | step           | 2      | varint (int64)     |
//! | Event          | file_version   | 3      | length (string)    |
//! | Event          | summary        | 5      | length (Summary)   |
//! | Summary        | value          | 1      | length (repeated)  |
//! | Summary.Value  | tag            | 1      | length (string)    |
//! | Summary.Value  | simple_value   | 2      | 32-bit (float)     |
//! | Summary.Value  | tensor         | 8      | length (TensorProto, TF2 scalars; read only) |
//! | TensorProto    | dtype          | 1      | varint (1 float, 2 double) |
//! | TensorProto    | tensor_content | 4      | length (raw LE values) |
//! | TensorProto    | float_val      | 5      | 32-bit or packed   |
//! | TensorProto    | double_val     | 6      | 64-bit or packed   |
use crate::files::ShowPath;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TbError {
    #[error("{}: {source}", path.shown())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: record at byte {offset}: {what}", path.shown())]
    Corrupt { path: PathBuf, offset: u64, what: String },
}

/// Appends scalar events to a new event file in a log folder.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Seconds since the Unix epoch, as events' `wall_time` wants them.
pub fn wall_time_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl EventWriter {
    /// Creates `dir` if needed and a new `events.out.tfevents.<unix_time>.<hostname>` in it (with
    /// `.1`, `.2`... appended if a writer of the same second already took the name; TensorBoard
    /// reads any file whose name contains `tfevents`), starting with the file-version event.
    pub fn create(dir: impl AsRef<Path>) -> Result<EventWriter, TbError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|source| TbError::Io { path: dir.to_path_buf(), source })?;
        let now = wall_time_now();
        let (path, file) = create_new(dir, &format!("events.out.tfevents.{}.{}", now as u64, hostname()))?;
        let mut writer = EventWriter { path, out: BufWriter::new(file) };
        let mut event = Vec::new();
        put_f64(&mut event, 1, now);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one point of the curve `tag`; `wall_time` is seconds since the Unix epoch
    /// ([`wall_time_now`]). Buffered: call [`flush`](Self::flush) for TensorBoard to see it.
    pub fn add_scalar(&mut self, tag: &str, step: i64, value: f32, wall_time: f64) -> Result<(), TbError> {
        let mut summary_value = Vec::new();
        put_bytes(&mut summary_value, 1, tag.as_bytes());
        put_key(&mut summary_value, 2, WIRE_32);
        summary_value.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &summary_value);
        let mut event = Vec::new();
        put_f64(&mut event, 1, wall_time);
        put_key(&mut event, 2, WIRE_VARINT);
        put_varint(&mut event, step as u64); // int64: negatives as their two's complement
        put_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    pub fn flush(&mut self) -> Result<(), TbError> {
        self.out.flush().map_err(|source| TbError::Io { path: self.path.clone(), source })
    }

    fn record(&mut self, data: &[u8]) -> Result<(), TbError> {
        self.out.write_all(&framed(data)).map_err(|source| TbError::Io { path: self.path.clone(), source })
    }
}

/// One TFRecord: length, its CRC, the data, its CRC.
fn framed(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut framed = Vec::with_capacity(data.len() + 16);
    framed.extend_from_slice(&len);
    framed.extend_from_slice(&masked_crc(&len).to_le_bytes());
    framed.extend_from_slice(data);
    framed.extend_from_slice(&masked_crc(data).to_le_bytes());
    framed
}

fn create_new(dir: &Path, name: &str) -> Result<(PathBuf, File), TbError> {
    for n in 0..1000 {
        let path = match n {
            0 => dir.join(name),
            _ => dir.join(format!("{name}.{n}")),
        };
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(TbError::Io { path, source }),
        }
    }
    let source = io::Error::new(ErrorKind::AlreadyExists, "1000 event files of the same second");
    Err(TbError::Io { path: dir.join(name), source })
}

/// The host name as TensorBoard shows it in file names, without characters a file name can't hold.
fn hostname() -> String {
    let name = sysinfo::System::host_name().unwrap_or_default();
    let clean: String = name.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// TFRecord's CRC: CRC32C, rotated and offset so that CRCs of data containing CRCs stay strong.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

const WIRE_VARINT: u8 = 0;
const WIRE_64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_f64(out: &mut Vec<u8>, field: u32, v: f64) {
    put_key(out, field, WIRE_64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One protobuf field's payload.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

/// The fields of a protobuf message, in order; `Err` on malformed input.
fn fields(mut buf: &[u8]) -> impl Iterator<Item = Result<(u32, Field<'_>), String>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let field = next_field(&mut buf);
        if field.is_err() {
            buf = &[];
        }
        Some(field)
    })
}

fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u32, Field<'a>), String> {
    let key = varint(buf)?;
    let number = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
    let field = match (key & 7) as u8 {
        WIRE_VARINT => Field::Varint(varint(buf)?),
        WIRE_64 => Field::Fixed64(take(buf, 8)?.try_into().map_err(|_| "short field")?),
        WIRE_LEN => {
            let n = varint(buf)?;
            Field::Bytes(take(buf, usize::try_from(n).map_err(|_| "length too large")?)?)
        }
        WIRE_32 => Field::Fixed32(take(buf, 4)?.try_into().map_err(|_| "short field")?),
        wire => return Err(format!("unsupported protobuf wire type {wire}")),
    };
    Ok((number, field))
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!("field needs {n} bytes, {} left", buf.len()));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// Every scalar in an event file as `(tag, step, value)`, in file order, checking each record's
/// CRCs. Reads both `simple_value` scalars (ours, PyTorch's SummaryWriter) and TF2's one-element
/// tensor scalars. A record cut off at the end (a writer still running, or killed) ends the list
/// rather than failing, as TensorBoard treats it.
pub fn read_scalars(path: impl AsRef<Path>) -> Result<Vec<(String, i64, f32)>, TbError> {
    let path = path.as_ref();
    let io_err = |source| TbError::Io { path: path.to_path_buf(), source };
    let file = crate::files::open_regular(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut offset = 0u64;
    while let Some(data) = next_record(&mut reader, file_len - offset.min(file_len)).map_err(|what| corrupt(path, offset, what))? {
        scalars_of_event(&data, &mut out).map_err(|what| corrupt(path, offset, what))?;
        offset += data.len() as u64 + 16;
    }
    Ok(out)
}

/// Rewrites an event file keeping the events whose every scalar passes `keep(tag, step)`, and
/// every event without a summary (the file-version event), wall times included: a resumed run
/// writes some steps again, and TensorBoard would otherwise show both. A cut-off last record is
/// dropped. The new content replaces the file by rename, so a crash leaves the old or the new
/// file whole. Returns the number of events dropped.
pub fn retain(path: impl AsRef<Path>, keep: impl Fn(&str, i64) -> bool) -> Result<usize, TbError> {
    let path = path.as_ref();
    let io_err = |source| TbError::Io { path: path.to_path_buf(), source };
    let file = crate::files::open_regular(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::new(file);
    let (mut kept, mut dropped, mut offset) = (Vec::new(), 0usize, 0u64);
    while let Some(data) = next_record(&mut reader, file_len - offset.min(file_len)).map_err(|what| corrupt(path, offset, what))? {
        let mut scalars = Vec::new();
        scalars_of_event(&data, &mut scalars).map_err(|what| corrupt(path, offset, what))?;
        offset += data.len() as u64 + 16;
        if scalars.iter().all(|(tag, step, _)| keep(tag, *step)) {
            kept.extend_from_slice(&framed(&data));
        } else {
            dropped += 1;
        }
    }
    if dropped == 0 && offset == file_len {
        return Ok(0);
    }
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let tmp_err = |source| TbError::Io { path: tmp.clone(), source };
    let mut out = File::create(&tmp).map_err(tmp_err)?;
    out.write_all(&kept).map_err(tmp_err)?;
    out.sync_all().map_err(tmp_err)?;
    fs::rename(&tmp, path).map_err(io_err)?;
    Ok(dropped)
}

fn corrupt(path: &Path, offset: u64, what: String) -> TbError {
    TbError::Corrupt { path: path.to_path_buf(), offset, what }
}

/// The next record's data, `None` at the end or at a truncated last record.
fn next_record(reader: &mut impl Read, left: u64) -> Result<Option<Vec<u8>>, String> {
    let mut head = [0u8; 12];
    if !read_full(reader, &mut head)? {
        return Ok(None);
    }
    let len_bytes: [u8; 8] = head[..8].try_into().map_err(|_| "short header")?;
    if masked_crc(&len_bytes) != u32::from_le_bytes(head[8..].try_into().map_err(|_| "short header")?) {
        return Err("length CRC mismatch".into());
    }
    let len = u64::from_le_bytes(len_bytes);
    if len.saturating_add(16) > left {
        return Ok(None); // cut off: the length claims more than the file holds
    }
    let mut data = vec![0u8; len as usize];
    let mut crc = [0u8; 4];
    if !read_full(reader, &mut data)? || !read_full(reader, &mut crc)? {
        return Ok(None);
    }
    if masked_crc(&data) != u32::from_le_bytes(crc) {
        return Err("data CRC mismatch".into());
    }
    Ok(Some(data))
}

/// Fills `buf`; `false` if the input ended first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<bool, String> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

fn scalars_of_event(event: &[u8], out: &mut Vec<(String, i64, f32)>) -> Result<(), String> {
    let mut step = 0i64;
    let mut summaries = Vec::new();
    for field in fields(event) {
        match field? {
            (2, Field::Varint(v)) => step = v as i64,
            (5, Field::Bytes(b)) => summaries.push(b),
            _ => {}
        }
    }
    for summary in summaries {
        for field in fields(summary) {
            if let (1, Field::Bytes(value)) = field? {
                if let Some((tag, v)) = summary_value(value)? {
                    out.push((tag, step, v));
                }
            }
        }
    }
    Ok(())
}

/// A `Summary.Value`'s tag and scalar, if it holds one (images and histograms do not).
fn summary_value(value: &[u8]) -> Result<Option<(String, f32)>, String> {
    let (mut tag, mut scalar) = (None, None);
    for field in fields(value) {
        match field? {
            (1, Field::Bytes(b)) => tag = Some(String::from_utf8_lossy(b).into_owned()),
            (2, Field::Fixed32(b)) => scalar = Some(f32::from_le_bytes(b)),
            (8, Field::Bytes(t)) => scalar = scalar.or(tensor_scalar(t)?),
            _ => {}
        }
    }
    Ok(tag.zip(scalar))
}

/// The value of a one-element float or double `TensorProto`.
fn tensor_scalar(tensor: &[u8]) -> Result<Option<f32>, String> {
    let (mut dtype, mut value) = (0u64, None);
    for field in fields(tensor) {
        match field? {
            (1, Field::Varint(d)) => dtype = d,
            (5, Field::Fixed32(b)) => value = Some(f32::from_le_bytes(b)),
            (6, Field::Fixed64(b)) => value = Some(f64::from_le_bytes(b) as f32),
            (4 | 5, Field::Bytes(b)) if b.len() == 4 => value = b.try_into().ok().map(f32::from_le_bytes),
            (4 | 6, Field::Bytes(b)) if b.len() == 8 => value = b.try_into().ok().map(|b| f64::from_le_bytes(b) as f32),
            _ => {}
        }
    }
    Ok(value.filter(|_| dtype == 1 || dtype == 2))
}

#[cfg(test)]
mod tests;
