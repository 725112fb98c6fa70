//! Image search: the database rows most similar to each query row by cosine similarity (`dino
//! search`, the TUI's neighbour view). Exact, and block by block over the queries so that no
//! queries x database matrix is ever whole: memory stays bounded whatever the two sizes.

use super::outliers::block_rows;
use tch::{Kind, Tensor};

/// The `top` most similar database rows of every query row, most similar first, as (database
/// row, cosine similarity). Both tensors hold L2-normalised rows of the same width ([N, D] and
/// [M, D]); fewer than `top` when the database is smaller.
pub fn nearest(database: &Tensor, queries: &Tensor, top: usize) -> Vec<Vec<(usize, f32)>> {
    nearest_excluding(database, queries, top, |_| None)
}

/// As `nearest`, with database row `same(q)` (the query's own image, when it is in the
/// database) left out of query q's list.
pub fn nearest_excluding(database: &Tensor, queries: &Tensor, top: usize, same: impl Fn(usize) -> Option<usize>) -> Vec<Vec<(usize, f32)>> {
    let (n, m) = (database.size()[0], queries.size()[0]);
    let k = (top as i64).min(n);
    if k <= 0 || m == 0 {
        return vec![vec![]; m.max(0) as usize];
    }
    // One more than asked, so that dropping the query's own image still leaves `top`.
    let take = (k + 1).min(n);
    let per_block = block_rows(n as usize) as i64;
    let mut out = Vec::with_capacity(m as usize);
    tch::no_grad(|| {
        let mut start = 0;
        while start < m {
            let len = per_block.min(m - start);
            let s = queries.narrow(0, start, len).matmul(&database.tr()).to_kind(Kind::Float);
            let (vals, idx) = s.topk(take, 1, true, true);
            let vals: Vec<f32> = Vec::try_from(vals.to_device(tch::Device::Cpu).flatten(0, -1)).unwrap_or_default();
            let idx: Vec<i64> = Vec::try_from(idx.to_device(tch::Device::Cpu).flatten(0, -1)).unwrap_or_default();
            for r in 0..len as usize {
                let own = same(start as usize + r);
                let row = (0..take as usize).filter_map(|c| {
                    let at = r * take as usize + c;
                    Some((*idx.get(at)? as usize, *vals.get(at)?))
                });
                out.push(row.filter(|(j, _)| Some(*j) != own).take(k as usize).collect());
            }
            start += len;
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::features::l2_normalize;
    use tch::Device;

    fn unit(angles: &[f64]) -> Tensor {
        let flat: Vec<f32> = angles.iter().flat_map(|d| [d.to_radians().cos() as f32, d.to_radians().sin() as f32]).collect();
        l2_normalize(&Tensor::from_slice(&flat).reshape([angles.len() as i64, 2]))
    }

    #[test]
    fn nearest_lists_the_most_similar_database_rows_first() {
        let db = unit(&[0.0, 30.0, 60.0, 90.0]);
        let q = unit(&[50.0, 95.0]);
        let r = nearest(&db, &q, 2);
        assert_eq!(r[0].iter().map(|p| p.0).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(r[1].iter().map(|p| p.0).collect::<Vec<_>>(), vec![3, 2]);
        assert!((r[0][0].1 - 10f64.to_radians().cos() as f32).abs() < 1e-6);
        // More than the database holds: all of it.
        assert_eq!(nearest(&db, &q, 10)[0].len(), 4);
        assert!(nearest(&db, &q, 0).iter().all(Vec::is_empty));
    }

    #[test]
    fn the_query_s_own_image_is_left_out_and_top_still_filled() {
        let db = unit(&[0.0, 30.0, 60.0]);
        let r = nearest_excluding(&db, &db.narrow(0, 1, 1), 2, |_| Some(1));
        assert_eq!(r[0].iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn blocks_give_the_whole_matrix_s_answer() {
        tch::manual_seed(5);
        let db = l2_normalize(&Tensor::randn([50, 6], (Kind::Float, Device::Cpu)));
        let q = l2_normalize(&Tensor::randn([9, 6], (Kind::Float, Device::Cpu)));
        let r = nearest(&db, &q, 3);
        let s = q.matmul(&db.tr());
        for (i, row) in r.iter().enumerate() {
            let (_, idx) = s.get(i as i64).topk(3, 0, true, true);
            let want: Vec<i64> = Vec::try_from(idx).unwrap();
            assert_eq!(row.iter().map(|p| p.0 as i64).collect::<Vec<_>>(), want);
        }
    }
}
