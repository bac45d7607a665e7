//! The scheduler: request bookkeeping (add, abort, finish, retract), stats and cache flushing.
//! The step itself is in `step.rs` (schedule), `admission.rs`, `decode.rs` and `update.rs`.

use std::collections::HashMap;

use crate::config::SchedulerConfig;
use crate::error::SchedError;
use crate::kv::KvPool;
use crate::plan::FinishedBatch;
use crate::policy::PolicyScratch;
use crate::ratio::NewTokenRatio;
use crate::request::{FinishReason, ReqState, Request, RequestOptions};
use crate::slab::Slab;

/// One request of a plan in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inflight {
    pub idx: u32,
    pub extend: usize,
    pub sample: bool,
    /// False once the request left (aborted, or finished by the update of an earlier step)
    /// while the step ran: its update ignores the row.
    pub alive: bool,
}

/// A plan awaiting its `update` (at most two: one planned ahead of the other's update).
#[derive(Debug, Default)]
pub(crate) struct InflightStep {
    pub rows: Vec<Inflight>,
    /// The scheduling round that planned it.
    pub round: u64,
    pub num_sampled: usize,
    /// Rows whose sampled token is their request's last by `max_new_tokens`.
    pub num_last: usize,
    /// Rows (indices into `rows`) whose prefill ends in this step: they decode next.
    pub promoted: Vec<u32>,
}

impl InflightStep {
    pub fn clear(&mut self) {
        self.rows.clear();
        self.promoted.clear();
        self.num_sampled = 0;
        self.num_last = 0;
        self.round = 0;
    }
}

/// Counters and gauges; see `Scheduler::stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SchedStats {
    pub running: usize,
    pub waiting: usize,
    pub prefilling: usize,
    pub capacity_tokens: usize,
    pub free_tokens: usize,
    /// Slots held by the radix tree (`evictable_tokens` of them unlocked).
    pub cached_tokens: usize,
    pub evictable_tokens: usize,
    /// Slots owned by requests (not in the tree).
    pub held_tokens: usize,
    /// Slots that cannot be reclaimed now: `capacity - free - evictable`.
    pub used_tokens: usize,
    pub token_usage: f64,
    /// Cached prompt tokens found at admission, and prompt tokens admitted.
    pub hit_tokens: u64,
    pub queried_tokens: u64,
    pub cache_hit_rate: f64,
    pub num_retractions: u64,
    pub num_finished: u64,
    pub num_aborted: u64,
    pub num_steps: u64,
    pub new_token_ratio: f64,
}

/// Continuous-batching scheduler over a radix KV cache. Per step: `schedule_into` -> run the
/// plan -> `update_into` with the sampled tokens.
pub struct Scheduler {
    pub(crate) cfg: SchedulerConfig,
    pub(crate) kv: KvPool,
    pub(crate) slab: Slab,
    pub(crate) ids: HashMap<u64, u32>,
    /// Waiting requests in arrival order.
    pub(crate) waiting: Vec<u32>,
    /// Decoding requests, in batch order.
    pub(crate) running: Vec<u32>,
    /// The one partially prefilled request, if any.
    pub(crate) chunked: Option<u32>,
    pub(crate) free_rows: Vec<u32>,
    pub(crate) ratio: NewTokenRatio,
    pub(crate) round: u64,
    pub(crate) next_arrival: u64,
    /// Plans awaiting their update, oldest first; the first `num_inflight` are live.
    pub(crate) inflight: [InflightStep; 2],
    pub(crate) num_inflight: usize,
    /// The decode set of a plan made ahead (`running` as if the step in flight had completed).
    pub(crate) ahead_running: Vec<u32>,
    // Requests that left the running set since the last plan.
    pub(crate) pending_finished: Vec<u64>,
    pub(crate) pending_aborted: Vec<u64>,
    pub(crate) pending_retracted: Vec<u64>,
    /// Aborts since the last update, reported by the next one.
    pub(crate) pending_report: FinishedBatch,
    pub(crate) hit_tokens: u64,
    pub(crate) queried_tokens: u64,
    pub(crate) num_retractions: u64,
    pub(crate) num_finished: u64,
    pub(crate) num_aborted: u64,
    // Buffers reused across steps.
    pub(crate) order: Vec<u32>,
    pub(crate) batch: Vec<(u32, usize)>,
    pub(crate) pages: Vec<u32>,
    pub(crate) arrivals: Vec<u64>,
    pub(crate) policy_scratch: PolicyScratch,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Result<Self, SchedError> {
        cfg.validate()?;
        let kv = KvPool::new(cfg.capacity_tokens, cfg.page_size, !cfg.disable_radix_cache);
        Ok(Scheduler {
            free_rows: (0..cfg.max_running_requests as u32).rev().collect(),
            ratio: NewTokenRatio::new(&cfg),
            kv,
            cfg,
            slab: Slab::default(),
            ids: HashMap::new(),
            waiting: Vec::new(),
            running: Vec::new(),
            chunked: None,
            round: 0,
            next_arrival: 0,
            inflight: Default::default(),
            num_inflight: 0,
            ahead_running: Vec::new(),
            pending_finished: Vec::new(),
            pending_aborted: Vec::new(),
            pending_retracted: Vec::new(),
            pending_report: FinishedBatch::default(),
            hit_tokens: 0,
            queried_tokens: 0,
            num_retractions: 0,
            num_finished: 0,
            num_aborted: 0,
            order: Vec::new(),
            batch: Vec::new(),
            pages: Vec::new(),
            arrivals: Vec::new(),
            policy_scratch: PolicyScratch::default(),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Queues a request. Refused (nothing changes) for a duplicate id, an empty prompt,
    /// `max_new_tokens == 0`, a prompt + max_new_tokens beyond `context_length`, a prompt
    /// larger than the KV pool, or a token id beyond int32.
    pub fn add_request(
        &mut self,
        id: u64,
        prompt: Vec<u32>,
        max_new_tokens: usize,
        opts: RequestOptions,
    ) -> Result<(), SchedError> {
        if self.ids.contains_key(&id) {
            return Err(SchedError::DuplicateId(id));
        }
        if prompt.is_empty() {
            return Err(SchedError::EmptyPrompt(id));
        }
        let bad = |m: String| Err(SchedError::InvalidRequest(format!("request {id}: {m}")));
        if max_new_tokens == 0 {
            return bad("max_new_tokens must be >= 1".into());
        }
        let total = prompt.len().saturating_add(max_new_tokens);
        if total > self.cfg.context_length {
            return bad(format!(
                "prompt ({} tokens) + max_new_tokens ({max_new_tokens}) exceeds context_length ({})",
                prompt.len(),
                self.cfg.context_length
            ));
        }
        if self.kv.pages_for(prompt.len()) * self.kv.page > self.kv.capacity() {
            return bad(format!(
                "prompt ({} tokens) does not fit the KV pool ({} slots)",
                prompt.len(),
                self.kv.capacity()
            ));
        }
        if let Some(t) = prompt.iter().find(|&&t| t > i32::MAX as u32) {
            return bad(format!("token id {t} exceeds int32"));
        }
        let req = Request::new(
            id,
            prompt,
            max_new_tokens,
            opts,
            self.next_arrival,
            self.round,
        );
        self.next_arrival += 1;
        let idx = self.slab.insert(req);
        self.ids.insert(id, idx);
        self.waiting.push(idx);
        Ok(())
    }

    /// Aborts a request in any state; false for an unknown (or already finished) id. Its
    /// computed KV is left cached in the tree (unlocked), its own slots are freed; it is reported
    /// with reason `Abort` by the next `update` (and in `aborted_ids` of the next plan if the
    /// runner knew it).
    pub fn abort(&mut self, id: u64) -> Result<bool, SchedError> {
        let Some(&idx) = self.ids.get(&id) else {
            return Ok(false);
        };
        if self.slab.get(idx).state == ReqState::Waiting {
            let pos = self
                .waiting
                .iter()
                .position(|&i| i == idx)
                .expect("waiting request");
            self.waiting.remove(pos);
            self.drop_request(idx, FinishReason::Abort);
        } else {
            for step in &mut self.inflight[..self.num_inflight] {
                for e in step.rows.iter_mut().filter(|e| e.idx == idx) {
                    e.alive = false;
                }
            }
            self.remove_admitted(idx, FinishReason::Abort, None)?;
        }
        Ok(true)
    }

    /// Returns a request's slots (its computed prefix stays cached in the tree) and its row.
    pub(crate) fn release_kv(&mut self, idx: u32) -> Result<(), SchedError> {
        let r = self.slab.get_mut(idx);
        let kv = &mut self.kv;
        kv.cache_computed(
            &r.tokens,
            &mut r.slots,
            r.kv_len,
            &mut r.cached_len,
            &mut r.lock,
            false,
        )?;
        kv.free_positions(&r.slots, r.cached_len, r.slots.len())?;
        r.slots.clear();
        r.kv_len = 0;
        r.cached_len = 0;
        r.table_dirty_from = 0;
        if let Some(row) = r.row.take() {
            self.free_rows.push(row);
        }
        Ok(())
    }

    /// Removes an admitted request for good (finish or abort), reporting it.
    pub(crate) fn remove_admitted(
        &mut self,
        idx: u32,
        reason: FinishReason,
        report: Option<&mut FinishedBatch>,
    ) -> Result<(), SchedError> {
        self.release_kv(idx)?;
        if self.chunked == Some(idx) {
            self.chunked = None;
        }
        if let Some(pos) = self.running.iter().position(|&i| i == idx) {
            self.running.remove(pos);
        }
        self.finalize(idx, reason, report);
        Ok(())
    }

    /// Drops a request whose KV was already released, and records why it left.
    pub(crate) fn finalize(
        &mut self,
        idx: u32,
        reason: FinishReason,
        report: Option<&mut FinishedBatch>,
    ) {
        let id = self.slab.remove(idx).id;
        self.ids.remove(&id);
        match reason {
            FinishReason::Abort | FinishReason::AbortKvCapacity => {
                self.pending_aborted.push(id);
                self.num_aborted += 1;
            }
            _ => {
                self.pending_finished.push(id);
                self.num_finished += 1;
            }
        }
        match report {
            Some(out) => out.push(id, reason),
            None => self.pending_report.push(id, reason),
        }
    }

    /// Sends an admitted request back to the waiting queue, keeping its generated tokens; its
    /// computed prefix is cached so that re-admission is cheap.
    pub(crate) fn retract(&mut self, idx: u32) -> Result<(), SchedError> {
        self.release_kv(idx)?;
        if self.chunked == Some(idx) {
            self.chunked = None;
        }
        if let Some(pos) = self.running.iter().position(|&i| i == idx) {
            self.running.remove(pos);
        }
        let round = self.round;
        let r = self.slab.get_mut(idx);
        r.state = ReqState::Waiting;
        r.enqueued_round = round;
        r.overtakes = 0;
        let (arrival, id) = (r.arrival, r.id);
        let slab = &self.slab;
        let pos = self
            .waiting
            .partition_point(|&i| slab.get(i).arrival < arrival);
        self.waiting.insert(pos, idx);
        self.pending_retracted.push(id);
        self.num_retractions += 1;
        Ok(())
    }

    /// Empties the radix cache; only when no request is admitted and no plan is in flight
    /// (false otherwise).
    pub fn flush_cache(&mut self) -> Result<bool, SchedError> {
        if self.num_inflight > 0
            || !self.running.is_empty()
            || self.free_rows.len() < self.cfg.max_running_requests
        {
            return Ok(false);
        }
        self.kv.flush()?;
        Ok(true)
    }

    pub fn num_requests(&self) -> usize {
        self.ids.len()
    }

    pub fn stats(&self) -> SchedStats {
        let capacity = self.kv.capacity();
        let free = self.kv.alloc.available();
        let cached = self.kv.tree.total_size();
        let evictable = self.kv.tree.evictable_size();
        let used = capacity - free - evictable;
        let admitted = self.cfg.max_running_requests - self.free_rows.len();
        SchedStats {
            running: self.running.len(),
            waiting: self.waiting.len(),
            prefilling: admitted - self.running.len(),
            capacity_tokens: capacity,
            free_tokens: free,
            cached_tokens: cached,
            evictable_tokens: evictable,
            held_tokens: capacity - free - cached,
            used_tokens: used,
            token_usage: used as f64 / capacity as f64,
            hit_tokens: self.hit_tokens,
            queried_tokens: self.queried_tokens,
            cache_hit_rate: if self.queried_tokens == 0 {
                0.0
            } else {
                self.hit_tokens as f64 / self.queried_tokens as f64
            },
            num_retractions: self.num_retractions,
            num_finished: self.num_finished,
            num_aborted: self.num_aborted,
            num_steps: self.round,
            new_token_ratio: self.ratio.value,
        }
    }
}
