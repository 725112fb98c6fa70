//! Drawing N labeled images per class: stratified (every class gets exactly N, or all it has),
//! seeded (the same seed gives the same images), and nested by construction for one seed (the
//! images of N = 5 are among those of N = 10), so curves over N differ only by N.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Indices into `labels`: up to `per_class` of each class (`None`: all), in ascending order.
pub fn per_class(labels: &[usize], num_classes: usize, per_class: Option<usize>, seed: u64) -> Vec<usize> {
    let mut by_class: Vec<Vec<usize>> = vec![vec![]; num_classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(v) = by_class.get_mut(l) {
            v.push(i);
        }
    }
    let mut out = vec![];
    for (c, mut idx) in by_class.into_iter().enumerate() {
        // One stream per (seed, class): a class's draw does not depend on the other classes' sizes.
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ c as u64);
        idx.shuffle(&mut rng);
        let take = per_class.unwrap_or(idx.len()).min(idx.len());
        out.extend_from_slice(&idx[..take]);
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        (0..100).map(|i| i % 4).chain(std::iter::repeat_n(3, 7)).collect()
    }

    #[test]
    fn every_class_gets_exactly_n() {
        let l = labels();
        for n in [1, 5, 25] {
            let idx = per_class(&l, 4, Some(n), 3);
            let mut counts = [0; 4];
            for &i in &idx {
                counts[l[i]] += 1;
            }
            assert_eq!(counts, [n; 4], "n = {n}");
        }
        // More than a class holds: all of it.
        let idx = per_class(&l, 4, Some(30), 0);
        assert_eq!(idx.len(), 25 * 3 + 30);
        assert_eq!(per_class(&l, 4, None, 0).len(), l.len());
    }

    #[test]
    fn seeded_repeatable_and_nested() {
        let l = labels();
        assert_eq!(per_class(&l, 4, Some(5), 1), per_class(&l, 4, Some(5), 1));
        assert_ne!(per_class(&l, 4, Some(5), 1), per_class(&l, 4, Some(5), 2));
        let small = per_class(&l, 4, Some(5), 9);
        let big = per_class(&l, 4, Some(10), 9);
        assert!(small.iter().all(|i| big.contains(i)), "N=5 draw is inside the N=10 draw");
    }
}
