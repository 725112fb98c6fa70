//! Near-duplicate pairs from copy-detection descriptors (`copy_detection`): the most similar
//! pairs of a folder, most similar first, and the groups they form when an image has more than
//! one copy (a group of three lists three pairs; all three carry its id).

use super::outliers::{block_rows, nearest_neighbours};
use tch::Tensor;

/// Two images (rows) and their copy-detection similarity; `group` numbers the connected groups
/// of the listed pairs from 1, in the order of their most similar pair.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyPair {
    pub a: usize,
    pub b: usize,
    pub similarity: f32,
    pub group: usize,
}

/// The `top` most similar pairs of distinct rows of `normed` (L2-normalised), `a < b`, most
/// similar first (ties by row). Exact: a pair among the `top` most similar is among each of its
/// rows' `top` nearest neighbours, which is all that is searched.
pub fn most_similar_pairs(normed: &Tensor, top: usize) -> Vec<CopyPair> {
    let n = normed.size()[0] as usize;
    if top == 0 || n < 2 {
        return vec![];
    }
    let nb = nearest_neighbours(normed, top.min(n - 1), block_rows(n));
    let mut pairs: Vec<(usize, usize, f32)> = nb
        .index
        .iter()
        .zip(&nb.sim)
        .enumerate()
        .flat_map(|(i, (idx, sim))| idx.iter().zip(sim).map(move |(&j, &s)| (i.min(j), i.max(j), s)))
        .collect();
    // Each pair is seen from both ends, with similarities that may differ in the last bit.
    pairs.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)).then(y.2.total_cmp(&x.2)));
    pairs.dedup_by(|x, y| x.0 == y.0 && x.1 == y.1);
    pairs.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
    pairs.truncate(top);
    with_groups(&pairs)
}

/// Numbers the connected groups of `pairs` (kept in their order) from 1, by first appearance.
pub fn with_groups(pairs: &[(usize, usize, f32)]) -> Vec<CopyPair> {
    let mut parent: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    fn root(parent: &mut std::collections::HashMap<usize, usize>, x: usize) -> usize {
        let mut r = x;
        while let Some(&p) = parent.get(&r).filter(|&&p| p != r) {
            r = p;
        }
        parent.insert(x, r);
        r
    }
    for &(a, b, _) in pairs {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            parent.insert(ra.max(rb), ra.min(rb));
        }
    }
    let mut ids: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    pairs
        .iter()
        .map(|&(a, b, similarity)| {
            let r = root(&mut parent, a);
            let next = ids.len() + 1;
            let group = *ids.entry(r).or_insert(next);
            CopyPair { a, b, similarity, group }
        })
        .collect()
}

/// The members of each group (rows, ascending), by group id from 1.
pub fn groups(pairs: &[CopyPair]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = vec![];
    for p in pairs {
        if out.len() < p.group {
            out.resize(p.group, vec![]);
        }
        let g = &mut out[p.group - 1];
        g.extend([p.a, p.b]);
        g.sort_unstable();
        g.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::features::l2_normalize;

    #[test]
    fn pairs_are_the_most_similar_first_each_once() {
        let deg = [0.0f64, 1.0, 40.0, 41.5, 90.0, 90.2];
        let flat: Vec<f32> = deg.iter().flat_map(|d| [d.to_radians().cos() as f32, d.to_radians().sin() as f32]).collect();
        let x = l2_normalize(&Tensor::from_slice(&flat).reshape([6, 2]));
        let p = most_similar_pairs(&x, 3);
        let ids: Vec<(usize, usize)> = p.iter().map(|p| (p.a, p.b)).collect();
        assert_eq!(ids, vec![(4, 5), (0, 1), (2, 3)]);
        assert_eq!(p.iter().map(|p| p.group).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(p.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert!(most_similar_pairs(&x, 0).is_empty());
        assert!(most_similar_pairs(&x.narrow(0, 0, 1), 5).is_empty());
        // Every pair when more are asked for than there are: 15 of 6 images.
        assert_eq!(most_similar_pairs(&x, 100).len(), 15);
    }

    #[test]
    fn pairs_sharing_an_image_form_one_group() {
        let pairs = [(0, 1, 0.99), (5, 6, 0.98), (1, 2, 0.97), (7, 8, 0.9), (2, 3, 0.8), (6, 7, 0.7)];
        let g = with_groups(&pairs);
        // The last pair joins 5-6 and 7-8 into one group, numbered where it first appears.
        assert_eq!(g.iter().map(|p| p.group).collect::<Vec<_>>(), vec![1, 2, 1, 2, 1, 2]);
        assert_eq!(groups(&g), vec![vec![0, 1, 2, 3], vec![5, 6, 7, 8]]);
    }
}
