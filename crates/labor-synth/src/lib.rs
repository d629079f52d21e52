//! The synthetic labor market: a generator of career panels whose true conditional probability
//! of every observed record is known exactly (the oracle), and diagnostics against it.
//!
//! Exactness by construction: labels are drawn record by record from
//! P(label_t | latent type, earlier observed records, covariates of t, gap); the oracle mixes
//! that conditional over the exact posterior of the type given the observed history.

pub mod diagnostics;
pub mod generate;
pub mod market;
pub mod model;
pub mod oracle;
pub mod rng;
pub mod world;

pub use generate::{Generator, OracleRecord, Worker, into_panel};
pub use oracle::Oracle;
pub use world::World;
