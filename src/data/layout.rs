//! Where the images of a data set are. The project layout is `pretext/` (unlabeled, any depth)
//! for self-supervised training and `train/CLASS/`, `val/CLASS/` for evaluation; a plain
//! ImageFolder root (class folders only) also trains, on all of its images.

use super::DataError;
use std::fmt::Write as _;
use std::fs;
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLayout {
    root: PathBuf,
    pretext: Split,
    train: Option<Split>,
    val: Option<Split>,
}

impl DataLayout {
    pub fn discover(root: &Path) -> Result<DataLayout, DataError> {
        if !root.is_dir() {
            return Err(DataError::MissingRoot(root.to_path_buf()));
        }
        let train = discover_optional_classes(&root.join("train"), "train")?;
        let val = discover_optional_classes(&root.join("val"), "val")?;
        let pretext_dir = root.join("pretext");
        let pretext = if pretext_dir.is_dir() {
            let files = list_images(&pretext_dir)?;
            if files.is_empty() {
                return Err(DataError::EmptySplit { split: "pretext".into(), path: pretext_dir });
            }
            let labels = vec![0; files.len()];
            Split { name: "pretext".into(), root: pretext_dir, files, labels, classes: Vec::new() }
        } else {
            let classes = discover_classes(root, "pretext")?;
            if classes.is_empty() {
                return Err(DataError::NoImages(root.to_path_buf()));
            }
            classes
        };
        Ok(DataLayout { root: root.to_path_buf(), pretext, train, val })
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
        let mut s = format!("data set {}\n", self.root.display());
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
    let mut splits = Vec::new();
    let pretext = root.join("pretext");
    if pretext.is_dir() {
        splits.push(unlabeled(&pretext, "pretext")?);
    }
    for name in ["train", "val"] {
        let dir = root.join(name);
        if dir.is_dir() {
            splits.push(discover_classes(&dir, name)?);
        }
    }
    splits.retain(|s| !s.is_empty());
    if splits.is_empty() {
        // Images lying in the root itself mean it is not an ImageFolder (which would skip them).
        let loose = read_dir_sorted(root)?.iter().any(|p| p.is_file() && has_image_extension(p));
        let classes = if loose { None } else { Some(discover_classes(root, "images")?).filter(|c| !c.is_empty()) };
        splits.push(match classes {
            Some(c) => c,
            None => unlabeled(root, "images")?,
        });
    }
    if splits.iter().all(Split::is_empty) {
        return Err(DataError::NoImages(root.to_path_buf()));
    }
    Ok(splits)
}

fn unlabeled(dir: &Path, name: &str) -> Result<Split, DataError> {
    let files = list_images(dir)?;
    Ok(Split { name: name.into(), root: dir.to_path_buf(), labels: vec![0; files.len()], files, classes: Vec::new() })
}

fn discover_optional_classes(dir: &Path, name: &str) -> Result<Option<Split>, DataError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let split = discover_classes(dir, name)?;
    if split.is_empty() {
        return Err(DataError::EmptySplit { split: name.into(), path: dir.to_path_buf() });
    }
    Ok(Some(split))
}

/// Class folders of `dir`, sorted by name so label indices are the same on every machine. Loose
/// images directly in `dir` belong to no class and are ignored, as torchvision's ImageFolder does.
fn discover_classes(dir: &Path, name: &str) -> Result<Split, DataError> {
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
        let files = list_images(&path)?;
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

/// Images under `dir` at any depth, in sorted path order.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in read_dir_sorted(&d)? {
            let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if has_image_extension(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
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
