//! Reading JSON lines with a length limit, so a peer that never sends a newline cannot make the
//! reader buffer without bound.

use std::io::{BufRead, Read};

pub use crate::protocol::MAX_LINE;

#[derive(Debug, PartialEq)]
pub enum Line {
    /// A complete line, newline stripped.
    Text(Vec<u8>),
    /// The peer closed the connection cleanly.
    Eof,
    /// The peer closed in the middle of a line (killed mid-message); these bytes were pending.
    Truncated(Vec<u8>),
    /// The line is longer than the limit; the connection cannot be resynchronised cheaply.
    TooLong,
}

/// Bytes received but not yet a whole line, for a reader that reads with a timeout (and so must
/// not lose half a message when a read times out).
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete line (newline and a `\r` before it stripped), `Line::TooLong` when the
    /// pending bytes hold no newline within `max`, None when a line is not complete yet.
    pub fn next_line(&mut self, max: usize) -> Option<Line> {
        match self.pending.iter().position(|b| *b == b'\n') {
            Some(pos) if pos <= max => {
                let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(Line::Text(line))
            }
            Some(_) => Some(Line::TooLong),
            None if self.pending.len() > max => Some(Line::TooLong),
            None => None,
        }
    }

    /// Whether part of a line is waiting for its end.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

pub fn read_line(r: &mut impl BufRead, max: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(max as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Line::Text(buf));
    }
    if buf.len() > max {
        return Ok(Line::TooLong);
    }
    Ok(Line::Truncated(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_keeps_partial_lines_and_limits_them() {
        let mut b = LineBuffer::default();
        b.push(b"{\"a\":1}\r\n{\"b\"");
        assert_eq!(b.next_line(16), Some(Line::Text(b"{\"a\":1}".to_vec())));
        assert_eq!(b.next_line(16), None);
        assert!(b.has_partial());
        b.push(b":2}\n");
        assert_eq!(b.next_line(16), Some(Line::Text(b"{\"b\":2}".to_vec())));
        assert!(!b.has_partial());
        b.push(&[b'x'; 20]);
        assert_eq!(b.next_line(16), Some(Line::TooLong));
    }

    #[test]
    fn lines_eof_truncation_and_limit() {
        let mut r = std::io::Cursor::new(b"{\"a\":1}\r\nabc".to_vec());
        assert_eq!(read_line(&mut r, 16).expect("read"), Line::Text(b"{\"a\":1}".to_vec()));
        assert_eq!(read_line(&mut r, 16).expect("read"), Line::Truncated(b"abc".to_vec()));
        assert_eq!(read_line(&mut r, 16).expect("read"), Line::Eof);
        let mut r = std::io::Cursor::new(vec![b'x'; 40]);
        assert_eq!(read_line(&mut r, 16).expect("read"), Line::TooLong);
        // Exactly the limit plus a newline is fine.
        let mut v = vec![b'y'; 16];
        v.push(b'\n');
        assert_eq!(read_line(&mut std::io::Cursor::new(v), 16).expect("read"), Line::Text(vec![b'y'; 16]));
    }
}
