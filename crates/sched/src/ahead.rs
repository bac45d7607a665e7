//! `schedule_ahead`: plan step N while step U is still in flight (overlap scheduling), as if U
//! had completed but without its sampled tokens.
//!
//! A request that samples in U and decodes in N reads U's token through a placeholder input id
//! `-(j + 1)` (`j`: its index among U's sampled rows), which the runner resolves on the device.
//! A request whose U token is its last by length is left out of N; a finish that only
//! `update(U)` can know (stop token, Python, abort) leaves a dead row in N, ignored by
//! `update(N)`. Anything that needs U's outcome first (retraction) makes it decline.

use crate::error::SchedError;
use crate::plan::StepPlan;
use crate::scheduler::Scheduler;

impl Scheduler {
    /// Plans the next step while exactly one step (U) is in flight, as if U had completed.
    /// `Ok(false)`: nothing changed (the plan would be idle, or decode would need to retract;
    /// no request, queue, slot or step state moved, though the prefix cache may have recorded
    /// the admission lookups as recent use); the caller updates U and schedules as usual.
    /// `Ok(true)`: the plan is written and two steps are in flight; `update_into` commits them
    /// oldest first.
    pub fn schedule_ahead_into(&mut self, plan: &mut StepPlan) -> Result<bool, SchedError> {
        self.schedule_ahead_step(plan, false)
    }

    /// [`Scheduler::schedule_ahead_into`] with `table_slots` shared as in
    /// [`Scheduler::schedule_into_shared`].
    pub fn schedule_ahead_into_shared(&mut self, plan: &mut StepPlan) -> Result<bool, SchedError> {
        self.schedule_ahead_step(plan, true)
    }

    /// Convenience: `schedule_ahead_into` a new `StepPlan` (None: not planned ahead).
    pub fn schedule_ahead(&mut self) -> Result<Option<StepPlan>, SchedError> {
        let mut plan = StepPlan::default();
        Ok(self.schedule_ahead_into(&mut plan)?.then_some(plan))
    }

    fn schedule_ahead_step(
        &mut self,
        plan: &mut StepPlan,
        share: bool,
    ) -> Result<bool, SchedError> {
        match self.num_inflight {
            0 => return Err(SchedError::NoStepInFlight),
            1 => {}
            _ => return Err(SchedError::StepInFlight),
        }
        let round = self.inflight[0].round;
        // Usually (steady decode) the decode set is `running` itself; else a copy stands in.
        let swap = self.collect_ahead_running();
        if swap {
            std::mem::swap(&mut self.running, &mut self.ahead_running);
        }
        let planned = self.plan_step(plan, share, Some(round));
        if swap {
            std::mem::swap(&mut self.running, &mut self.ahead_running);
        }
        planned
    }

    /// The requests that decode after U, in the order a plain `schedule` after `update(U)`
    /// would see them (running ones, then those whose prefill ends in U), less those whose U
    /// token is their last by length. False when that is `running` as it is; else true, with
    /// the set in `ahead_running`.
    fn collect_ahead_running(&mut self) -> bool {
        let u = &self.inflight[0];
        if u.num_last == 0 && u.promoted.is_empty() {
            return false;
        }
        let slab = &self.slab;
        let ends_in_u = |i: u32| {
            let r = slab.get(i);
            r.generated() + 1 >= r.max_new_tokens
        };
        self.ahead_running.clear();
        self.ahead_running.extend(
            self.running
                .iter()
                .copied()
                .filter(|&i| slab.get(i).sample_round != u.round || !ends_in_u(i)),
        );
        for &k in &u.promoted {
            let e = u.rows[k as usize];
            if e.alive && !ends_in_u(e.idx) {
                self.ahead_running.push(e.idx);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        FinishReason, FinishedBatch, RequestOptions, SchedError, Scheduler, SchedulerConfig,
        StepKind, StepPlan,
    };

    fn sched(capacity: usize, f: impl FnOnce(&mut SchedulerConfig)) -> Scheduler {
        let mut cfg = SchedulerConfig::new(capacity);
        cfg.context_length = 256;
        cfg.emit_kv_indices = true;
        f(&mut cfg);
        Scheduler::new(cfg).unwrap()
    }

    fn add(s: &mut Scheduler, id: u64, prompt_len: usize, max_new: usize) {
        let prompt = (0..prompt_len as u32)
            .map(|p| 10 + p + 100 * id as u32)
            .collect();
        let opts = RequestOptions {
            eos_token_ids: vec![2],
            ..Default::default()
        };
        s.add_request(id, prompt, max_new, opts).unwrap();
    }

    fn ahead(s: &mut Scheduler) -> StepPlan {
        let plan = s.schedule_ahead().unwrap().expect("planned ahead");
        s.check_integrity().unwrap();
        plan
    }

    fn ids(done: &FinishedBatch) -> Vec<(u64, u8)> {
        done.ids
            .iter()
            .copied()
            .zip(done.reasons.iter().copied())
            .collect()
    }

    #[test]
    fn placeholders_index_the_sampled_rows_of_the_step_in_flight() {
        let mut s = sched(256, |_| {});
        for id in 0..3 {
            add(&mut s, id, 4, 8);
        }
        assert_eq!(s.schedule_ahead(), Err(SchedError::NoStepInFlight));
        let u = s.schedule().unwrap();
        assert_eq!(
            (u.kind, u.num_sampled(), u.num_placeholders),
            (StepKind::Prefill, 3, 0)
        );
        s.check_integrity().unwrap();
        let n = ahead(&mut s);
        assert_eq!(s.schedule_ahead(), Err(SchedError::StepInFlight));
        assert_eq!(s.schedule(), Err(SchedError::StepInFlight));
        assert_eq!(n.kind, StepKind::Decode);
        assert_eq!(n.req_ids, vec![0, 1, 2]);
        assert_eq!(n.input_ids, vec![-1, -2, -3]);
        assert_eq!(n.num_placeholders, 3);
        assert_eq!(n.positions, vec![4, 4, 4]);
        assert_eq!(n.table_starts, vec![4, 4, 4]);
        assert!(n.sample_mask.iter().all(|&m| m));
        // The plan made ahead covers U's slots too.
        assert_eq!(&n.kv_indices[..4], &u.out_cache_loc[..4]);
        s.update(&[5, 6, 7], &[]).unwrap();
        s.check_integrity().unwrap();
        // Steady state: N+1 planned while N runs; its placeholders index N's sampled rows.
        let n1 = ahead(&mut s);
        assert_eq!(n1.input_ids, vec![-1, -2, -3]);
        assert_eq!(n1.positions, vec![5, 5, 5]);
        s.update(&[8, 9, 11], &[]).unwrap();
        s.update(&[12, 13, 14], &[]).unwrap();
        let plain = s.schedule().unwrap();
        assert_eq!(
            (plain.input_ids, plain.num_placeholders),
            (vec![12, 13, 14], 0)
        );
        assert_eq!(plain.positions, vec![6, 6, 6]);
        s.check_integrity().unwrap();
    }

    #[test]
    fn a_length_finish_in_u_is_left_out_and_an_eos_finish_leaves_a_dead_row() {
        let mut s = sched(256, |_| {});
        add(&mut s, 0, 3, 1); // its first token is its last
        add(&mut s, 1, 3, 5);
        add(&mut s, 2, 3, 5);
        s.schedule().unwrap();
        let n = ahead(&mut s);
        assert_eq!(n.req_ids, vec![1, 2]);
        assert_eq!(n.input_ids, vec![-2, -3]);
        // Request 1 samples EOS in U: released by update(U), its row in N is dead.
        let done = s.update(&[7, 2, 8], &[]).unwrap();
        assert_eq!(
            ids(&done),
            vec![(0, FinishReason::LENGTH), (1, FinishReason::STOP_TOKEN)]
        );
        s.check_integrity().unwrap();
        assert_eq!(s.stats().running, 1);
        // N still takes one token per sampled row; request 1's is ignored, never reported.
        let done = s.update(&[2, 9], &[]).unwrap();
        assert!(done.is_empty());
        s.check_integrity().unwrap();
        let plan = s.schedule().unwrap();
        assert_eq!(plan.finished_ids, vec![0, 1]);
        assert_eq!(plan.req_ids, vec![2]);
        assert_eq!(plan.input_ids, vec![9]);
        s.update(&[2], &[]).unwrap();
        s.schedule().unwrap();
        s.update(&[], &[]).unwrap();
        assert_eq!(s.num_requests(), 0);
        assert!(s.flush_cache().unwrap());
        assert_eq!(s.stats().free_tokens, 256);
    }

    #[test]
    fn a_python_finish_in_u_makes_the_row_in_n_dead() {
        let mut s = sched(256, |_| {});
        add(&mut s, 0, 3, 5);
        add(&mut s, 1, 3, 5);
        s.schedule().unwrap();
        s.update(&[5, 5], &[]).unwrap();
        s.schedule().unwrap();
        ahead(&mut s);
        let done = s.update(&[6, 6], &[false, true]).unwrap();
        assert_eq!(ids(&done), vec![(1, FinishReason::PYTHON_FINISH)]);
        let done = s.update(&[7, 7], &[true, true]).unwrap();
        assert_eq!(ids(&done), vec![(0, FinishReason::PYTHON_FINISH)]);
        s.check_integrity().unwrap();
        assert_eq!(s.num_requests(), 0);
    }

    #[test]
    fn abort_with_two_steps_in_flight_frees_everything_once() {
        let mut s = sched(256, |_| {});
        add(&mut s, 0, 6, 5);
        add(&mut s, 1, 6, 5);
        s.schedule().unwrap();
        let n = ahead(&mut s);
        assert_eq!(n.req_ids, vec![0, 1]);
        assert!(s.abort(1).unwrap());
        assert!(!s.abort(1).unwrap());
        s.check_integrity().unwrap();
        assert!(!s.flush_cache().unwrap());
        let done = s.update(&[4, 4], &[]).unwrap();
        assert_eq!(ids(&done), vec![(1, FinishReason::ABORT)]);
        s.check_integrity().unwrap();
        let done = s.update(&[4, 4], &[]).unwrap();
        assert!(done.is_empty());
        let plan = s.schedule().unwrap();
        assert_eq!(plan.aborted_ids, vec![1]);
        assert_eq!(plan.req_ids, vec![0]);
        s.update(&[4], &[]).unwrap();
        assert!(s.abort(0).unwrap());
        s.schedule().unwrap();
        s.update(&[], &[]).unwrap();
        assert!(s.flush_cache().unwrap());
        assert_eq!(s.stats().free_tokens, 256);
        s.check_integrity().unwrap();
    }

    #[test]
    fn a_chunked_prefill_continues_across_u_and_n_then_decodes() {
        let mut s = sched(256, |c| c.chunked_prefill_size = Some(8));
        add(&mut s, 0, 20, 4);
        let u = s.schedule().unwrap();
        assert_eq!(
            (u.prefix_lens[0], u.extend_lens[0], u.sample_mask[0]),
            (0, 8, false)
        );
        let n = ahead(&mut s);
        assert_eq!(
            (n.prefix_lens[0], n.extend_lens[0], n.sample_mask[0]),
            (8, 8, false)
        );
        assert_eq!(n.num_placeholders, 0);
        assert_eq!(n.input_ids, (18..26).collect::<Vec<i32>>());
        assert_eq!(n.table_starts, vec![8]);
        s.update(&[], &[]).unwrap();
        s.check_integrity().unwrap();
        // The last chunk in N+1 (planned while N runs), then N+2 decodes its token.
        let n1 = ahead(&mut s);
        assert_eq!(
            (n1.prefix_lens[0], n1.extend_lens[0], n1.sample_mask[0]),
            (16, 4, true)
        );
        s.update(&[], &[]).unwrap();
        let n2 = ahead(&mut s);
        assert_eq!(
            (n2.kind, n2.input_ids.clone()),
            (StepKind::Decode, vec![-1])
        );
        assert_eq!(n2.positions, vec![20]);
        s.update(&[40], &[]).unwrap();
        s.update(&[41], &[]).unwrap();
        s.check_integrity().unwrap();
        let plan = s.schedule().unwrap();
        assert_eq!(plan.input_ids, vec![41]);
        assert_eq!(plan.positions, vec![21]);
    }

    #[test]
    fn new_admissions_while_u_runs_and_the_table_rewrite_after_adoption() {
        let mut s = sched(256, |_| {});
        add(&mut s, 0, 6, 4);
        s.schedule().unwrap();
        // Same prompt: it cannot see U's tokens in the tree yet, so it computes them itself.
        s.add_request(1, (10..16).collect(), 4, RequestOptions::default())
            .unwrap();
        let n = ahead(&mut s);
        assert_eq!(n.kind, StepKind::Prefill);
        assert_eq!((n.req_ids.clone(), n.prefix_lens[0]), (vec![1], 0));
        s.update(&[3], &[]).unwrap();
        s.update(&[3], &[]).unwrap();
        s.check_integrity().unwrap();
        // update(N) found request 1's prompt cached by update(U): it adopted the tree's slots,
        // and the next plan rewrites its row.
        assert_eq!(s.stats().held_tokens, 0);
        let plan = s.schedule().unwrap();
        assert_eq!(plan.req_ids, vec![0, 1]);
        assert_eq!(plan.table_starts, vec![6, 0]);
        s.update(&[3, 3], &[]).unwrap();
        s.check_integrity().unwrap();
    }

    #[test]
    fn a_prefill_ending_in_u_decodes_in_n_of_a_mixed_step() {
        let mut s = sched(256, |c| {
            c.enable_mixed_chunk = true;
            c.chunked_prefill_size = Some(8);
        });
        add(&mut s, 0, 4, 6);
        s.schedule().unwrap();
        add(&mut s, 1, 12, 6);
        let n = ahead(&mut s);
        // Request 0 (prefill ended in U) decodes beside request 1's first chunk.
        assert_eq!(n.kind, StepKind::Mixed);
        assert_eq!(n.req_ids, vec![1, 0]);
        assert_eq!(n.extend_lens, vec![7, 1]);
        assert_eq!(n.input_ids[7], -1);
        assert_eq!(n.num_placeholders, 1);
        s.update(&[5], &[]).unwrap();
        s.update(&[6], &[]).unwrap();
        s.check_integrity().unwrap();
    }

    #[test]
    fn declines_instead_of_retracting_or_idling_and_changes_nothing() {
        // 3 requests admitted together (output reserve clipped to 1) fill a 24-slot pool.
        let mut s = sched(24, |c| c.clip_max_new_tokens = 1);
        for id in 0..3 {
            let o = RequestOptions {
                ignore_eos: true,
                ..Default::default()
            };
            s.add_request(id, vec![5 + id as u32; 7], 10, o).unwrap();
        }
        let p = s.schedule().unwrap();
        assert_eq!(p.batch_size(), 3);
        s.update(&[3, 3, 3], &[]).unwrap();
        s.schedule().unwrap();
        assert_eq!(s.stats().free_tokens, 0);
        // The next decode needs 3 slots: only a retraction could give them.
        let (stats, n) = (s.stats(), s.num_requests());
        let mut plan = StepPlan::default();
        assert!(!s.schedule_ahead_into(&mut plan).unwrap());
        assert_eq!((s.stats(), s.num_requests()), (stats, n));
        s.check_integrity().unwrap();
        s.update(&[3, 3, 3], &[]).unwrap();
        let p = s.schedule().unwrap();
        assert!(!p.retracted_ids.is_empty());
        s.update(&vec![3; p.num_sampled()], &[]).unwrap();
        // Nothing left to plan: idle is declined too.
        s.abort(0).unwrap();
        s.abort(1).unwrap();
        s.abort(2).unwrap();
        s.schedule().unwrap();
        assert_eq!(s.schedule_ahead(), Ok(None));
        s.update(&[], &[]).unwrap();
        s.check_integrity().unwrap();
    }
}
