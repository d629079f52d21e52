//! The `labor` command as a library: every subcommand's arguments and `run` function, and the
//! readers of the files it accepts (exposed so the fuzz harnesses in `labor-fuzz` reach the
//! same code the command runs). The binary (`src/main.rs`) only parses flags and maps results
//! to exit statuses.

pub mod bench;
pub mod calibrate;
pub mod cli;
pub mod data;
pub mod demo;
pub mod eval;
pub mod fit;
pub mod io;
pub mod lm;
pub mod model;
pub mod predict;
pub mod reproduce;
pub mod score;
pub mod serve;
pub mod simulate;
pub mod synth;
pub mod taxonomy;
pub mod text;
pub mod train;
