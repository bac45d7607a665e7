//! Scheduler configuration and its validation.

use std::fmt;
use std::str::FromStr;

use crate::error::SchedError;

/// Order in which waiting requests are considered for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulePolicy {
    /// First come, first served (arrival order).
    Fcfs,
    /// Longest cached prefix first; falls back to fcfs on a long queue.
    Lpm,
    /// Depth-first order over the radix tree, heavier subtrees first (SGLang's `dfs-weight`).
    DfsWeight,
    /// Higher `priority` first, then arrival.
    Priority,
}

impl SchedulePolicy {
    pub const ALL: [SchedulePolicy; 4] = [
        SchedulePolicy::Fcfs,
        SchedulePolicy::Lpm,
        SchedulePolicy::DfsWeight,
        SchedulePolicy::Priority,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SchedulePolicy::Fcfs => "fcfs",
            SchedulePolicy::Lpm => "lpm",
            SchedulePolicy::DfsWeight => "dfs-weight",
            SchedulePolicy::Priority => "priority",
        }
    }
}

impl fmt::Display for SchedulePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchedulePolicy {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchedulePolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                SchedError::InvalidConfig(format!(
                    "schedule_policy {s:?} is not one of fcfs, lpm, dfs-weight, priority"
                ))
            })
    }
}

/// Every knob of the scheduler. `SchedulerConfig::new(capacity)` gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// KV slots in the pool (rounded down to whole pages).
    pub capacity_tokens: usize,
    /// Tokens per KV page; requests own whole pages and the tree caches whole pages.
    pub page_size: usize,
    /// Rows of the runner's `req_to_token` table: at most this many admitted requests.
    pub max_running_requests: usize,
    /// New prefill tokens per step (a single longer prompt still runs alone when chunking is off).
    pub max_prefill_tokens: usize,
    /// Longest prefill chunk; `None` disables chunked prefill.
    pub chunked_prefill_size: Option<usize>,
    pub schedule_policy: SchedulePolicy,
    /// Scales the output-token reserve (higher admits fewer requests).
    pub schedule_conservativeness: f64,
    /// Longest sequence (prompt + max_new_tokens); also the width of the runner's table.
    pub context_length: usize,
    /// Run prefill chunks and decode requests in one batch.
    pub enable_mixed_chunk: bool,
    /// Never share KV between requests (nothing is inserted into the radix tree).
    pub disable_radix_cache: bool,
    /// Also emit `kv_indptr` / `kv_indices` (every slot of every request, O(total KV)).
    pub emit_kv_indices: bool,
    /// Starting estimate of the fraction of remaining output tokens still to be generated.
    pub init_new_token_ratio: f64,
    /// Floor of the estimate, as a fraction of the initial value.
    pub min_new_token_ratio_factor: f64,
    /// Decode steps over which the estimate decays from its initial value to its floor.
    pub new_token_ratio_decay_steps: u32,
    /// Cap on the remaining output tokens counted per request in the reserve.
    pub clip_max_new_tokens: usize,
    /// After a retraction the remaining requests must fit this many more decode steps.
    pub retract_decode_steps: usize,
    /// `lpm` uses fcfs order when more requests than this are waiting (matching is costly).
    pub lpm_fallback_queue_len: usize,
    /// A request waiting more than this many scheduling rounds is admitted before others.
    pub starvation_steps: u64,
    /// A request overtaken by more than this many later arrivals is admitted before others.
    pub starvation_overtakes: u32,
}

impl SchedulerConfig {
    /// Defaults for a pool of `capacity_tokens` KV slots (SGLang's defaults where it has one).
    pub fn new(capacity_tokens: usize) -> Self {
        SchedulerConfig {
            capacity_tokens,
            page_size: 1,
            max_running_requests: 256,
            max_prefill_tokens: 16384,
            chunked_prefill_size: Some(8192),
            schedule_policy: SchedulePolicy::Fcfs,
            schedule_conservativeness: 1.0,
            context_length: 8192,
            enable_mixed_chunk: false,
            disable_radix_cache: false,
            emit_kv_indices: false,
            init_new_token_ratio: 0.7,
            min_new_token_ratio_factor: 0.14,
            new_token_ratio_decay_steps: 600,
            clip_max_new_tokens: 4096,
            retract_decode_steps: 20,
            lpm_fallback_queue_len: 128,
            starvation_steps: 1024,
            starvation_overtakes: 256,
        }
    }

    /// Whole pages in the pool.
    pub fn capacity_pages(&self) -> usize {
        self.capacity_tokens / self.page_size.max(1)
    }

    pub fn validate(&self) -> Result<(), SchedError> {
        let bad = |m: String| Err(SchedError::InvalidConfig(m));
        let i32_max = i32::MAX as usize;
        if self.page_size == 0 {
            return bad("page_size must be >= 1".into());
        }
        if self.capacity_tokens < self.page_size || self.capacity_tokens > i32_max {
            return bad(format!(
                "capacity_tokens must be in page_size ({})..=2^31-1 (slots are int32), got {}",
                self.page_size, self.capacity_tokens
            ));
        }
        if self.max_running_requests == 0 || self.max_running_requests > i32_max {
            return bad("max_running_requests must be >= 1".into());
        }
        if self.max_prefill_tokens < self.page_size {
            return bad(format!(
                "max_prefill_tokens ({}) must be >= page_size ({})",
                self.max_prefill_tokens, self.page_size
            ));
        }
        if let Some(c) = self.chunked_prefill_size {
            if c < self.page_size {
                return bad(format!(
                    "chunked_prefill_size ({c}) must be >= page_size ({})",
                    self.page_size
                ));
            }
        }
        if !(self.schedule_conservativeness.is_finite() && self.schedule_conservativeness > 0.0) {
            return bad("schedule_conservativeness must be a positive number".into());
        }
        if self.context_length < 2 || self.context_length > i32_max {
            return bad("context_length must be in 2..=2^31-1".into());
        }
        for (name, v) in [
            ("init_new_token_ratio", self.init_new_token_ratio),
            (
                "min_new_token_ratio_factor",
                self.min_new_token_ratio_factor,
            ),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return bad(format!("{name} must be in (0, 1], got {v}"));
            }
        }
        if self.new_token_ratio_decay_steps == 0 {
            return bad("new_token_ratio_decay_steps must be >= 1".into());
        }
        if self.clip_max_new_tokens == 0 {
            return bad("clip_max_new_tokens must be >= 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for p in SchedulePolicy::ALL {
            assert_eq!(p.as_str().parse::<SchedulePolicy>().unwrap(), p);
        }
        assert!("lifo".parse::<SchedulePolicy>().is_err());
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert!(SchedulerConfig::new(1024).validate().is_ok());
        let mut c = SchedulerConfig::new(1024);
        c.page_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("page_size"));
        let mut c = SchedulerConfig::new(1024);
        c.chunked_prefill_size = Some(2);
        c.page_size = 4;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("chunked_prefill_size"));
        let mut c = SchedulerConfig::new(1024);
        c.init_new_token_ratio = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("init_new_token_ratio"));
        let c = SchedulerConfig::new(2);
        assert!(SchedulerConfig { page_size: 4, ..c }.validate().is_err());
    }
}
