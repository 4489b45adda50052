//! Stratified, seeded, shuffled splits of a classification data set.

use super::dataset::{Dataset, TensorDataset};
use super::error::{DataError, Result};
use ember_nn_core::Rng;

/// Indices of the samples of each class split in two: `(kept, held_out)`,
/// each shuffled with `seed`.
///
/// Each class with `n` samples gives `round(n · fraction)` of them to the
/// held-out part, but at least one and at most `n - 1` when it has two or
/// more (so every class is in both parts); a class of one sample stays in
/// the kept part. The samples chosen within each class, and the order of
/// both parts, are random and depend on `seed` only. `labels` must be
/// below `num_classes`.
pub fn stratified_indices(
    labels: &[usize],
    num_classes: usize,
    fraction: f32,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(DataError::Fraction(fraction));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class
            .get_mut(l)
            .ok_or_else(|| DataError::Invalid(format!("label {l} of sample {i} is out of range")))?
            .push(i);
    }
    let mut rng = Rng::new(seed);
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for mut members in by_class {
        rng.shuffle(&mut members);
        let n = members.len();
        let mut h = ((n as f64) * f64::from(fraction)).round() as usize;
        if fraction > 0.0 && n >= 2 {
            h = h.clamp(1, n - 1);
        } else {
            h = h.min(n.saturating_sub(1));
        }
        held.extend_from_slice(&members[..h]);
        kept.extend_from_slice(&members[h..]);
    }
    rng.shuffle(&mut kept);
    rng.shuffle(&mut held);
    Ok((kept, held))
}

/// `data` split in two, stratified by class and shuffled with `seed`:
/// `(kept, held_out)` as [`stratified_indices`] chooses them. A fraction
/// of 0 holds out nothing (the kept part is `data`, shuffled).
pub fn stratified_split(
    data: &TensorDataset,
    fraction: f32,
    seed: u64,
) -> Result<(TensorDataset, TensorDataset)> {
    let (kept, held) = stratified_indices(data.labels(), data.num_classes(), fraction, seed)?;
    Ok((data.select(&kept)?, data.select(&held)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_keeps_its_share() {
        // Sorted by class, as a CSV file often is.
        let labels: Vec<usize> = (0..90).map(|i| i / 30).collect();
        let (kept, held) = stratified_indices(&labels, 3, 0.2, 7).unwrap();
        assert_eq!((kept.len(), held.len()), (72, 18));
        for c in 0..3 {
            assert_eq!(held.iter().filter(|&&i| labels[i] == c).count(), 6);
        }
        let mut all: Vec<usize> = kept.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..90).collect::<Vec<_>>());
        // Shuffled, and the same for the same seed only.
        assert_ne!(held, {
            let mut s = held.clone();
            s.sort_unstable();
            s
        });
        assert_eq!(stratified_indices(&labels, 3, 0.2, 7).unwrap().1, held);
        assert_ne!(stratified_indices(&labels, 3, 0.2, 8).unwrap().1, held);
    }

    #[test]
    fn small_classes_and_bad_fractions() {
        let (kept, held) = stratified_indices(&[0, 1, 1], 2, 0.1, 0).unwrap();
        assert_eq!((kept.len(), held.len()), (2, 1));
        assert!(kept.contains(&0));
        assert!(stratified_indices(&[0], 1, 1.0, 0).is_err());
        assert!(stratified_indices(&[0], 1, f32::NAN, 0).is_err());
        assert!(stratified_indices(&[0, 1], 2, 0.0, 0).unwrap().1.is_empty());
    }
}
