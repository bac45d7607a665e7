//! The data-only step plan handed to the model runner, and the finishes `update` reports.
//! See `docs/design.md` ("StepPlan") for the contract.

/// What the step computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepKind {
    /// Nothing to run.
    #[default]
    Idle,
    /// Only prefill (possibly chunked) requests.
    Prefill,
    /// Only decode requests (one token each).
    Decode,
    /// Prefill chunks and decode requests in one batch (`enable_mixed_chunk`).
    Mixed,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Idle => "idle",
            StepKind::Prefill => "prefill",
            StepKind::Decode => "decode",
            StepKind::Mixed => "mixed",
        }
    }
}

/// One step, as flat arrays in request order `r = 0..B` (int32 unless noted).
/// `clear` keeps the allocations so a caller can reuse one plan across steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepPlan {
    pub kind: StepKind,
    pub req_ids: Vec<u64>,
    pub req_pool_indices: Vec<i32>,
    pub prefix_lens: Vec<i32>,
    pub extend_lens: Vec<i32>,
    pub seq_lens: Vec<i32>,
    /// `[B + 1]`, cumulative `extend_lens`.
    pub qo_indptr: Vec<i32>,
    /// `[T]` new tokens, their positions and the slot each one's K/V goes to. In a plan made
    /// ahead (`Scheduler::schedule_ahead_into`), an input id `-(j + 1)` stands for the token
    /// sampled at index `j` of the step still in flight (see `num_placeholders`).
    pub input_ids: Vec<i32>,
    pub positions: Vec<i32>,
    pub out_cache_loc: Vec<i32>,
    /// Writes into the runner's `req_to_token` table, applied before the forward:
    /// `req_to_token[table_rows[w], table_starts[w]..][..len_w] = table_slots[table_indptr[w]..table_indptr[w+1]]`.
    pub table_rows: Vec<i32>,
    pub table_starts: Vec<i32>,
    pub table_indptr: Vec<i32>,
    pub table_slots: Vec<i32>,
    /// Set only by [`crate::Scheduler::schedule_into_shared`] when every table write is exactly
    /// the new tokens' slots (a decode step, or prefill with no cached prefix and no adopted
    /// slots): `table_slots` is then left empty and the writes' slots are `out_cache_loc`
    /// (`table_indptr == qo_indptr`). See [`StepPlan::table_write_slots`].
    pub table_slots_shared: bool,
    /// The request samples a token this step (false for a prefill chunk that is not the last).
    pub sample_mask: Vec<bool>,
    /// Negative (placeholder) entries of `input_ids`; 0 unless the plan was made ahead.
    pub num_placeholders: usize,
    /// Requests that left the running set since the previous plan.
    pub finished_ids: Vec<u64>,
    pub aborted_ids: Vec<u64>,
    pub retracted_ids: Vec<u64>,
    /// Only with `emit_kv_indices`: every slot of each request in position order, new ones included.
    pub kv_indptr: Vec<i32>,
    pub kv_indices: Vec<i32>,
}

impl StepPlan {
    pub fn clear(&mut self) {
        self.kind = StepKind::Idle;
        self.table_slots_shared = false;
        self.num_placeholders = 0;
        for v in [
            &mut self.req_pool_indices,
            &mut self.prefix_lens,
            &mut self.extend_lens,
            &mut self.seq_lens,
            &mut self.qo_indptr,
            &mut self.input_ids,
            &mut self.positions,
            &mut self.out_cache_loc,
            &mut self.table_rows,
            &mut self.table_starts,
            &mut self.table_indptr,
            &mut self.table_slots,
            &mut self.kv_indptr,
            &mut self.kv_indices,
        ] {
            v.clear();
        }
        self.req_ids.clear();
        self.sample_mask.clear();
        self.finished_ids.clear();
        self.aborted_ids.clear();
        self.retracted_ids.clear();
    }

    pub fn batch_size(&self) -> usize {
        self.req_ids.len()
    }

    pub fn num_tokens(&self) -> usize {
        self.input_ids.len()
    }

    pub fn num_sampled(&self) -> usize {
        self.sample_mask.iter().filter(|&&s| s).count()
    }

    /// The slots of the table writes, `[table_indptr[W]]`: `table_slots`, or `out_cache_loc`
    /// when the plan shares it (`table_slots_shared`).
    pub fn table_write_slots(&self) -> &[i32] {
        if self.table_slots_shared {
            &self.out_cache_loc
        } else {
            &self.table_slots
        }
    }

    /// Sizes every array for `batch` requests, `tokens` new tokens and `table` written slots,
    /// so building the plan never regrows a vector.
    pub(crate) fn reserve(&mut self, batch: usize, tokens: usize, table: usize, kv: Option<usize>) {
        for v in [
            &mut self.req_pool_indices,
            &mut self.prefix_lens,
            &mut self.extend_lens,
            &mut self.seq_lens,
            &mut self.table_rows,
            &mut self.table_starts,
        ] {
            v.reserve(batch);
        }
        self.qo_indptr.reserve(batch + 1);
        self.table_indptr.reserve(batch + 1);
        self.req_ids.reserve(batch);
        self.sample_mask.reserve(batch);
        self.input_ids.reserve(tokens);
        self.positions.reserve(tokens);
        self.out_cache_loc.reserve(tokens);
        self.table_slots.reserve(table);
        if let Some(kv) = kv {
            self.kv_indptr.reserve(batch + 1);
            self.kv_indices.reserve(kv);
        }
    }
}

/// Requests that left the scheduler, reported by `update`: flat arrays in the same order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishedBatch {
    pub ids: Vec<u64>,
    /// `FinishReason::code()`.
    pub reasons: Vec<u8>,
    /// The matched EOS / stop token for a stop-token finish, else -1.
    pub matched_tokens: Vec<i32>,
}

impl FinishedBatch {
    pub fn clear(&mut self) {
        self.ids.clear();
        self.reasons.clear();
        self.matched_tokens.clear();
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub(crate) fn push(&mut self, id: u64, reason: crate::request::FinishReason) {
        self.ids.push(id);
        self.reasons.push(reason.code());
        self.matched_tokens.push(reason.matched_token());
    }
}
