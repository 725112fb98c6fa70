//! Copying to the clipboard through the terminal (OSC 52, crossterm's `CopyToClipboard`), which
//! also works over SSH: the local terminal emulator, not the remote machine, owns the clipboard.

use crossterm::clipboard::CopyToClipboard;
use std::io::Write;

/// What the footer says once `text` is handed to the terminal. A terminal never answers an OSC 52
/// request, so the words say it was sent, not that it arrived; tmux passes it on only with
/// `set-clipboard on`, which is named when running inside tmux.
pub fn sent_notice(text: &str, in_tmux: bool) -> String {
    let how = if in_tmux { "OSC 52; tmux needs `set -g set-clipboard on`" } else { "OSC 52" };
    format!("sent to the terminal's clipboard ({how}): {text}")
}

pub fn copy(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    crossterm::execute!(out, CopyToClipboard::to_clipboard_from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_says_sent_not_copied() {
        assert_eq!(sent_notice("a.jpg", false), "sent to the terminal's clipboard (OSC 52): a.jpg");
        assert!(sent_notice("a.jpg", true).contains("set-clipboard on"));
    }

    #[test]
    fn writes_the_osc52_sequence_with_base64_text() {
        let mut out = Vec::new();
        copy(&mut out, "foo").unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("\x1b]52;") && s.contains("Zm9v"), "{s:?}");
    }
}
