//! A sparse index of a run's `metrics.jsonl`: the byte offset and iteration of every `EVERY`-th
//! line, so a viewer that keeps only a summary of a long run can read an old range back from the
//! file when asked to zoom into it, at the cost of at most `EVERY` lines skipped before the range.
//! A million iterations cost about 4,000 marks (64 KB). The index grows with the file (appended
//! lines are scanned on the next read) and starts over when the file is replaced or shortened (a
//! resumed run rewrites it).

use crate::protocol::IterMetrics;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Lines between two marks.
pub const EVERY: u64 = 256;

/// Only the iteration of a line, for marking it (serde skips the rest without building it).
#[derive(serde::Deserialize)]
struct IterOnly {
    iter: usize,
}

#[derive(Debug, Clone)]
pub struct MetricsIndex {
    path: PathBuf,
    /// (iteration, byte offset of the line) of lines 0, EVERY, 2 * EVERY, ...
    marks: Vec<(usize, u64)>,
    /// Bytes scanned: the offset just past the last complete line seen.
    scanned: u64,
    lines: u64,
    inode: Option<u64>,
}

impl MetricsIndex {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), marks: Vec::new(), scanned: 0, lines: 0, inode: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks the lines appended since the last call; the file opened for it is returned to read.
    fn refresh(&mut self) -> std::io::Result<File> {
        let mut f = crate::files::open_regular(&self.path)?;
        let meta = f.metadata()?;
        if self.inode.is_some_and(|i| i != meta.ino()) || meta.len() < self.scanned {
            *self = Self::new(&self.path);
        }
        self.inode = Some(meta.ino());
        f.seek(SeekFrom::Start(self.scanned))?;
        let mut r = BufReader::with_capacity(1 << 20, &mut f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            // A half-written last line is marked once its newline arrives.
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            if self.lines.is_multiple_of(EVERY) {
                if let Ok(m) = serde_json::from_slice::<IterOnly>(&line) {
                    self.marks.push((m.iter, self.scanned));
                }
            }
            self.lines += 1;
            self.scanned += n as u64;
        }
        drop(r);
        Ok(f)
    }

    /// Calls `each` with the recorded iterations from `from` to `to`, in file order, read from the
    /// mark before `from`. Lines that are not metrics (a torn line) are skipped.
    pub fn read_range(&mut self, from: usize, to: usize, mut each: impl FnMut(&IterMetrics)) -> std::io::Result<()> {
        let mut f = self.refresh()?;
        let start = self.marks.partition_point(|&(i, _)| i < from).saturating_sub(1);
        let offset = self.marks.get(start).map_or(0, |&(_, o)| o);
        f.seek(SeekFrom::Start(offset))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut line = Vec::new();
        let mut read = offset;
        while read < self.scanned {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            let Ok(m) = serde_json::from_slice::<IterMetrics>(&line) else { continue };
            if m.iter > to {
                break;
            }
            if m.iter >= from {
                each(&m);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(i: usize) -> String {
        let mut s = serde_json::to_string(&IterMetrics::sample(i, i as f64, 0.0)).expect("json");
        s.push('\n');
        s
    }

    #[test]
    fn reads_a_range_and_follows_appends_and_replacement() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("metrics.jsonl");
        std::fs::write(&p, (0..2000).map(line).collect::<String>()).expect("write");
        let mut idx = MetricsIndex::new(&p);
        let mut got = Vec::new();
        idx.read_range(700, 709, |m| got.push(m.iter)).expect("read");
        assert_eq!(got, (700..710).collect::<Vec<_>>());
        assert_eq!(idx.marks.len(), 8, "2000 lines, a mark every {EVERY}");
        // Appended, with a half-written last line that is not read yet.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).expect("open");
        f.write_all((2000..2100).map(line).collect::<String>().as_bytes()).expect("append");
        f.write_all(b"{\"iter\":21").expect("torn");
        got.clear();
        idx.read_range(2090, 5000, |m| got.push(m.iter)).expect("read");
        assert_eq!(got, (2090..2100).collect::<Vec<_>>());
        // Replaced (a resumed run rewrote it).
        std::fs::write(d.path().join("tmp"), (0..10).map(line).collect::<String>()).expect("write");
        std::fs::rename(d.path().join("tmp"), &p).expect("rename");
        got.clear();
        idx.read_range(0, 100, |m| got.push(m.iter)).expect("read");
        assert_eq!(got.len(), 10);
        assert!(MetricsIndex::new(&d.path().join("none")).read_range(0, 1, |_| {}).is_err());
    }
}
