//! `schedule`: choose the step (prefill-priority, or mixed) and write its plan.

use crate::error::SchedError;
use crate::plan::{StepKind, StepPlan};
use crate::request::{placeholder, ReqState};
use crate::scheduler::{Inflight, Scheduler};

impl Scheduler {
    /// Plans the next step into `plan` (cleared first; its buffers are reused). Every plan, an
    /// idle one too, is answered by one `update` before the next `schedule` (an idle plan's
    /// update takes no tokens and reports the aborts since the last one).
    ///
    /// Without `enable_mixed_chunk` a step is a prefill step whenever anything can be
    /// prefilled (the chunked request or new admissions), else a decode step of every running
    /// request. With it, the running requests decode in the same batch as the prefill work.
    pub fn schedule_into(&mut self, plan: &mut StepPlan) -> Result<(), SchedError> {
        self.schedule_step(plan, false)
    }

    /// Like [`Scheduler::schedule_into`], but when every table write is exactly the new tokens'
    /// slots, `table_slots` is left empty and `plan.table_slots_shared` set: the writes' slots
    /// are `out_cache_loc` (see [`StepPlan::table_write_slots`]). For a runner that can use one
    /// array for both; a large prefill step then writes 4 bytes less per new token.
    pub fn schedule_into_shared(&mut self, plan: &mut StepPlan) -> Result<(), SchedError> {
        self.schedule_step(plan, true)
    }

    fn schedule_step(&mut self, plan: &mut StepPlan, share: bool) -> Result<(), SchedError> {
        if self.num_inflight > 0 {
            return Err(SchedError::StepInFlight);
        }
        let planned = self.plan_step(plan, share, None)?;
        debug_assert!(planned);
        Ok(())
    }

    /// Chooses the step and writes its plan. `ahead` (the round of the step in flight, with
    /// `running` already replaced by the decode set as if that step had completed): returns
    /// false, having changed nothing, when the plan would be idle or decode would need to
    /// reclaim slots by retraction.
    pub(crate) fn plan_step(
        &mut self,
        plan: &mut StepPlan,
        share: bool,
        ahead: Option<u64>,
    ) -> Result<bool, SchedError> {
        plan.clear();
        self.round += 1;
        self.batch.clear();
        let mut decode_ready = false;
        if self.cfg.enable_mixed_chunk && !self.running.is_empty() {
            if !self.prepare_decode(ahead.is_some())? {
                self.round -= 1;
                return Ok(false);
            }
            decode_ready = true;
        }
        let num_decode = if decode_ready { self.running.len() } else { 0 };
        self.admit(num_decode, ahead.is_some())?;
        let has_prefill = !self.batch.is_empty();
        if !has_prefill && !decode_ready && !self.running.is_empty() {
            if !self.prepare_decode(ahead.is_some())? {
                self.round -= 1;
                return Ok(false);
            }
            decode_ready = true;
        }
        let has_decode = decode_ready && !self.running.is_empty();
        plan.kind = match (has_prefill, has_decode) {
            (true, true) => StepKind::Mixed,
            (true, false) => StepKind::Prefill,
            (false, true) => StepKind::Decode,
            (false, false) => StepKind::Idle,
        };
        if has_decode {
            self.batch.extend(self.running.iter().map(|&i| (i, 1)));
            self.ratio.on_decode_step();
        } else if plan.kind == StepKind::Idle {
            if ahead.is_some() {
                self.round -= 1;
                return Ok(false);
            }
            self.ratio.on_idle();
        }
        self.write_plan(plan, share, ahead);
        plan.finished_ids.append(&mut self.pending_finished);
        plan.aborted_ids.append(&mut self.pending_aborted);
        plan.retracted_ids.append(&mut self.pending_retracted);
        Ok(true)
    }

    /// Convenience: plans the next step into a new `StepPlan`.
    pub fn schedule(&mut self) -> Result<StepPlan, SchedError> {
        let mut plan = StepPlan::default();
        self.schedule_into(&mut plan)?;
        Ok(plan)
    }

    /// Writes `self.batch` (request, new tokens) into the plan's flat arrays and records it
    /// as a step in flight. With `share`, `table_slots` is left to `out_cache_loc` when the
    /// two would be equal. With `ahead` (the round of the step in flight), a request that
    /// samples in that step reads its token as a placeholder.
    fn write_plan(&mut self, plan: &mut StepPlan, share: bool, ahead: Option<u64>) {
        let emit_kv = self.cfg.emit_kv_indices;
        let (mut tokens, mut table, mut kv) = (0, 0, 0);
        let mut only_new = true;
        for &(i, extend) in &self.batch {
            let r = self.slab.get(i);
            let seq = r.slots.len();
            tokens += extend;
            table += seq - r.table_dirty_from;
            kv += seq;
            only_new &= r.table_dirty_from == seq - extend;
        }
        plan.table_slots_shared = share && only_new;
        if plan.table_slots_shared {
            table = 0;
        }
        plan.reserve(self.batch.len(), tokens, table, emit_kv.then_some(kv));
        plan.qo_indptr.push(0);
        plan.table_indptr.push(0);
        if emit_kv {
            plan.kv_indptr.push(0);
        }
        let ahead_round = ahead.unwrap_or(0);
        let round = self.round;
        let step = &mut self.inflight[self.num_inflight];
        step.clear();
        step.round = round;
        for &(i, extend) in &self.batch {
            let r = self.slab.get_mut(i);
            let reads_placeholder = ahead_round != 0 && r.sample_round == ahead_round;
            if reads_placeholder {
                // It samples in the step in flight: that token is this row's input.
                debug_assert_eq!((extend, r.tokens.len() + 1), (1, r.slots.len()));
                r.tokens.push(placeholder(r.sample_index));
                plan.num_placeholders += 1;
            }
            let seq = r.slots.len();
            let prefix = seq - extend;
            debug_assert!(prefix >= r.kv_len && seq <= r.tokens.len());
            let row = r.row.expect("an admitted request has a table row") as i32;
            plan.req_ids.push(r.id);
            plan.req_pool_indices.push(row);
            plan.prefix_lens.push(prefix as i32);
            plan.extend_lens.push(extend as i32);
            plan.seq_lens.push(seq as i32);
            plan.qo_indptr
                .push(plan.input_ids.len() as i32 + extend as i32);
            plan.input_ids
                .extend_from_slice(as_i32(&r.tokens[prefix..seq]));
            plan.positions.extend(prefix as i32..seq as i32);
            plan.out_cache_loc
                .extend_from_slice(as_i32(&r.slots[prefix..seq]));
            plan.table_rows.push(row);
            plan.table_starts.push(r.table_dirty_from as i32);
            if plan.table_slots_shared {
                plan.table_indptr.push(plan.out_cache_loc.len() as i32);
            } else {
                plan.table_slots
                    .extend_from_slice(as_i32(&r.slots[r.table_dirty_from..seq]));
                plan.table_indptr.push(plan.table_slots.len() as i32);
            }
            r.table_dirty_from = seq;
            if emit_kv {
                plan.kv_indices.extend_from_slice(as_i32(&r.slots[..seq]));
                plan.kv_indptr.push(plan.kv_indices.len() as i32);
            }
            let sample = seq == r.tokens.len();
            plan.sample_mask.push(sample);
            if sample {
                r.sample_round = round;
                r.sample_index = step.num_sampled as u32;
                step.num_last += usize::from(r.generated() + 1 >= r.max_new_tokens);
                if r.state == ReqState::Prefilling && !reads_placeholder {
                    step.promoted.push(step.rows.len() as u32);
                }
                step.num_sampled += 1;
            }
            step.rows.push(Inflight {
                idx: i,
                extend,
                sample,
                alive: true,
            });
        }
        self.num_inflight += 1;
    }
}

/// Token and slot ids as the plan's int32: real ids are below 2^31 (tokens are checked at
/// `add_request`, slots are below the capacity, itself at most `i32::MAX`), where the two
/// types have the same values, and a placeholder's u32 is the bit pattern of its negative
/// int32; a plain copy (memcpy) instead of a per-element conversion.
#[inline]
fn as_i32(ids: &[u32]) -> &[i32] {
    // SAFETY: u32 and i32 have the same size and alignment and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(ids.as_ptr().cast::<i32>(), ids.len()) }
}

#[cfg(test)]
mod tests {
    use crate::{RequestOptions, Scheduler, SchedulerConfig, StepKind};

    #[test]
    fn shared_prefix_is_adopted_and_rewritten_in_the_table() {
        let mut s = Scheduler::new(SchedulerConfig::new(64)).unwrap();
        let prompt: Vec<u32> = (10..18).collect();
        for id in [1, 2] {
            s.add_request(id, prompt.clone(), 4, RequestOptions::default())
                .unwrap();
        }
        let plan = s.schedule().unwrap();
        assert_eq!((plan.kind, plan.batch_size()), (StepKind::Prefill, 2));
        assert_eq!(plan.table_starts, vec![0, 0]);
        let first: Vec<i32> = plan.out_cache_loc[..8].to_vec();
        s.update(&[5, 6], &[]).unwrap();
        assert_eq!(
            s.stats().held_tokens,
            0,
            "both prompts now live in the tree once"
        );
        let plan = s.schedule().unwrap();
        assert_eq!(plan.kind, StepKind::Decode);
        // Request 1 only writes its new slot; request 2 rewrites the adopted prefix too.
        assert_eq!(plan.table_starts, vec![8, 0]);
        assert_eq!(&plan.table_slots[1..9], &first[..]);
        s.update(&[7, 7], &[]).unwrap();
        s.check_integrity().unwrap();
    }

    #[test]
    fn shared_plans_equal_full_plans_once_expanded() {
        let new = || {
            let mut s = Scheduler::new(SchedulerConfig::new(256)).unwrap();
            let head: Vec<u32> = (10..30).collect();
            for id in 0..4u64 {
                let mut prompt = head.clone();
                prompt.push(100 + id as u32);
                s.add_request(id, prompt, 3, RequestOptions::default())
                    .unwrap();
            }
            s
        };
        let (mut full, mut shared) = (new(), new());
        let mut seen = [false; 2];
        while full.num_requests() > 0 {
            let a = full.schedule().unwrap();
            let mut b = crate::StepPlan::default();
            shared.schedule_into_shared(&mut b).unwrap();
            assert!(!a.table_slots_shared);
            seen[usize::from(b.table_slots_shared)] = true;
            assert_eq!(b.table_write_slots(), &a.table_slots[..]);
            b.table_slots = a.table_slots.clone();
            b.table_slots_shared = false;
            assert_eq!(a, b);
            let tokens = vec![7; a.num_sampled()];
            assert_eq!(
                full.update(&tokens, &[]).unwrap(),
                shared.update(&tokens, &[]).unwrap()
            );
        }
        // The first prefill shares; the second step adopts the cached head (rewrites rows).
        assert_eq!(seen, [true, true]);
    }

    #[test]
    fn prefill_priority_then_decode_and_protocol_errors() {
        let mut s = Scheduler::new(SchedulerConfig::new(64)).unwrap();
        s.add_request(1, vec![3, 4, 5], 3, RequestOptions::default())
            .unwrap();
        assert_eq!(s.update(&[], &[]), Err(crate::SchedError::NoStepInFlight));
        s.schedule().unwrap();
        assert_eq!(s.schedule(), Err(crate::SchedError::StepInFlight));
        assert!(matches!(
            s.update(&[], &[]),
            Err(crate::SchedError::SampleCountMismatch { .. })
        ));
        s.update(&[9], &[]).unwrap();
        s.add_request(2, vec![6, 7], 3, RequestOptions::default())
            .unwrap();
        let plan = s.schedule().unwrap();
        assert_eq!(
            (plan.kind, plan.req_ids.clone()),
            (StepKind::Prefill, vec![2])
        );
        s.update(&[9], &[]).unwrap();
        let plan = s.schedule().unwrap();
        assert_eq!(
            (plan.kind, plan.req_ids.clone()),
            (StepKind::Decode, vec![1, 2])
        );
        s.update(&[9, 9], &[]).unwrap();
        assert!(!s.flush_cache().unwrap());
    }
}
