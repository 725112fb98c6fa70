//! `dino train --exclude FILE`: images a person decided to leave out (the Outliers tab's export,
//! or any list of paths). One path per line, relative to the data set root or absolute; blank
//! lines and `#` comments are ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The listed paths, resolved against `root`.
pub fn read_list(file: &Path, root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let text = crate::files::read_to_string(file)?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| root.join(l)).collect())
}

/// What excluding did: the files kept, how many were removed, and listed paths that matched no file.
#[derive(Debug, PartialEq)]
pub struct Excluded {
    pub kept: Vec<PathBuf>,
    pub removed: usize,
    pub unmatched: Vec<PathBuf>,
}

/// Removes exactly the listed files from `files`, keeping the order of the rest.
pub fn apply(files: Vec<PathBuf>, listed: &[PathBuf]) -> Excluded {
    let set: HashSet<&Path> = listed.iter().map(PathBuf::as_path).collect();
    let before = files.len();
    let present: HashSet<PathBuf> = files.iter().filter(|f| set.contains(f.as_path())).cloned().collect();
    let kept: Vec<PathBuf> = files.into_iter().filter(|f| !set.contains(f.as_path())).collect();
    let unmatched = listed.iter().filter(|p| !present.contains(*p)).cloned().collect();
    Excluded { removed: before - kept.len(), kept, unmatched }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_listed_files_go_relative_or_absolute() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let files: Vec<PathBuf> =
            ["pretext/a.png", "pretext/b.png", "pretext/sub/c.png", "pretext/d.png"].iter().map(|p| root.join(p)).collect();
        let list = root.join("exclude.txt");
        let absolute = root.join("pretext/d.png");
        std::fs::write(
            &list,
            format!("# reviewed 2026-11-28\npretext/b.png\n\n  pretext/sub/c.png  \n{}\npretext/missing.png\n", absolute.display()),
        )
        .unwrap();
        let listed = read_list(&list, root).unwrap();
        assert_eq!(listed.len(), 4);
        let e = apply(files.clone(), &listed);
        assert_eq!(e.kept, vec![files[0].clone()]);
        assert_eq!(e.removed, 3);
        assert_eq!(e.unmatched, vec![root.join("pretext/missing.png")]);
        assert_eq!(apply(files.clone(), &[]).kept, files, "an empty list keeps everything");
    }
}
