//! Pairs the class folders of `val/` with those of `train/` by name, not by sorted position: a
//! `val/` with one extra (or one missing) folder would otherwise shift every label after it and
//! score near zero with no word of why. Classes on one side only are named in a warning; images
//! of a val class train does not have are left out of evaluation (no classifier can name them).

use super::{DataError, Split};
use crate::files::ShowPath;

/// `val` relabelled in `train`'s class indices (its `classes` become train's), and the warnings
/// naming classes present on one side only. An error when no class is shared.
pub fn match_by_name(train: &Split, val: Split) -> Result<(Split, Vec<String>), DataError> {
    if train.classes == val.classes {
        return Ok((val, Vec::new()));
    }
    let index = |c: &String| train.classes.iter().position(|t| t == c);
    let val_only: Vec<&String> = val.classes.iter().filter(|c| index(c).is_none()).collect();
    let train_only: Vec<&String> = train.classes.iter().filter(|c| !val.classes.contains(c)).collect();
    let list = |v: &[&String]| v.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
    if val_only.len() == val.classes.len() {
        return Err(DataError::NoCommonClass {
            train: train.root.clone(),
            val: val.root.clone(),
            train_classes: train.classes.join(", "),
            val_classes: val.classes.join(", "),
        });
    }
    let mut out = Split { classes: train.classes.clone(), files: Vec::new(), labels: Vec::new(), ..val.clone() };
    let mut left = 0;
    for (f, &l) in val.files.iter().zip(&val.labels) {
        match val.classes.get(l).and_then(index) {
            Some(t) => {
                out.files.push(f.clone());
                out.labels.push(t);
            }
            None => left += 1,
        }
    }
    let mut warnings = Vec::new();
    if !val_only.is_empty() {
        warnings.push(format!(
            "val/ class(es) {} have no folder in train/: their {left} images are left out of evaluation ({})",
            list(&val_only),
            val.root.shown()
        ));
    }
    if !train_only.is_empty() {
        warnings.push(format!(
            "train/ class(es) {} have no folder in val/: accuracy counts only the classes val/ has ({})",
            list(&train_only),
            val.root.shown()
        ));
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn split(name: &str, classes: &[&str], per: usize) -> Split {
        let mut s = Split { name: name.into(), root: PathBuf::from(name), files: vec![], labels: vec![], classes: vec![] };
        for (i, c) in classes.iter().enumerate() {
            s.classes.push(c.to_string());
            for j in 0..per {
                s.files.push(PathBuf::from(format!("{name}/{c}/{j}.png")));
                s.labels.push(i);
            }
        }
        s
    }

    #[test]
    fn an_extra_val_class_is_left_out_and_named_and_the_rest_keep_their_names() {
        let train = split("train", &["car", "ship"], 2);
        let val = split("val", &["boat", "car", "ship"], 2);
        let (v, w) = match_by_name(&train, val).unwrap();
        assert_eq!(v.classes, ["car", "ship"]);
        assert_eq!(v.labels, [0, 0, 1, 1], "car and ship keep their train indices");
        assert!(v.files[0].ends_with("car/0.png"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("boat") && w[0].contains("2 images"), "{w:?}");
    }

    #[test]
    fn a_missing_val_class_is_a_warning_and_no_shared_class_an_error() {
        let train = split("train", &["car", "plane", "ship"], 1);
        let (v, w) = match_by_name(&train, split("val", &["car", "ship"], 1)).unwrap();
        assert_eq!(v.labels, [0, 2]);
        assert!(w[0].contains("plane"), "{w:?}");
        let e = match_by_name(&train, split("val", &["cat"], 1)).unwrap_err().to_string();
        assert!(e.contains("cat") && e.contains("car, plane, ship"), "{e}");
        let same = split("val", &["car", "plane", "ship"], 1);
        assert!(match_by_name(&train, same.clone()).unwrap().1.is_empty());
    }
}
