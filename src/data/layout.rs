//! Where the images of a data set are. The project layout is `pretext/` (unlabeled, any depth)
//! for self-supervised training and `train/CLASS/`, `val/CLASS/` for evaluation; a plain
//! ImageFolder root (class folders only) also trains, on all of its images.
//!
//! Only regular files are images: a FIFO, socket or device with an image's name is left out and
//! named (reading a FIFO blocks for good). Symbolic links to folders are followed once each; one
//! that leads back to a folder it sits in (`sub -> .`, `up -> ..`) is a loop, left out and named,
//! so the data set neither multiplies nor takes in `val/` through `pretext/up`.
//!
//! A labeled folder without `pretext/` (`train/CLASS/`, `val/CLASS/`) trains on `train/`'s images,
//! and `val/`'s classes are matched to `train/`'s by name (`classes`).

use super::decode::file_kind;
use super::DataError;
use crate::files::ShowPath;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// One list of images, with labels when it comes from class folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub name: String,
    pub root: PathBuf,
    pub files: Vec<PathBuf>,
    /// Index into `classes` for each file; all zeros when the split is unlabeled.
    pub labels: Vec<usize>,
    /// Sorted class folder names; empty when the split is unlabeled.
    pub classes: Vec<String>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn is_labeled(&self) -> bool {
        !self.classes.is_empty()
    }

    /// Number of images of each class, in `classes` order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }

    /// The images at `rows`, in that order (the readable images of an evaluation, a draw of labels).
    pub fn subset(&self, rows: &[usize]) -> Split {
        Split {
            name: self.name.clone(),
            root: self.root.clone(),
            files: rows.iter().map(|&i| self.files[i].clone()).collect(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
        }
    }
}

/// Something discovery left out, and why: named in `events.jsonl` like an unreadable image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLayout {
    root: PathBuf,
    pretext: Split,
    train: Option<Split>,
    val: Option<Split>,
    left_out: Vec<LeftOut>,
    /// Classes found on one side of train/val only, named.
    warnings: Vec<String>,
}

impl DataLayout {
    pub fn discover(root: &Path) -> Result<DataLayout, DataError> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => return Err(DataError::NotAFolder { path: root.to_path_buf(), kind: file_kind(m.file_type()) }),
            Err(_) => return Err(DataError::MissingRoot(root.to_path_buf())),
        }
        let mut left_out = Vec::new();
        let train = discover_optional_classes(&root.join("train"), "train", &mut left_out)?;
        let val = discover_optional_classes(&root.join("val"), "val", &mut left_out)?;
        let (val, warnings) = match (&train, val) {
            (Some(t), Some(v)) => {
                let (v, w) = super::classes::match_by_name(t, v)?;
                (Some(v), w)
            }
            (_, v) => (v, Vec::new()),
        };
        let pretext_dir = root.join("pretext");
        let pretext = if pretext_dir.is_dir() {
            let files = list_images(&pretext_dir, &mut left_out)?;
            if files.is_empty() {
                return Err(DataError::EmptySplit { split: "pretext".into(), path: pretext_dir });
            }
            let labels = vec![0; files.len()];
            Split { name: "pretext".into(), root: pretext_dir, files, labels, classes: Vec::new() }
        } else {
            let classes = discover_classes(root, "pretext", &mut left_out)?;
            match (&train, classes.is_empty()) {
                (_, false) => classes,
                // train/ + val/ without pretext/: the self-supervised images are train/'s, unlabeled.
                (Some(t), true) => Split { name: "pretext".into(), labels: vec![0; t.len()], classes: Vec::new(), ..t.clone() },
                (None, true) => return Err(DataError::NoImages(root.to_path_buf())),
            }
        };
        Ok(DataLayout { root: root.to_path_buf(), pretext, train, val, left_out, warnings })
    }

    /// As `discover`, and a folder of images with no class folders (at any depth, loose images in
    /// the root included) is one unlabeled `pretext` split: what scoring strangers needs.
    pub fn discover_any(root: &Path) -> Result<DataLayout, DataError> {
        // Images lying in the root itself mean it is not an ImageFolder (as `every_image` reads it).
        let project = ["pretext", "train"].iter().any(|s| root.join(s).is_dir());
        let loose = !project && root.is_dir() && read_dir_sorted(root)?.iter().any(|p| p.is_file() && has_image_extension(p));
        match Self::discover(root) {
            Err(DataError::NoImages(_)) | Ok(_) if loose => {
                let mut left_out = Vec::new();
                let pretext = unlabeled(root, "pretext", &mut left_out)?;
                if pretext.is_empty() {
                    return Err(DataError::NoImages(root.to_path_buf()));
                }
                Ok(DataLayout { root: root.to_path_buf(), pretext, train: None, val: None, left_out, warnings: Vec::new() })
            }
            other => other,
        }
    }

    /// A split by name: `train` is an ImageFolder root's class folders when there is no `train/`.
    pub fn split_named(&self, name: &str) -> Option<&Split> {
        match name {
            "train" => self.train.as_ref().or(Some(&self.pretext).filter(|p| p.is_labeled())),
            "val" => self.val.as_ref(),
            "pretext" => Some(&self.pretext),
            _ => None,
        }
    }

    /// Classes present in train/ or val/ only, one warning each side, with their names.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Entries with an image's name that are not images (FIFOs, sockets, devices, broken links)
    /// and symbolic-link loops, in discovery order.
    pub fn left_out(&self) -> &[LeftOut] {
        &self.left_out
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The self-supervised training images (always present once discovered).
    pub fn pretext(&self) -> &Split {
        &self.pretext
    }

    pub fn train(&self) -> Option<&Split> {
        self.train.as_ref()
    }

    pub fn val(&self) -> Option<&Split> {
        self.val.as_ref()
    }

    /// Counts per split and class, one line each, for logs and the TUI.
    pub fn summary(&self) -> String {
        let mut s = format!("data set {}\n", self.root.shown());
        for split in [Some(&self.pretext), self.train.as_ref(), self.val.as_ref()].into_iter().flatten() {
            let _ = write!(s, "  {:<8} {:>7} images", split.name, split.len());
            if split.is_labeled() {
                let per_class: Vec<String> = split.classes.iter().zip(split.class_counts()).map(|(c, n)| format!("{c} {n}")).collect();
                let _ = write!(s, " in {} classes: {}", split.classes.len(), per_class.join(", "));
            }
            s.push('\n');
        }
        if self.train.is_none() || self.val.is_none() {
            s.push_str("  (no train/ or val/ class folders: k-NN and linear evaluation unavailable)\n");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        s
    }
}

/// Every image under `root`, split as its folders say, for commands that look at all of them
/// (`dino embed`): the project layout's `pretext/` (unlabeled), `train/CLASS/` and `val/CLASS/`,
/// each as present and in that order; else an ImageFolder root's class folders (split `images`);
/// else, when images lie in the root itself or no folder holds any, every image at any depth,
/// unlabeled.
pub fn every_image(root: &Path) -> Result<Vec<Split>, DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingRoot(root.to_path_buf()));
    }
    // What is left out (FIFOs, link loops) is logged here: these commands have no events file.
    let mut left_out = Vec::new();
    let mut splits = Vec::new();
    let pretext = root.join("pretext");
    if pretext.is_dir() {
        splits.push(unlabeled(&pretext, "pretext", &mut left_out)?);
    }
    for name in ["train", "val"] {
        let dir = root.join(name);
        if dir.is_dir() {
            splits.push(discover_classes(&dir, name, &mut left_out)?);
        }
    }
    splits.retain(|s| !s.is_empty());
    if splits.is_empty() {
        // Images lying in the root itself mean it is not an ImageFolder (which would skip them).
        let loose = read_dir_sorted(root)?.iter().any(|p| p.is_file() && has_image_extension(p));
        let classes = if loose { None } else { Some(discover_classes(root, "images", &mut left_out)?).filter(|c| !c.is_empty()) };
        splits.push(match classes {
            Some(c) => c,
            None => unlabeled(root, "images", &mut left_out)?,
        });
    }
    for o in &left_out {
        tracing::warn!("left out {}: {}", o.path.shown(), o.reason);
    }
    if splits.iter().all(Split::is_empty) {
        return Err(DataError::NoImages(root.to_path_buf()));
    }
    Ok(splits)
}

fn unlabeled(dir: &Path, name: &str, left_out: &mut Vec<LeftOut>) -> Result<Split, DataError> {
    let files = list_images(dir, left_out)?;
    Ok(Split { name: name.into(), root: dir.to_path_buf(), labels: vec![0; files.len()], files, classes: Vec::new() })
}

fn discover_optional_classes(dir: &Path, name: &str, left_out: &mut Vec<LeftOut>) -> Result<Option<Split>, DataError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let split = discover_classes(dir, name, left_out)?;
    if split.is_empty() {
        return Err(DataError::EmptySplit { split: name.into(), path: dir.to_path_buf() });
    }
    Ok(Some(split))
}

/// Class folders of `dir`, sorted by name so label indices are the same on every machine. Loose
/// images directly in `dir` belong to no class and are ignored, as torchvision's ImageFolder does.
fn discover_classes(dir: &Path, name: &str, left_out: &mut Vec<LeftOut>) -> Result<Split, DataError> {
    let mut class_dirs: Vec<(String, PathBuf)> = read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            // The project's own split folders are not classes of an ImageFolder root.
            (!name.starts_with('.') && !matches!(name.as_str(), "train" | "val" | "pretext")).then_some((name, p))
        })
        .collect();
    class_dirs.sort();
    let mut split = Split { name: name.into(), root: dir.to_path_buf(), files: Vec::new(), labels: Vec::new(), classes: Vec::new() };
    for (class, path) in class_dirs {
        let files = list_images(&path, left_out)?;
        if files.is_empty() {
            continue;
        }
        let label = split.classes.len();
        split.classes.push(class);
        split.labels.extend(std::iter::repeat_n(label, files.len()));
        split.files.extend(files);
    }
    Ok(split)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        entries.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    entries.sort();
    Ok(entries)
}

/// Images under `dir` at any depth, in sorted path order: regular files with an image's
/// extension. Each folder is listed once however many links lead to it; a link back to a folder
/// it sits in is a loop.
fn list_images(dir: &Path, left_out: &mut Vec<LeftOut>) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let root_meta = fs::metadata(dir).map_err(|e| DataError::io(dir, e))?;
    let mut listed: HashSet<(u64, u64)> = HashSet::from([(root_meta.dev(), root_meta.ino())]);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match read_dir_sorted(&d) {
            Ok(entries) => entries,
            Err(e) if d.as_path() == dir => return Err(e),
            // A folder below that cannot be listed (mode 000) is skipped and named, as an
            // unreadable file is; it does not refuse the whole data set.
            Err(e) => {
                let why = match &e {
                    DataError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                left_out.push(LeftOut { path: d.clone(), reason: format!("cannot read the folder: {why}") });
                continue;
            }
        };
        for p in entries {
            let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            let leave = |reason: String| LeftOut { path: p.clone(), reason };
            let meta = match fs::metadata(&p) {
                Ok(m) => m,
                Err(e) if has_image_extension(&p) || e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                    left_out.push(leave(unreadable_reason(&e)));
                    continue;
                }
                Err(_) => continue,
            };
            if meta.is_dir() {
                if let Some(reason) = folder_loop(&d, &p) {
                    left_out.push(leave(reason));
                } else if listed.insert((meta.dev(), meta.ino())) {
                    stack.push(p);
                }
            } else if has_image_extension(&p) {
                if meta.is_file() {
                    out.push(p);
                } else {
                    left_out.push(leave(format!("not a regular file ({})", file_kind(meta.file_type()))));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Why an entry cannot be read, for `LeftOut`: a path past the system's limit says so (it
/// was once silently not found).
fn unreadable_reason(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        format!("cannot read it: its path is longer than the system allows (PATH_MAX, {} bytes)", libc::PATH_MAX)
    } else {
        format!("cannot read it: {e}")
    }
}

/// Why the folder `p` (listed in `parent`) would be a loop: a symbolic link to `parent` itself or
/// to one of its ancestors. None for a plain folder or a link elsewhere.
fn folder_loop(parent: &Path, p: &Path) -> Option<String> {
    let is_link = fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return None;
    }
    let target = fs::canonicalize(p).ok()?;
    let here = fs::canonicalize(parent).ok()?;
    here.starts_with(&target).then(|| format!("symbolic-link loop: it leads back to {}, a folder it sits in", target.shown()))
}

pub(crate) fn has_image_extension(p: &Path) -> bool {
    p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn project_layout_is_discovered_sorted_and_labeled() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["pretext/b.jpg", "pretext/a.PNG", "pretext/sub/deeper/c.webp", "pretext/notes.txt"] {
            touch(r, f);
        }
        for f in ["train/zebra/1.jpg", "train/ant/2.jpeg", "train/ant/1.tiff", "val/ant/x.bmp", "val/zebra/y.gif"] {
            touch(r, f);
        }
        let l = DataLayout::discover(r).unwrap();
        let names: Vec<_> = l.pretext().files.iter().map(|p| p.strip_prefix(r).unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["pretext/a.PNG", "pretext/b.jpg", "pretext/sub/deeper/c.webp"]);
        let t = l.train().unwrap();
        assert_eq!(t.classes, ["ant", "zebra"]);
        assert_eq!(t.labels, [0, 0, 1]);
        assert!(t.files[0].ends_with("ant/1.tiff"));
        assert_eq!(t.class_counts(), [2, 1]);
        assert_eq!(l.val().unwrap().labels, [0, 1]);
        let s = l.summary();
        assert!(s.contains("pretext") && s.contains("3 images") && s.contains("ant 2, zebra 1"), "{s}");
    }

    #[test]
    fn a_labeled_folder_without_pretext_trains_on_train_and_matches_val_by_name() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["train/car/1.jpg", "train/ship/2.jpg", "val/boat/3.jpg", "val/car/4.jpg", "val/ship/5.jpg"] {
            touch(r, f);
        }
        let l = DataLayout::discover(r).unwrap();
        assert_eq!(l.pretext().len(), 2, "pretext/ is train/'s images");
        assert!(!l.pretext().is_labeled());
        let v = l.val().unwrap();
        assert_eq!(v.classes, ["car", "ship"]);
        assert_eq!(v.labels, [0, 1], "val/car is train's class 0 whatever val/boat shifts");
        assert!(l.warnings()[0].contains("boat"), "{:?}", l.warnings());
        assert!(l.summary().contains("warning"), "{}", l.summary());
        assert_eq!(l.split_named("train").unwrap().name, "train");
    }

    #[test]
    fn discover_any_takes_an_unlabeled_folder_and_split_named_an_image_folder() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "x.jpg");
        touch(d.path(), "deep/y.jpg");
        let l = DataLayout::discover_any(d.path()).unwrap();
        assert_eq!(l.pretext().len(), 2);
        assert!(l.split_named("train").is_none(), "no labels");
        let f = tempfile::tempdir().unwrap();
        touch(f.path(), "cats/a.jpg");
        touch(f.path(), "dogs/b.jpg");
        let l = DataLayout::discover_any(f.path()).unwrap();
        assert_eq!(l.split_named("train").unwrap().classes, ["cats", "dogs"], "an ImageFolder's classes");
    }

    #[test]
    fn image_folder_root_trains_on_all_class_images() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "dogs/a.jpg");
        touch(d.path(), "cats/b.jpg");
        touch(d.path(), "cats/c.jpg");
        touch(d.path(), "empty/readme.md");
        let l = DataLayout::discover(d.path()).unwrap();
        assert_eq!(l.pretext().len(), 3);
        assert_eq!(l.pretext().classes, ["cats", "dogs"]);
        assert!(l.train().is_none() && l.val().is_none());
        assert!(l.summary().contains("evaluation unavailable"));
    }

    #[test]
    fn every_image_follows_whatever_layout_there_is() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["train/b/1.jpg", "train/a/2.jpg", "val/a/3.jpg"] {
            touch(r, f);
        }
        let s = every_image(r).unwrap();
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["train", "val"], "no pretext/ needed");
        assert_eq!(s[0].classes, ["a", "b"]);
        touch(r, "pretext/deep/er/4.png");
        assert_eq!(every_image(r).unwrap()[0].name, "pretext");
        let loose = tempfile::tempdir().unwrap();
        touch(loose.path(), "x.jpg");
        touch(loose.path(), "sub/y.jpg");
        let s = every_image(loose.path()).unwrap();
        assert_eq!(s.len(), 1);
        assert!(!s[0].is_labeled(), "loose images in the root: not an ImageFolder");
        assert_eq!(s[0].len(), 2);
        let empty = tempfile::tempdir().unwrap();
        assert!(every_image(empty.path()).is_err());
    }

    #[test]
    fn special_files_and_link_loops_are_left_out_and_named() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["pretext/a.jpg", "pretext/sub/b.jpg", "val/cat/v.jpg", "train/cat/t.jpg"] {
            touch(r, f);
        }
        let fifo = r.join("pretext/x.jpg");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink(".", r.join("pretext/sub/again")).unwrap();
        std::os::unix::fs::symlink("..", r.join("pretext/up")).unwrap();
        std::os::unix::fs::symlink("nowhere.jpg", r.join("pretext/broken.jpg")).unwrap();
        // A link to a folder outside is followed, once, however many links lead there.
        touch(r, "elsewhere/e.jpg");
        std::os::unix::fs::symlink(r.join("elsewhere"), r.join("pretext/ext1")).unwrap();
        std::os::unix::fs::symlink(r.join("elsewhere"), r.join("pretext/ext2")).unwrap();
        let l = DataLayout::discover(r).unwrap();
        let names: Vec<_> = l.pretext().files.iter().map(|p| p.strip_prefix(r).unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["pretext/a.jpg", "pretext/ext1/e.jpg", "pretext/sub/b.jpg"], "val/ stays out of pretext/");
        let left: Vec<_> =
            l.left_out().iter().map(|o| (o.path.file_name().unwrap().to_string_lossy().into_owned(), o.reason.clone())).collect();
        for (name, why) in [("x.jpg", "FIFO"), ("again", "loop"), ("up", "loop"), ("broken.jpg", "cannot read")] {
            assert!(left.iter().any(|(n, r)| n == name && r.contains(why)), "{name}: {left:?}");
        }
    }

    #[test]
    fn a_data_path_that_is_a_file_says_so() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "data.tar");
        let e = DataLayout::discover(&d.path().join("data.tar")).unwrap_err().to_string();
        assert!(e.contains("data.tar") && e.contains("not a folder") && e.contains("regular file"), "{e}");
    }

    #[test]
    fn missing_root_names_the_path() {
        let e = DataLayout::discover(Path::new("/no/such/dir")).unwrap_err().to_string();
        assert!(e.contains("/no/such/dir") && e.contains("does not exist"), "{e}");
    }

    #[test]
    fn root_without_pretext_or_classes_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "loose.jpg");
        let e = DataLayout::discover(d.path()).unwrap_err().to_string();
        assert!(e.contains(&d.path().display().to_string()) && e.contains("pretext/"), "{e}");
    }

    #[test]
    fn empty_pretext_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "pretext/readme.txt");
        touch(d.path(), "train/a/1.jpg");
        let e = DataLayout::discover(d.path()).unwrap_err().to_string();
        assert!(e.contains("pretext split") && e.contains(&d.path().join("pretext").display().to_string()), "{e}");
    }

    #[test]
    fn empty_val_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "pretext/1.jpg");
        fs::create_dir_all(d.path().join("val/a")).unwrap();
        let e = DataLayout::discover(d.path()).unwrap_err().to_string();
        assert!(e.contains("val split") && e.contains("val"), "{e}");
    }
}
