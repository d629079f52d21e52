//! The one shape of a training loop's caller: progress reports and resumable snapshots go out
//! through [`Hooks`], and the loop itself writes no files. CAREER (`labor_career::train`) and
//! the language model (`labor_lm::train`) both take `&mut dyn Hooks<TheirEvent, TheirCheckpoint>`;
//! the CLI implements it with a progress bar and checkpoint directories, tests with a vector.

/// What the caller does with a loop's progress (`E`) and snapshots (`C`).
pub trait Hooks<E, C: ?Sized> {
    /// A progress report; the default ignores it.
    fn event(&mut self, _e: E) {}
    /// A snapshot to keep; an error stops the loop and is returned by it.
    fn checkpoint(&mut self, _ck: &C) -> Result<(), String> {
        Ok(())
    }
}

/// Hooks that do nothing.
pub struct Quiet;

impl<E, C: ?Sized> Hooks<E, C> for Quiet {}
