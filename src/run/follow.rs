//! Following a growing file line by line, as `tail -F` does: new complete lines since the last
//! read, a half-written last line kept until its newline arrives, and a file replaced (a resumed
//! run rewrites `metrics.jsonl`) or truncated read again from its start.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Tail {
    path: PathBuf,
    offset: u64,
    inode: Option<u64>,
    partial: Vec<u8>,
}

/// What one read found.
#[derive(Debug, Default, PartialEq)]
pub struct NewLines {
    /// The file was replaced or shortened: these lines start again from its beginning.
    pub restarted: bool,
    pub lines: Vec<String>,
}

/// What one read found, as bytes: complete lines, each ending with a newline.
#[derive(Debug, Default, PartialEq)]
pub struct NewBytes {
    /// The file was replaced or shortened: these lines start again from its beginning.
    pub restarted: bool,
    pub bytes: Vec<u8>,
}

impl Tail {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), offset: 0, inode: None, partial: Vec::new() }
    }

    pub fn read_new(&mut self) -> NewLines {
        self.read_some(u64::MAX)
    }

    /// Like `read_new`, reading at most `max_bytes`.
    pub fn read_some(&mut self, max_bytes: u64) -> NewLines {
        let chunk = self.read_chunk(max_bytes);
        let lines = String::from_utf8_lossy(&chunk.bytes).lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
        NewLines { restarted: chunk.restarted, lines }
    }

    /// The complete lines in the next at most `max_bytes`, as the bytes they came in (one buffer,
    /// not a string per line): a long file (a million-iteration `metrics.jsonl` is 320 MB) is
    /// followed in batches of bounded memory and few allocations. A read that returns no bytes
    /// has reached the end (or the middle of a line longer than `max_bytes`).
    pub fn read_chunk(&mut self, max_bytes: u64) -> NewBytes {
        let mut out = NewBytes::default();
        let Ok(mut f) = crate::files::open_regular(&self.path) else { return out };
        let Ok(meta) = f.metadata() else { return out };
        if self.inode.is_some_and(|i| i != meta.ino()) || meta.len() < self.offset {
            out.restarted = true;
            self.offset = 0;
            self.partial.clear();
        }
        self.inode = Some(meta.ino());
        if meta.len() == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return out;
        }
        let wanted = max_bytes.min(meta.len() - self.offset);
        self.partial.reserve(wanted.min(1 << 24) as usize);
        let Ok(n) = f.take(wanted).read_to_end(&mut self.partial) else { return out };
        self.offset += n as u64;
        if let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(last_nl + 1);
            out.bytes = std::mem::replace(&mut self.partial, rest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn follows_appends_partial_lines_and_replacement() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("m.jsonl");
        let mut t = Tail::new(&p);
        assert_eq!(t.read_new(), NewLines::default(), "no file yet");
        std::fs::write(&p, "a\nb").expect("write");
        assert_eq!(t.read_new().lines, ["a"]);
        std::fs::OpenOptions::new().append(true).open(&p).expect("open").write_all(b"c\nd\n").expect("append");
        assert_eq!(t.read_new().lines, ["bc", "d"]);
        assert!(t.read_new().lines.is_empty());
        // Replaced by rename, as a resumed run rewrites metrics.jsonl.
        std::fs::write(d.path().join("tmp"), "a\n").expect("write");
        std::fs::rename(d.path().join("tmp"), &p).expect("rename");
        assert_eq!(t.read_new(), NewLines { restarted: true, lines: vec!["a".into()] });
    }

    #[test]
    fn reads_in_bounded_batches() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("m.jsonl");
        std::fs::write(&p, "aa\nbb\ncc\n").expect("write");
        let mut t = Tail::new(&p);
        assert_eq!(t.read_some(4).lines, ["aa"], "the half line read waits for the next batch");
        assert_eq!(t.read_some(4).lines, ["bb"]);
        assert_eq!(t.read_some(4).lines, ["cc"]);
        assert!(t.read_some(4).lines.is_empty());
        std::fs::OpenOptions::new().append(true).open(&p).expect("open").write_all(b"dd\nee").expect("append");
        assert_eq!(t.read_chunk(100).bytes, b"dd\n");
    }
}
