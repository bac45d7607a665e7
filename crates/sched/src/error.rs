//! Errors returned by the scheduler.

use std::fmt;

use sglrs_radix::RadixError;

/// Why a scheduler call was refused. A refused call leaves the scheduler unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedError {
    /// A configuration value is out of range (the message names the field).
    InvalidConfig(String),
    /// `add_request` with an id that is already queued or running.
    DuplicateId(u64),
    /// `add_request` with an empty prompt.
    EmptyPrompt(u64),
    /// `add_request` with a bad argument (the message names it).
    InvalidRequest(String),
    /// `schedule` while the previous plan still awaits its `update`.
    StepInFlight,
    /// `update` without a plan awaiting it.
    NoStepInFlight,
    /// `update` with the wrong number of sampled tokens or finish flags.
    SampleCountMismatch {
        expected: usize,
        got: usize,
        what: &'static str,
    },
    /// An error from the radix tree or the slot allocator (a scheduler bug if it happens).
    Radix(RadixError),
    /// `check_integrity` found a broken invariant.
    Integrity(String),
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::InvalidConfig(m) => write!(f, "invalid scheduler config: {m}"),
            SchedError::DuplicateId(id) => write!(f, "request id {id} is already in the scheduler"),
            SchedError::EmptyPrompt(id) => write!(f, "request {id} has an empty prompt"),
            SchedError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            SchedError::StepInFlight => {
                write!(f, "schedule() called again before update() of the previous plan")
            }
            SchedError::NoStepInFlight => write!(f, "update() called without a scheduled plan"),
            SchedError::SampleCountMismatch { expected, got, what } => write!(
                f,
                "update(): expected {expected} {what} (one per request with sample_mask set), got {got}"
            ),
            SchedError::Radix(e) => write!(f, "radix cache error: {e}"),
            SchedError::Integrity(m) => write!(f, "scheduler integrity violated: {m}"),
        }
    }
}

impl std::error::Error for SchedError {}

impl From<RadixError> for SchedError {
    fn from(e: RadixError) -> Self {
        SchedError::Radix(e)
    }
}
