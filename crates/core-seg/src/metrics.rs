//! Dataset-level segmentation metrics: confusion matrix, per-class IoU, mIoU, pixel accuracy.
//!
//! Intersection and union counts are summed over the whole dataset before dividing (UniMatch's
//! `intersectionAndUnion` + `AverageMeter` sum): `IoU_c = I_c / (U_c + 1e-10)`, `mIoU = mean_c IoU_c`.
//! Ground-truth pixels labelled 255 never count.

use serde::{Deserialize, Serialize};

use crate::ops::IGNORE_INDEX;
use crate::{Error, Result};

/// `K × K` confusion counts, rows = ground truth, columns = prediction. Mergeable across threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub num_classes: usize,
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(num_classes: usize) -> Self {
        Self { num_classes, counts: vec![0; num_classes * num_classes] }
    }

    /// Adds one image (or batch) of predictions and labels, same length. Labels 255 are skipped; any other
    /// label or prediction outside `0..K` is an error.
    pub fn update(&mut self, pred: &[u32], gt: &[u32]) -> Result<()> {
        if pred.len() != gt.len() {
            return Err(Error::Shape(format!("confusion: {} predictions vs {} labels", pred.len(), gt.len())));
        }
        let k = self.num_classes;
        for (&p, &g) in pred.iter().zip(gt) {
            if g == IGNORE_INDEX {
                continue;
            }
            if g as usize >= k || p as usize >= k {
                return Err(Error::InvalidArgument(format!("confusion: label {g} / prediction {p} outside 0..{k}")));
            }
            self.counts[g as usize * k + p as usize] += 1;
        }
        Ok(())
    }

    /// Adds another matrix (e.g. from another thread).
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<()> {
        if other.num_classes != self.num_classes {
            return Err(Error::Shape(format!(
                "confusion: merging K={} into K={}",
                other.num_classes, self.num_classes
            )));
        }
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn intersection_union(&self, c: usize) -> (u64, u64) {
        let k = self.num_classes;
        let tp = self.counts[c * k + c];
        let gt: u64 = self.counts[c * k..(c + 1) * k].iter().sum();
        let pred: u64 = (0..k).map(|r| self.counts[r * k + c]).sum();
        (tp, gt + pred - tp)
    }

    /// `IoU_c = I_c / (U_c + 1e-10)` for every class (0 for a class absent from prediction and GT).
    pub fn iou(&self) -> Vec<f64> {
        (0..self.num_classes)
            .map(|c| {
                let (i, u) = self.intersection_union(c);
                i as f64 / (u as f64 + 1e-10)
            })
            .collect()
    }

    /// Mean IoU in [0, 1]. With `skip_empty`, classes with an empty union are left out of the mean.
    pub fn miou(&self, skip_empty: bool) -> f64 {
        let ious = self.iou();
        let used: Vec<f64> = (0..self.num_classes)
            .filter(|&c| !skip_empty || self.intersection_union(c).1 > 0)
            .map(|c| ious[c])
            .collect();
        if used.is_empty() {
            0.0
        } else {
            used.iter().sum::<f64>() / used.len() as f64
        }
    }

    /// Fraction of counted pixels predicted correctly.
    pub fn pixel_accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let correct: u64 = (0..self.num_classes).map(|c| self.counts[c * self.num_classes + c]).sum();
        if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two images where the per-image mean IoU differs from the dataset-level IoU.
    #[test]
    fn dataset_level_iou_differs_from_per_image_mean() -> Result<()> {
        // Image A: 4 px of class 1, predicted 1,1,0,0 -> class-1 IoU_A = 2/4.
        // Image B: 1 px of class 1 predicted 1, plus 3 px class 0 predicted 0 -> IoU_B(1) = 1.
        let mut m = ConfusionMatrix::new(2);
        m.update(&[1, 1, 0, 0], &[1, 1, 1, 1])?;
        m.update(&[1, 0, 0, 0, 1], &[1, 0, 0, 0, 255])?;
        let iou = m.iou();
        // Dataset-level class 1: I = 3, U = 5 -> 0.6 (per-image mean would be 0.75).
        assert!((iou[1] - 0.6).abs() < 1e-9, "{iou:?}");
        // Class 0: I = 3, U = 3 (gt) + 5 (pred) - 3 = 5 -> 0.6.
        assert!((iou[0] - 0.6).abs() < 1e-9, "{iou:?}");
        assert!((m.miou(false) - 0.6).abs() < 1e-9);
        // The 255 pixel predicted 1 was not counted: 9 pixels in total.
        assert_eq!(m.counts.iter().sum::<u64>(), 8);
        assert!((m.pixel_accuracy() - 6.0 / 8.0).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn merge_equals_joint_update_and_empty_class_handling() -> Result<()> {
        let (p, g) = ([0u32, 1, 2, 2, 1, 0], [0u32, 1, 1, 2, 255, 0]);
        let mut joint = ConfusionMatrix::new(4);
        joint.update(&p, &g)?;
        let (mut a, mut b) = (ConfusionMatrix::new(4), ConfusionMatrix::new(4));
        a.update(&p[..3], &g[..3])?;
        b.update(&p[3..], &g[3..])?;
        a.merge(&b)?;
        assert_eq!(a, joint);
        // Class 3 is absent everywhere: counts as 0 unless skipped.
        assert!(joint.miou(true) > joint.miou(false));
        assert!(joint.update(&[5], &[0]).is_err());
        assert!(joint.update(&[0], &[9]).is_err());
        Ok(())
    }
}
