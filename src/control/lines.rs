//! Reading JSON lines with a length limit, so a peer that never sends a newline cannot make the
//! reader buffer without bound.

use std::io::{BufRead, Read};

/// Longest message either side accepts. Commands are tens of bytes and events a few hundred; a
/// `Schedules` event for a long run is the largest and stays well under this.
pub const MAX_LINE: usize = 64 * 1024;

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
