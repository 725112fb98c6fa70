//! Near-duplicate pairs from copy-detection descriptors (`copy_detection`): the most similar
//! pairs of a folder, most similar first, and the groups they form when an image has more than
//! one copy (a group of three lists three pairs; all three carry its id).

use super::outliers::block_rows;
use tch::{Kind, Tensor};

/// Two images (rows) and their copy-detection similarity; `group` numbers the connected groups
/// of the listed pairs from 1, in the order of their most similar pair.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyPair {
    pub a: usize,
    pub b: usize,
    pub similarity: f32,
    pub group: usize,
}

/// Copy similarity of rows `start..start + len` with every row, [len, N]: the cosine of the
/// whole images' descriptors, or given regions ([N, R, D]), the largest of it, of each whole
/// image against the other's regions, and of each region against the other whole image: a copy
/// cut from an image meets the region it came from.
fn similarity_block(global: &Tensor, regions: Option<&Tensor>, start: i64, len: i64) -> Tensor {
    let n = global.size()[0];
    let q = global.narrow(0, start, len);
    let s = q.matmul(&global.tr());
    let Some(r) = regions.filter(|r| r.size().get(1).is_some_and(|&k| k > 0)) else { return s };
    let (k, d) = (r.size()[1], r.size()[2]);
    let whole_to_regions = q.matmul(&r.reshape([n * k, d]).tr()).reshape([len, n, k]).amax([2i64].as_slice(), false);
    let regions_to_whole =
        r.narrow(0, start, len).reshape([len * k, d]).matmul(&global.tr()).reshape([len, k, n]).amax([1i64].as_slice(), false);
    s.maximum(&whole_to_regions).maximum(&regions_to_whole)
}

/// The `top` most similar pairs of distinct rows of `global` (L2-normalised [N, D]; with
/// `regions`, [N, R, D], by `similarity_block`'s similarity), `a < b`, most similar first (ties
/// by row). Exact: a pair among the `top` most similar is among each of its rows' `top` most
/// similar, which is all that is kept of each block of rows (bounded like the outlier scores').
pub fn most_similar_pairs(global: &Tensor, regions: Option<&Tensor>, top: usize) -> Vec<CopyPair> {
    let n = global.size()[0];
    if top == 0 || n < 2 {
        return vec![];
    }
    let k = (top as i64).min(n - 1);
    let width = n as usize * regions.map_or(1, |r| r.size()[1].max(1) as usize);
    let per_block = block_rows(width) as i64;
    let mut pairs: Vec<(usize, usize, f32)> = vec![];
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = per_block.min(n - start);
            let mut s = similarity_block(global, regions, start, len).to_kind(Kind::Float);
            // An image is not its own copy.
            let rows = Tensor::arange(len, (Kind::Int64, s.device()));
            let _ = s.index_put_(
                &[Some(&rows), Some(&(&rows + start))],
                &Tensor::from(f64::NEG_INFINITY).to_kind(Kind::Float).to_device(s.device()),
                false,
            );
            let (vals, idx) = s.topk(k, 1, true, true);
            let vals: Vec<f32> = Vec::try_from(vals.to_device(tch::Device::Cpu).flatten(0, -1)).unwrap_or_default();
            let idx: Vec<i64> = Vec::try_from(idx.to_device(tch::Device::Cpu).flatten(0, -1)).unwrap_or_default();
            for (at, (&j, &v)) in idx.iter().zip(&vals).enumerate() {
                let i = start as usize + at / k as usize;
                pairs.push((i.min(j as usize), i.max(j as usize), v));
            }
            start += len;
        }
    });
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
        let p = most_similar_pairs(&x, None, 3);
        let ids: Vec<(usize, usize)> = p.iter().map(|p| (p.a, p.b)).collect();
        assert_eq!(ids, vec![(4, 5), (0, 1), (2, 3)]);
        assert_eq!(p.iter().map(|p| p.group).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(p.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert!(most_similar_pairs(&x, None, 0).is_empty());
        assert!(most_similar_pairs(&x.narrow(0, 0, 1), None, 5).is_empty());
        // Every pair when more are asked for than there are: 15 of 6 images.
        assert_eq!(most_similar_pairs(&x, None, 100).len(), 15);
    }

    #[test]
    fn a_region_meets_the_whole_image_it_matches() {
        // Images 0 and 1 are far apart as wholes, but a region of 0 is image 1's direction.
        let g = l2_normalize(&Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.6, 0.0, 0.8]).reshape([3, 3]));
        let r = l2_normalize(&Tensor::from_slice(&[0.0f32, 1.0, 0.01, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]).reshape([3, 3])).reshape([3, 1, 3]);
        let whole = most_similar_pairs(&g, None, 1);
        assert_eq!((whole[0].a, whole[0].b), (0, 2));
        let with_regions = most_similar_pairs(&g, Some(&r), 1);
        assert_eq!((with_regions[0].a, with_regions[0].b), (0, 1), "{with_regions:?}");
        assert!(with_regions[0].similarity > 0.99);
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
