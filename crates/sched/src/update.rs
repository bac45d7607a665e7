//! `update`: commit the step that ran, append the sampled tokens and finish requests.

use crate::error::SchedError;
use crate::plan::FinishedBatch;
use crate::request::{is_placeholder, ReqState};
use crate::scheduler::Scheduler;

impl Scheduler {
    /// Commits the oldest plan in flight. `tokens` has one token per request whose
    /// `sample_mask` was set, in plan order; `finished` (same length, or empty for none) marks
    /// requests finished in Python. Prefilled chunks are cached in the tree (so concurrent
    /// requests share them). `out` receives the requests that finished now, plus those aborted
    /// since the last update. A request that finishes here while a later plan (made ahead) has
    /// a row for it is released now; that row is ignored by the later update. On error nothing
    /// changes.
    pub fn update_into(
        &mut self,
        tokens: &[u32],
        finished: &[bool],
        out: &mut FinishedBatch,
    ) -> Result<(), SchedError> {
        if self.num_inflight == 0 {
            return Err(SchedError::NoStepInFlight);
        }
        let expected = self.inflight[0].num_sampled;
        if tokens.len() != expected {
            return Err(SchedError::SampleCountMismatch {
                expected,
                got: tokens.len(),
                what: "tokens",
            });
        }
        if !finished.is_empty() && finished.len() != expected {
            return Err(SchedError::SampleCountMismatch {
                expected,
                got: finished.len(),
                what: "finished flags",
            });
        }
        if let Some(t) = tokens.iter().find(|&&t| t > i32::MAX as u32) {
            return Err(SchedError::InvalidRequest(format!(
                "sampled token id {t} exceeds int32"
            )));
        }
        out.clear();
        out.ids.append(&mut self.pending_report.ids);
        out.reasons.append(&mut self.pending_report.reasons);
        out.matched_tokens
            .append(&mut self.pending_report.matched_tokens);

        let mut step = std::mem::take(&mut self.inflight[0]);
        self.inflight.swap(0, 1);
        self.num_inflight -= 1;
        let mut sampled = 0;
        let mut any_finished = false;
        for e in &step.rows {
            let token = e.sample.then(|| {
                sampled += 1;
                (
                    tokens[sampled - 1],
                    finished.get(sampled - 1).copied().unwrap_or(false),
                )
            });
            if !e.alive {
                continue;
            }
            let r = self.slab.get_mut(e.idx);
            r.kv_len += e.extend;
            if r.state == ReqState::Prefilling {
                let kv = &mut self.kv;
                let changed = kv.cache_computed(
                    &r.tokens,
                    &mut r.slots,
                    r.kv_len,
                    &mut r.cached_len,
                    &mut r.lock,
                    true,
                )?;
                if let Some(pos) = changed {
                    r.table_dirty_from = r.table_dirty_from.min(pos);
                }
                if e.sample {
                    r.state = ReqState::Running;
                    self.running.push(e.idx);
                }
            }
            let Some((token, python_finish)) = token else {
                continue;
            };
            if r.tokens.len() > r.kv_len {
                // A plan made ahead reads this token through a placeholder.
                debug_assert!(is_placeholder(r.tokens[r.kv_len]));
                r.tokens[r.kv_len] = token;
            } else {
                r.tokens.push(token);
            }
            if let Some(reason) = r.finish_after(token, python_finish) {
                self.release_kv(e.idx)?;
                self.finalize(e.idx, reason, Some(out));
                any_finished = true;
            }
        }
        step.clear();
        self.inflight[1] = step;
        if any_finished {
            let slab = &self.slab;
            self.running.retain(|&i| slab.contains(i));
            // Rows of the plan made ahead for requests that finished now: their slots were
            // released with the rest (the runner computes them before any later step reuses
            // them), and their tokens are ignored.
            for e in &mut self.inflight[0].rows {
                e.alive &= slab.contains(e.idx);
            }
        }
        Ok(())
    }

    /// Convenience: `update_into` a new `FinishedBatch`.
    pub fn update(
        &mut self,
        tokens: &[u32],
        finished: &[bool],
    ) -> Result<FinishedBatch, SchedError> {
        let mut out = FinishedBatch::default();
        self.update_into(tokens, finished, &mut out)?;
        Ok(out)
    }
}
