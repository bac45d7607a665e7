//! `check_integrity`: every invariant between requests, table rows, slots and the radix tree.

use std::collections::HashSet;

use crate::error::SchedError;
use crate::request::{is_placeholder, ReqState};
use crate::scheduler::Scheduler;

impl Scheduler {
    /// Verifies: the radix tree's own invariants; free + cached + held by requests == capacity;
    /// no slot owned twice; page layout of every request's slots; lock state consistent with the
    /// requests' cached prefixes (nothing protected without a lock holder, and the protected
    /// size between the longest and the sum of the locked prefixes); table rows unique; queue
    /// membership consistent with each request's state; the steps in flight (0, 1 or 2) refer
    /// to admitted requests, and placeholder tokens only where a plan made ahead reads them.
    pub fn check_integrity(&self) -> Result<(), SchedError> {
        let fail = |m: String| Err(SchedError::Integrity(m));
        self.kv
            .tree
            .check_integrity()
            .map_err(SchedError::Integrity)?;
        let ps = self.kv.page;
        let mut held = 0;
        let mut owned: HashSet<u32> = HashSet::new();
        let mut rows: HashSet<u32> = self.free_rows.iter().copied().collect();
        let (mut locked_max, mut locked_sum, mut locks) = (0, 0, 0);
        let waiting: HashSet<u32> = self.waiting.iter().copied().collect();
        let running: HashSet<u32> = self.running.iter().copied().collect();
        if waiting.len() != self.waiting.len() || running.len() != self.running.len() {
            return fail("a request is queued twice".into());
        }
        for (i, r) in self.slab.iter() {
            if self.ids.get(&r.id) != Some(&i) {
                return fail(format!("request {} is not indexed by its id", r.id));
            }
            let where_ok = match r.state {
                ReqState::Waiting => waiting.contains(&i) && !running.contains(&i),
                ReqState::Running => running.contains(&i) && !waiting.contains(&i),
                ReqState::Prefilling => !running.contains(&i) && !waiting.contains(&i),
            };
            if !where_ok {
                return fail(format!(
                    "request {} in state {:?} is in the wrong queue",
                    r.id, r.state
                ));
            }
            if r.state == ReqState::Waiting {
                if !r.slots.is_empty() || r.lock.is_some() || r.row.is_some() || r.kv_len != 0 {
                    return fail(format!("waiting request {} holds KV or a row", r.id));
                }
                continue;
            }
            let Some(row) = r.row else {
                return fail(format!("admitted request {} has no table row", r.id));
            };
            if !rows.insert(row) {
                return fail(format!("table row {row} used twice"));
            }
            if r.cached_len % ps != 0 || r.cached_len > r.kv_len || r.kv_len > r.slots.len() {
                return fail(format!(
                    "request {}: cached {} / computed {} / slots {} out of order",
                    r.id,
                    r.cached_len,
                    r.kv_len,
                    r.slots.len()
                ));
            }
            if self.num_inflight == 0
                && (r.slots.len() != r.kv_len
                    || (r.state == ReqState::Running && r.kv_len + 1 != r.tokens.len()))
            {
                return fail(format!(
                    "request {} ({:?}): {} computed, {} tokens, {} slots, no step in flight",
                    r.id,
                    r.state,
                    r.kv_len,
                    r.tokens.len(),
                    r.slots.len()
                ));
            }
            // A placeholder only for the token of the older step in flight, read by the newer.
            let placeholders = r.tokens.iter().filter(|&&t| is_placeholder(t)).count();
            let at_end = r.tokens.last().is_some_and(|&t| is_placeholder(t))
                && r.tokens.len() == r.slots.len()
                && r.tokens.len() > r.kv_len + 1;
            if placeholders > usize::from(self.num_inflight == 2 && at_end) {
                return fail(format!("request {}: misplaced placeholder token", r.id));
            }
            if r.lock.is_some() != (r.cached_len > 0) {
                return fail(format!(
                    "request {}: lock does not match its cached prefix",
                    r.id
                ));
            }
            if r.lock.is_some() {
                locks += 1;
                locked_max = locked_max.max(r.cached_len);
                locked_sum += r.cached_len;
            }
            for (q, &s) in r.slots.iter().enumerate() {
                if s as usize % ps != q % ps || (q % ps != 0 && s != r.slots[q - 1] + 1) {
                    return fail(format!(
                        "request {}: slot {s} at position {q} breaks the page layout",
                        r.id
                    ));
                }
            }
            for q in (r.cached_len..r.slots.len()).step_by(ps) {
                if !owned.insert(r.slots[q]) {
                    return fail(format!(
                        "slot {} owned twice (request {})",
                        r.slots[q], r.id
                    ));
                }
                held += ps;
            }
        }
        if rows.len() != self.cfg.max_running_requests {
            return fail(format!(
                "{} table rows accounted for, expected {}",
                rows.len(),
                self.cfg.max_running_requests
            ));
        }
        let free = self.kv.alloc.available();
        let cached = self.kv.tree.total_size();
        if free + cached + held != self.kv.capacity() {
            return fail(format!(
                "free {free} + cached {cached} + held {held} != capacity {}",
                self.kv.capacity()
            ));
        }
        let protected = self.kv.tree.protected_size();
        if (locks == 0 && protected != 0)
            || (locks > 0 && (protected < locked_max || protected > locked_sum))
        {
            return fail(format!(
                "protected {protected} tokens with {locks} locks (longest {locked_max}, sum {locked_sum})"
            ));
        }
        if self.num_inflight > 2 {
            return fail(format!("{} steps in flight", self.num_inflight));
        }
        for step in &self.inflight[..self.num_inflight] {
            if step.rows.iter().filter(|e| e.sample).count() != step.num_sampled {
                return fail("a step in flight miscounts its sampled rows".into());
            }
            for e in step.rows.iter().filter(|e| e.alive) {
                if !self.slab.contains(e.idx) || self.slab.get(e.idx).state == ReqState::Waiting {
                    return fail("a live row in flight refers to no admitted request".into());
                }
            }
        }
        if self
            .chunked
            .is_some_and(|c| self.slab.get(c).state != ReqState::Prefilling)
        {
            return fail("the chunked request is not prefilling".into());
        }
        Ok(())
    }
}
