//! Admission: which prefill work runs this step, under the token budgets and the KV reserve.
//!
//! Budgets (SGLang's `PrefillAdder`): at most `max_prefill_tokens` new tokens per step and
//! `chunked_prefill_size` per chunk (both less the decode tokens of a mixed step); a request is
//! admitted only while free + evictable slots cover its uncached input plus its clipped
//! `max_new_tokens`, on top of `new_token_ratio * remaining output` reserved for every running
//! request. When nothing at all is admitted or running, the first request is admitted whatever
//! its output reserve, so the scheduler always makes progress.

use crate::config::SchedulePolicy;
use crate::error::SchedError;
use crate::policy::{cache_key, count_overtakes, effective_policy, order_waiting};
use crate::request::{FinishReason, ReqState, Request, OUTPUT_RESERVE};
use crate::scheduler::Scheduler;

impl Scheduler {
    /// Fills `self.batch` with this step's prefill work: the chunked request's next chunk, then
    /// newly admitted requests in policy order. `num_decode` decode tokens share the step.
    /// `ahead` (a plan made before the update of the step in flight): a request that can never
    /// fit again is left for the next plain step to drop, so that admitting nothing changes
    /// nothing.
    pub(crate) fn admit(&mut self, num_decode: usize, ahead: bool) -> Result<(), SchedError> {
        let ps = self.kv.page;
        let mut rem_input = self.cfg.max_prefill_tokens as i64 - num_decode as i64;
        let chunking = self.cfg.chunked_prefill_size.is_some();
        let mut rem_chunk = self
            .cfg
            .chunked_prefill_size
            .map_or(i64::MAX, |c| c as i64 - num_decode as i64);
        let clip = self.cfg.clip_max_new_tokens;
        let mut reserve = 0.0;

        if let Some(ci) = self.chunked {
            // At least one page per step, so decode tokens of a mixed step cannot starve it.
            let limit = rem_input.min(rem_chunk).max(ps as i64) as usize / ps * ps;
            let r = self.slab.get(ci);
            let remaining = r.remaining_fill();
            let len = r.slots.len();
            let mut extend = remaining.min(limit);
            let room = self.kv.reclaimable();
            if self.kv.new_page_tokens(len, extend) > room {
                // Short of memory (decode grew meanwhile): a smaller chunk, or none this step
                // (decided before evicting anything).
                extend = extend.min(room / ps * ps);
                if extend == 0 {
                    return Ok(());
                }
            }
            let r = self.slab.get_mut(ci);
            if !self
                .kv
                .extend_slots(&mut r.slots, extend, &mut self.pages)?
            {
                return Err(SchedError::Integrity(
                    "a chunk within the reclaimable slots could not be allocated".into(),
                ));
            }
            self.batch.push((ci, extend));
            rem_input -= extend as i64;
            rem_chunk -= extend as i64;
            if extend < remaining {
                return Ok(());
            }
            self.chunked = None;
            reserve += r.remaining_new().min(clip) as f64;
        }

        if self.waiting.is_empty() || self.free_rows.is_empty() || rem_input <= 0 || rem_chunk <= 0
        {
            return Ok(());
        }
        let mut order = std::mem::take(&mut self.order);
        order_waiting(
            &self.cfg,
            self.round,
            &self.waiting,
            &mut self.slab,
            &mut self.kv,
            &mut self.policy_scratch,
            &mut order,
        );
        let ratio = self.ratio.value;
        for &i in &self.running {
            reserve += self.slab.get(i).remaining_new().min(clip) as f64 * ratio;
        }
        let mut rem_total = self.kv.reclaimable() as f64 - reserve;
        let capacity = self.kv.capacity();
        self.arrivals.clear();
        let mut left_queue = false;

        for &idx in &order {
            if self.free_rows.is_empty() || rem_input <= 0 || rem_chunk <= 0 {
                break;
            }
            if self.slab.get(idx).enqueued_round == self.round {
                // Retracted by this very step (mixed decode ran short): not back before the next.
                continue;
            }
            let fill = self.slab.get(idx).tokens.len();
            if self.kv.pages_for(fill) * ps > capacity {
                // Only a retracted request can grow this long; it can never run again.
                if ahead {
                    continue;
                }
                left_queue = true;
                self.drop_request(idx, FinishReason::AbortKvCapacity);
                continue;
            }
            let nothing_else =
                self.batch.is_empty() && self.running.is_empty() && self.chunked.is_none();
            let r = self.slab.get_mut(idx);
            let room = fill + r.remaining_new().min(OUTPUT_RESERVE);
            let Request {
                tokens,
                slots,
                max_cached_prefix,
                ..
            } = &mut *r;
            debug_assert!(slots.is_empty());
            // Sized once for the prompt and the first outputs: decode steps then append in place.
            slots.reserve_exact(room);
            let key = cache_key(tokens);
            let key = &key[..key.len().min(*max_cached_prefix)];
            let (matched, node) = self.kv.match_prefix(key, slots);
            let extend_full = fill - matched;
            let input_tokens = self.kv.pages_for(extend_full) * ps;
            let total = input_tokens + r.remaining_new().min(clip);
            if total as f64 > rem_total && !nothing_else {
                r.slots.clear();
                break;
            }
            let limit = rem_input.min(rem_chunk) as usize;
            let (extend, is_chunk) = if input_tokens <= limit {
                (extend_full, false)
            } else if chunking {
                (limit / ps * ps, true)
            } else if self.batch.is_empty() {
                // A prompt longer than max_prefill_tokens runs alone.
                (extend_full, false)
            } else {
                (0, false)
            };
            if extend == 0 {
                r.slots.clear();
                break;
            }
            let lock = self.kv.lock(node)?;
            debug_assert_eq!(r.slots.len(), matched);
            if !self
                .kv
                .extend_slots(&mut r.slots, extend, &mut self.pages)?
            {
                let mut lock = lock;
                self.kv.unlock(&mut lock)?;
                r.slots.clear();
                break;
            }
            r.kv_len = matched;
            r.cached_len = matched;
            r.lock = lock;
            r.row = self.free_rows.pop();
            r.table_dirty_from = 0;
            r.state = ReqState::Prefilling;
            self.hit_tokens += matched as u64;
            self.queried_tokens += fill as u64;
            self.arrivals.push(r.arrival);
            self.batch.push((idx, extend));
            left_queue = true;
            rem_total -= total as f64;
            rem_input -= extend as i64;
            rem_chunk -= extend as i64;
            if is_chunk {
                self.chunked = Some(idx);
                break;
            }
        }
        self.order = order;
        let policy = effective_policy(&self.cfg, self.kv.radix_enabled, self.waiting.len());
        if left_queue {
            let slab = &self.slab;
            self.waiting
                .retain(|&i| slab.contains(i) && slab.get(i).state == ReqState::Waiting);
        }
        if policy != SchedulePolicy::Fcfs {
            count_overtakes(&self.waiting, &mut self.slab, &mut self.arrivals);
        }
        Ok(())
    }

    /// Drops a request the runner does not know (waiting, or retracted), reporting `reason`.
    pub(crate) fn drop_request(&mut self, idx: u32, reason: FinishReason) {
        let id = self.slab.remove(idx).id;
        self.ids.remove(&id);
        self.pending_report.push(id, reason);
        self.num_aborted += 1;
    }
}
