//! Evaluation (SPEC §7), computed from prediction files only: perplexity (all records and
//! transitions, normalized and unnormalized) with bootstrap intervals over persons and ratios
//! to the oracle, the move and labor-force sub-tasks (log-loss, AUC, reliability), calibration
//! by subgroup, paired model comparisons, and the report that shows them (Markdown, CSV, SVG
//! plots, one self-contained HTML page), with a table of what each model was given (from the
//! prediction files' metadata).
//!
//! Like the other core crates this one does no file-system I/O: the CLI reads the prediction
//! files and the panel, and writes what [`report`] renders.

pub mod evaluate;
pub mod models;
pub mod plot;
pub mod report;
pub mod stats;
pub mod table;

pub use evaluate::{
    Inputs, ModelInfo, ModelPreds, Options, Plot, Report, Subject, SubjectKey, evaluate,
};
pub use table::Table;
