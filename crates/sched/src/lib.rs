//! `sglrs-sched`: a continuous-batching scheduler for LLM serving.
//!
//! Every step, [`Scheduler::schedule_into`] decides which requests run and which tokens they
//! compute, and writes a data-only [`StepPlan`] (flat arrays: tokens, positions, KV slots and
//! the writes that keep the runner's `req_to_token` table current). After the forward,
//! [`Scheduler::update_into`] takes the sampled tokens and reports finished requests. For
//! overlap scheduling, [`Scheduler::schedule_ahead_into`] plans the next step while one is
//! still in flight (its sampled tokens appear as placeholders); updates commit oldest first.
//!
//! The scheduler owns the KV slots and a radix tree over token ids (`sglrs-radix`): admitted
//! requests reuse cached prefixes, every prefilled chunk is cached at once so concurrent
//! requests share it, and the waiting queue can be ordered to maximise reuse (`lpm`,
//! `dfs-weight`). Long prompts are prefilled in chunks; when the pool runs out, cached prefixes
//! are evicted, then running requests retracted (and re-admitted later). See
//! `docs/design.md` for the KV ownership protocol and the plan contract.

mod admission;
mod ahead;
mod config;
mod decode;
mod dfs;
mod error;
mod integrity;
mod kv;
mod plan;
mod policy;
mod ratio;
mod request;
mod scheduler;
mod slab;
mod step;
mod update;

pub use config::{SchedulePolicy, SchedulerConfig};
pub use error::SchedError;
pub use plan::{FinishedBatch, StepKind, StepPlan};
pub use request::{prompt_capacity, FinishReason, RequestOptions};
pub use scheduler::{SchedStats, Scheduler};
pub use sglrs_radix::{SlotId, TokenId};
