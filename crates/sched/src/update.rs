//! `update`: commit the step that ran, append the sampled tokens and finish requests.

use crate::error::SchedError;
use crate::plan::FinishedBatch;
use crate::request::ReqState;
use crate::scheduler::Scheduler;

impl Scheduler {
    /// Commits the plan in flight. `tokens` has one token per request whose `sample_mask` was
    /// set, in plan order; `finished` (same length, or empty for none) marks requests finished
    /// in Python. Prefilled chunks are cached in the tree (so concurrent requests share them).
    /// `out` receives the requests that finished now, plus those aborted since the last update.
    /// On error nothing changes.
    pub fn update_into(
        &mut self,
        tokens: &[u32],
        finished: &[bool],
        out: &mut FinishedBatch,
    ) -> Result<(), SchedError> {
        if !self.inflight_active {
            return Err(SchedError::NoStepInFlight);
        }
        let expected = self.inflight.iter().filter(|e| e.sample).count();
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

        let inflight = std::mem::take(&mut self.inflight);
        self.inflight_active = false;
        let mut sampled = 0;
        let mut any_finished = false;
        for e in &inflight {
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
            r.tokens.push(token);
            if let Some(reason) = r.finish_after(token, python_finish) {
                self.release_kv(e.idx)?;
                self.finalize(e.idx, reason, Some(out));
                any_finished = true;
            }
        }
        self.inflight = inflight;
        self.inflight.clear();
        if any_finished {
            let slab = &self.slab;
            self.running.retain(|&i| slab.contains(i));
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
