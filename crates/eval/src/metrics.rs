//! Metrics over logits: top-1/top-5 accuracy, mean cross-entropy, ReaL accuracy, and the
//! agreement of a student with its teacher.
//!
//! Conventions:
//! - With a class subset (ImageNet-A/-R and their "-clean" counterparts) only the subset's
//!   columns exist for scoring: top-k, the softmax of the loss and of the KL are all taken
//!   over them, and labels are positions within them.
//! - Ties in the ranking go to the lower class index, as a stable descending sort would.
//! - ReaL: images with an empty label list are left out of every metric (they are counted
//!   in [`Metrics::excluded`]); a prediction is correct at top-k when any of the k best
//!   classes is in the list. The loss is the cross-entropy with the original val label.
//! - Teacher agreement: KL(teacher ‖ student) of the softmaxes, top-1 agreement (same
//!   argmax), top-5 agreement (the teacher's argmax is among the student's five best).

use serde::{Deserialize, Serialize};

/// Accuracy and loss of one model on one set; percentages in 0–100.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Images scored.
    pub images: usize,
    /// Images left out because their ReaL list is empty.
    pub excluded: usize,
    /// Top-1 accuracy in percent (ReaL accuracy on ReaL sets).
    pub top1: f64,
    /// Top-5 accuracy in percent.
    pub top5: f64,
    /// Mean cross-entropy (natural log).
    pub loss: f64,
    /// Agreement with the teacher, when one was given.
    pub agreement: Option<Agreement>,
}

/// How closely a student follows its teacher.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Images with teacher outputs (the teacher may have failed to read some).
    pub images: usize,
    /// Mean KL(teacher ‖ student) in nats.
    pub kl: f64,
    /// Share (percent) of images where both argmaxes agree.
    pub top1: f64,
    /// Share (percent) of images where the teacher's argmax is in the student's top 5.
    pub top5: f64,
}

/// Running sums for [`Metrics`].
#[derive(Clone, Debug, Default)]
pub struct Tally {
    columns: Option<Vec<u32>>,
    images: usize,
    excluded: usize,
    top1: usize,
    top5: usize,
    loss: f64,
    teacher_images: usize,
    kl: f64,
    agree1: usize,
    agree5: usize,
}

impl Tally {
    /// A tally scoring only `columns` (increasing class indices), or every column.
    pub fn new(columns: Option<Vec<u32>>) -> Tally {
        Tally { columns, ..Default::default() }
    }

    /// Adds one image: its full logits row, its label (a full class index), its ReaL list
    /// if the set has them, and the teacher's full logits row if a teacher is given.
    ///
    /// Returns `false` (and adds nothing) when the label is not among the scored columns.
    pub fn add(
        &mut self,
        logits: &[f32],
        label: u32,
        real: Option<&[u32]>,
        teacher: Option<&[f32]>,
    ) -> bool {
        if real.is_some_and(|r| r.is_empty()) {
            self.excluded += 1;
            return true;
        }
        let z = self.restrict(logits);
        let Some(y) = self.position(label) else { return false };

        let log_probs = log_softmax(&z);
        let best = top_k(&z, 5);
        let (hit1, hit5) = match real {
            Some(list) => {
                // ReaL lists name full class indices; map the ranks back.
                let in_list = |p: &usize| list.contains(&self.class_of(*p));
                (best.first().is_some_and(in_list), best.iter().any(in_list))
            }
            None => (best.first() == Some(&y), best.contains(&y)),
        };
        self.images += 1;
        self.top1 += usize::from(hit1);
        self.top5 += usize::from(hit5);
        self.loss -= log_probs[y];

        if let Some(t) = teacher {
            let t = self.restrict(t);
            let t_log = log_softmax(&t);
            let kl: f64 = t_log.iter().zip(&log_probs).map(|(&lt, &ls)| lt.exp() * (lt - ls)).sum();
            let t_best = top_k(&t, 1)[0];
            self.teacher_images += 1;
            self.kl += kl;
            self.agree1 += usize::from(best.first() == Some(&t_best));
            self.agree5 += usize::from(best.contains(&t_best));
        }
        true
    }

    /// The metrics so far.
    pub fn metrics(&self, with_teacher: bool) -> Metrics {
        let pct = |k: usize, n: usize| if n == 0 { 0.0 } else { 100.0 * k as f64 / n as f64 };
        let n = self.images.max(1) as f64;
        let agreement = with_teacher.then(|| Agreement {
            images: self.teacher_images,
            kl: self.kl / self.teacher_images.max(1) as f64,
            top1: pct(self.agree1, self.teacher_images),
            top5: pct(self.agree5, self.teacher_images),
        });
        Metrics {
            images: self.images,
            excluded: self.excluded,
            top1: pct(self.top1, self.images),
            top5: pct(self.top5, self.images),
            loss: self.loss / n,
            agreement,
        }
    }

    fn restrict(&self, row: &[f32]) -> Vec<f64> {
        match &self.columns {
            Some(cols) => cols.iter().map(|&c| f64::from(row[c as usize])).collect(),
            None => row.iter().map(|&v| f64::from(v)).collect(),
        }
    }

    fn position(&self, label: u32) -> Option<usize> {
        match &self.columns {
            Some(cols) => cols.binary_search(&label).ok(),
            None => Some(label as usize),
        }
    }

    fn class_of(&self, position: usize) -> u32 {
        match &self.columns {
            Some(cols) => cols[position],
            None => position as u32,
        }
    }
}

/// `log softmax(z)`, computed stably.
pub fn log_softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
    let log_sum = max + sum.ln();
    z.iter().map(|v| v - log_sum).collect()
}

/// Positions of the `k` largest values, largest first; ties go to the lower position.
pub fn top_k(z: &[f64], k: usize) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &v) in z.iter().enumerate() {
        // Insert after every kept value that is at least as large (earlier index wins ties).
        let at = best.iter().position(|&b| v > z[b]).unwrap_or(best.len());
        if at < k {
            best.insert(at, i);
            best.truncate(k);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_breaks_ties_towards_the_lower_index() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0, 0.0], 3), vec![1, 2, 3]);
        assert_eq!(top_k(&[0.0, 0.0], 5), vec![0, 1]);
    }

    #[test]
    fn empty_real_lists_are_excluded_not_counted_wrong() {
        let mut tally = Tally::new(None);
        assert!(tally.add(&[0.0, 1.0, 2.0], 2, Some(&[]), None));
        assert!(tally.add(&[0.0, 1.0, 2.0], 0, Some(&[2, 1]), None));
        let m = tally.metrics(false);
        assert_eq!((m.images, m.excluded, m.top1), (1, 1, 100.0));
    }

    #[test]
    fn subset_scoring_ignores_columns_outside_the_subset() {
        // Column 1 is the largest but not scored; among {0, 2}, 2 wins.
        let mut tally = Tally::new(Some(vec![0, 2]));
        assert!(tally.add(&[0.0, 9.0, 1.0], 2, None, None));
        assert!(!tally.add(&[0.0, 9.0, 1.0], 1, None, None));
        let m = tally.metrics(false);
        assert_eq!(m.top1, 100.0);
        let expected = (1.0f64.exp() + 1.0).ln() - 1.0;
        assert!((m.loss - expected).abs() < 1e-12, "{} vs {expected}", m.loss);
    }

    #[test]
    fn a_student_equal_to_its_teacher_has_zero_kl_and_full_agreement() {
        let mut tally = Tally::new(None);
        let row = [0.3f32, -1.0, 2.0, 0.5];
        tally.add(&row, 0, None, Some(&row));
        let a = tally.metrics(true).agreement.unwrap();
        assert!(a.kl.abs() < 1e-12);
        assert_eq!((a.top1, a.top5), (100.0, 100.0));
    }
}
