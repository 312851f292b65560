//! Statistics, in one place and at the bottom of the layers: every interval,
//! test, rank statistic, summary and random draw the results pages use, each
//! with one stated behaviour. Distributions come from `statrs`; what it does
//! not offer (Wilson, the mid-rank AUC, Kolmogorov's series, nearest-rank
//! quantiles, seeded shuffles) is written here once, with reference values
//! in its tests.
//!
//! - [`conformal`]: split-conformal thresholds.
//! - [`interval`]: Wilson, Clopper-Pearson, Hanley-McNeil; the 95% z value.
//! - [`hypothesis`]: exact McNemar, binomial tail, Kolmogorov-Smirnov.
//! - [`rank`]: the Mann-Whitney AUC.
//! - [`summary`]: mean, median, quantile.
//! - [`random`]: SplitMix64, unbiased `below`, the seeded shuffles.

pub mod conformal;
pub mod hypothesis;
pub mod interval;
pub mod random;
pub mod rank;
pub mod summary;

pub use hypothesis::{binomial_tail, kolmogorov_survival, ks_uniform, mcnemar_exact, KsTest};
pub use interval::{clopper_pearson_lower, clopper_pearson_upper, hanley_mcneil, wilson, Z95};
pub use random::{Draw, SplitMix64};
pub use rank::{auc, auc_of_labelled};
pub use summary::{mean, median, quantile};
