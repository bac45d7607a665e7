//! Decode slots for the running requests, and what happens when the pool runs out:
//! evict from the tree, then retract running requests, then abort one that cannot fit alone.
//!
//! Retraction order (SGLang's): least progress first, i.e. fewest generated tokens (the least
//! work lost, and its computed prefix is cached so re-admission is cheap), ties broken by the
//! longest prompt (frees the most memory), then the latest arrival. The chunked request is a
//! candidate too (with its generated tokens, usually none). After a retraction the requests left
//! must also fit `retract_decode_steps` more steps, so that retraction does not repeat every step.

use std::cmp::Reverse;

use crate::error::SchedError;
use crate::request::FinishReason;
use crate::scheduler::Scheduler;

impl Scheduler {
    /// Slots (whole pages) the running requests need for one more token each.
    fn decode_need(&self) -> usize {
        let kv = &self.kv;
        self.running
            .iter()
            .map(|&i| kv.new_page_tokens(self.slab.get(i).slots.len(), 1))
            .sum()
    }

    /// Slots the running requests need for `retract_decode_steps` more tokens (or until done).
    fn decode_margin(&self) -> usize {
        let steps = self.cfg.retract_decode_steps;
        let kv = &self.kv;
        self.running
            .iter()
            .map(|&i| {
                let r = self.slab.get(i);
                kv.new_page_tokens(r.slots.len(), steps.min(r.remaining_new()).max(1))
            })
            .sum()
    }

    fn retraction_victim(&self) -> u32 {
        let slab = &self.slab;
        self.running
            .iter()
            .copied()
            .chain(self.chunked)
            .min_by_key(|&i| {
                let r = slab.get(i);
                (r.generated(), Reverse(r.prompt_len), Reverse(r.arrival))
            })
            .expect("a retraction candidate")
    }

    /// Gives every running request the slot of its next token, evicting from the tree and
    /// then retracting if the pool is short. With `ahead` (a plan made before the update of
    /// the step in flight) it retracts nothing: false, with nothing changed, if it would have to.
    pub(crate) fn prepare_decode(&mut self, ahead: bool) -> Result<bool, SchedError> {
        let mut need = self.decode_need();
        if need > self.kv.reclaimable() {
            if ahead {
                return Ok(false);
            }
            self.reclaim_for_decode()?;
            need = self.decode_need();
        }
        self.pages.clear();
        if !self.kv.alloc(need, &mut self.pages)? {
            return Err(SchedError::Integrity(format!(
                "decode needs {need} slots after reclaiming"
            )));
        }
        let mut cursor = 0;
        for &i in &self.running {
            self.kv
                .assign(&mut self.slab.get_mut(i).slots, 1, &self.pages, &mut cursor);
        }
        Ok(true)
    }

    fn reclaim_for_decode(&mut self) -> Result<(), SchedError> {
        let mut retracted = false;
        loop {
            let reclaimable = self.kv.reclaimable();
            let fits = self.decode_need() <= reclaimable;
            if fits && (!retracted || self.decode_margin() <= reclaimable) {
                break;
            }
            let candidates = self.running.len() + usize::from(self.chunked.is_some());
            if candidates > 1 {
                let victim = self.retraction_victim();
                self.retract(victim)?;
                retracted = true;
            } else if !fits {
                // Alone and still no room for one more token: it can never finish.
                let idx = self.running[0];
                self.remove_admitted(idx, FinishReason::AbortKvCapacity, None)?;
            } else {
                break;
            }
        }
        if retracted {
            let (mut generated, mut max_new) = (0, 0);
            for &i in &self.running {
                let r = self.slab.get(i);
                generated += r.generated();
                max_new += r.max_new_tokens;
            }
            let steps = self.cfg.retract_decode_steps;
            self.ratio
                .on_retract(generated, max_new, self.running.len(), steps);
        }
        self.kv.make_free(self.decode_need())?;
        Ok(())
    }
}
