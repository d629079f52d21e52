//! Career panels and everything about them that is not a model: the label taxonomy, education
//! levels, validation, file formats (CSV, Parquet, CAREER), survey-extract import, splits and
//! descriptive statistics.
//!
//! This crate does no file-system I/O: readers take streams or file contents, writers take
//! streams, and every problem is returned as a value with its location.

pub mod calibration;
pub mod education;
pub mod export;
pub mod formats;
pub mod import;
pub mod overlap;
pub mod panel;
pub mod predictions;
pub mod problem;
pub mod rng;
pub mod split;
pub mod stats;
pub mod taxonomy;

pub use education::Education;
pub use panel::{BuildOptions, BuildReport, Covariate, MISSING, Panel, Person, Record};
pub use problem::{Location, Problem, Problems};
pub use split::{Split, SplitSpec};
pub use taxonomy::{LabelId, LabelKind, Taxonomy};
