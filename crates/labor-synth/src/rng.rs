//! The worlds' generator: xoshiro256** seeded through SplitMix64, one stream per worker. It lives
//! in [`labor_data::rng`], the workspace's one source of pseudo-random numbers.

pub use labor_data::rng::Xoshiro256 as Rng;
