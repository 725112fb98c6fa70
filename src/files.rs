//! Files by name, the one way the program opens them (issue 37): a file read by name must be a
//! regular file, an output path that is a device or a link is written through and never
//! replaced, and a path shown to a person has its control characters escaped.
//!
//! Why each: `open()` of a FIFO blocks until a writer comes, for good (a FIFO in place of a
//! config, an exclude list, `events.jsonl` or the run index hung the program); a temporary file
//! renamed over `/dev/stdout` (a link to the terminal) replaces the device; and a file named
//! `\e]2;PWNED\a.jpg` printed raw drives the terminal that shows the message.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a file that is not a regular file is, for messages.
pub fn file_kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// The error of a file that is not a regular file; callers name the path, as for any io error.
fn not_regular(t: FileType) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("not a regular file ({})", file_kind(t)))
}

/// Opens a regular file for reading. Opened with `O_NONBLOCK`, so a FIFO or a device cannot
/// block the open, and checked on the open descriptor, so a file swapped after a check is not
/// read. (`O_NONBLOCK` changes nothing for reads of a regular file.)
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let t = f.metadata()?.file_type();
    if t.is_file() {
        Ok(f)
    } else {
        Err(not_regular(t))
    }
}

/// Opens a regular file for appending, creating it with `mode` (less the umask) when new. A
/// FIFO or a device in its place is refused before the open, which would block on a FIFO
/// until a reader comes, and on the descriptor after it.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    if let Ok(m) = std::fs::metadata(path) {
        if !m.file_type().is_file() {
            return Err(not_regular(m.file_type()));
        }
    }
    let f = OpenOptions::new().create(true).append(true).mode(mode).custom_flags(libc::O_NONBLOCK).open(path)?;
    let t = f.metadata()?.file_type();
    if t.is_file() {
        Ok(f)
    } else {
        Err(not_regular(t))
    }
}

/// `std::fs::read` for regular files only.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_regular(path)?;
    let mut bytes = Vec::with_capacity(f.metadata().map(|m| m.len() as usize).unwrap_or(0));
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `std::fs::read_to_string` for regular files only.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")))
}

/// A path for a message: as `Path::display`, with control characters (an escape sequence, a
/// bell, a line break) written as `\x1b`, `\u{9b}`, ... so a file name cannot drive the terminal
/// or forge a line of output.
pub struct Shown<'a>(&'a Path);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&escape_controls(&self.0.to_string_lossy()))
    }
}

/// `text` with its control characters escaped (`\x1b`, `\x07`, `\u{9b}`); the rest as is.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `path.shown()`: the one way a message names a path (see `Shown`).
pub trait ShowPath {
    fn shown(&self) -> Shown<'_>;
}

impl ShowPath for Path {
    fn shown(&self) -> Shown<'_> {
        Shown(self)
    }
}

impl ShowPath for PathBuf {
    fn shown(&self) -> Shown<'_> {
        Shown(self.as_path())
    }
}

/// Where an output path's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A regular file or a new path (possibly the regular file a link points to): written
    /// whole or not at all, through a temporary file renamed over it.
    Replace(PathBuf),
    /// A device, a FIFO, or a link to one (`/dev/stdout`, `/dev/null`): written into as it
    /// is, never replaced. Side files (a second output named after this one) have no place.
    Through(PathBuf),
}

impl Target {
    /// What `path` is as an output; a folder is refused, with what it is.
    pub fn of(path: &Path) -> io::Result<Target> {
        let meta = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Target::Replace(path.to_path_buf())),
            other => other?,
        };
        if meta.file_type().is_symlink() {
            return Self::of_link(path);
        }
        Self::of_type(path, meta.file_type())
    }

    /// A link is never replaced: the file it points to is the output.
    fn of_link(path: &Path) -> io::Result<Target> {
        match std::fs::metadata(path) {
            // A dangling link: writing through it creates the file it names.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Target::Through(path.to_path_buf())),
            Err(e) => Err(e),
            Ok(m) if m.file_type().is_file() => Ok(Target::Replace(std::fs::canonicalize(path)?)),
            Ok(m) => Self::of_type(path, m.file_type()),
        }
    }

    fn of_type(path: &Path, t: FileType) -> io::Result<Target> {
        if t.is_file() {
            Ok(Target::Replace(path.to_path_buf()))
        } else if t.is_dir() {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "is a folder, not a file to write"))
        } else {
            Ok(Target::Through(path.to_path_buf()))
        }
    }

    /// True for a regular file or a new path: side files may go beside it.
    pub fn is_file(&self) -> bool {
        matches!(self, Target::Replace(_))
    }
}

/// An output being written: `commit` makes it whole (a rename for a file; nothing more for a
/// device). Dropped without `commit`, a file's temporary is removed and the old file stays.
pub struct Output {
    pub file: File,
    tmp: Option<PathBuf>,
    path: PathBuf,
}

/// `NAME.tmp` beside `path`: the temporary an atomic write renames over it.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

impl Output {
    /// Starts writing `path` (see `Target`); errors are io errors without the path, as usual.
    pub fn create(path: &Path) -> io::Result<Output> {
        match Target::of(path)? {
            Target::Replace(p) => {
                let tmp = tmp_path(&p);
                let file = File::create(&tmp)?;
                Ok(Output { file, tmp: Some(tmp), path: p })
            }
            Target::Through(p) => {
                let file = OpenOptions::new().write(true).create(true).truncate(false).open(&p)?;
                Ok(Output { file, tmp: None, path: p })
            }
        }
    }

    /// The file the bytes end up in (a link's target for a link to a file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and puts the output in place: fsync, rename, fsync of the folder for a file.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.flush()?;
        let Some(tmp) = self.tmp.take() else { return Ok(()) };
        let done = self.file.sync_all().and_then(|()| std::fs::rename(&tmp, &self.path));
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done?;
        sync_parent(&self.path);
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes `bytes` to `path` whole (see `Output`).
pub fn write_output(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut out = Output::create(path)?;
    out.file.write_all(bytes)?;
    out.commit()
}

/// Writes `path` with `write`, which makes a whole file at the path it is given (a library that
/// writes only by name): a temporary beside a regular file, renamed over it when complete; for
/// a device or a link to one, a temporary in the system's temporary folder (never beside the
/// device: no `/dev/stdout.tmp`), copied into the device and removed.
pub fn write_output_via<E: From<io::Error>>(path: &Path, write: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    let target = Target::of(path)?;
    let tmp = match &target {
        Target::Replace(p) => tmp_path(p),
        Target::Through(_) => private_tmp()?,
    };
    let done = write(&tmp).and_then(|()| Ok(finish(&tmp, &target)?));
    let _ = std::fs::remove_file(&tmp);
    done
}

/// A new empty file of our own in the temporary folder (mode 0600).
fn private_tmp() -> io::Result<PathBuf> {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("dino-output-{}-{n}.tmp", std::process::id()));
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p)?;
    Ok(p)
}

fn finish(tmp: &Path, target: &Target) -> io::Result<()> {
    match target {
        Target::Replace(p) => {
            File::open(tmp)?.sync_all()?;
            std::fs::rename(tmp, p)?;
            sync_parent(p);
        }
        Target::Through(p) => {
            let mut out = OpenOptions::new().write(true).create(true).truncate(false).open(p)?;
            io::copy(&mut File::open(tmp)?, &mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Makes a rename durable; best effort, as some filesystems refuse to open folders.
pub fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
}

/// A name a path of a run may have: one plain component, so that `root.join(name)` stays in
/// `root` (no `/`, no `..`, not hidden, no control characters). The error says why not ("it
/// contains '/'"); the caller names the setting.
pub fn check_plain_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.contains('/') {
        "contains '/'"
    } else if name == "." || name == ".." {
        "is '.' or '..'"
    } else if name.starts_with('.') {
        "starts with '.'"
    } else if name.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(format!("it {why}"))
}

/// `root.join(rel)` when `rel` is a relative path of plain components (no `..`, not absolute):
/// a path a run file names stays inside the run.
pub fn confined(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    use std::path::Component;
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{} leaves {} (only names inside it are accepted)", rel.shown(), root.shown()));
    }
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(p: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn only_regular_files_are_read_and_a_fifo_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("f.toml");
        mkfifo(&fifo);
        let e = read_to_string(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file (a FIFO)"), "{e}");
        let e = read(d.path()).unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
        std::fs::write(d.path().join("a"), "x").unwrap();
        assert_eq!(read_to_string(&d.path().join("a")).unwrap(), "x");
    }

    #[test]
    fn control_characters_are_escaped() {
        let p = Path::new("/d/\u{1b}]2;PWNED\u{7}\u{1b}[2J\u{9b}x.jpg");
        assert_eq!(p.shown().to_string(), "/d/\\x1b]2;PWNED\\x07\\x1b[2J\\u{9b}x.jpg");
        assert_eq!(Path::new("/plain/é.jpg").shown().to_string(), "/plain/é.jpg");
    }

    #[test]
    fn devices_and_links_are_written_through_and_files_replaced() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Target::of(Path::new("/dev/null")).unwrap(), Target::Through("/dev/null".into()));
        let link = d.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        write_output(&link, b"gone").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
        let file = d.path().join("f.csv");
        std::fs::write(&file, "old").unwrap();
        let to_file = d.path().join("to-f");
        std::os::unix::fs::symlink(&file, &to_file).unwrap();
        write_output(&to_file, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&to_file).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        assert!(Target::of(d.path()).is_err());
    }

    #[test]
    fn names_and_run_paths_stay_inside() {
        for bad in ["../../escape_run", "a/b", "..", ".hidden", "x\u{1b}[2J", ""] {
            assert!(check_plain_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_plain_name("mine-2").is_ok());
        let root = Path::new("/r/checkpoints");
        assert!(confined(root, Path::new("../../../../x.safetensors")).is_err());
        assert!(confined(root, Path::new("/etc/passwd")).is_err());
        assert_eq!(confined(root, Path::new("state.safetensors")).unwrap(), root.join("state.safetensors"));
    }
}
