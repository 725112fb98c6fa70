//! Copying to the clipboard through the terminal (OSC 52, crossterm's `CopyToClipboard`), which
//! also works over SSH: the local terminal emulator, not the remote machine, owns the clipboard.

use crossterm::clipboard::CopyToClipboard;
use std::io::Write;

pub fn copy(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    crossterm::execute!(out, CopyToClipboard::to_clipboard_from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_osc52_sequence_with_base64_text() {
        let mut out = Vec::new();
        copy(&mut out, "foo").unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("\x1b]52;") && s.contains("Zm9v"), "{s:?}");
    }
}
