//! A simulated model runner that plays workloads against the scheduler and checks every plan.
//!
//! The fake model's next token is a hash of (request, position), with EOS and Python-side
//! finishes at hashed positions, so each request's final sequence is known in advance. The
//! fake KV of a slot is (position, token, hash of the whole prefix up to it): after replaying
//! each plan's table writes into a simulated `req_to_token` table and writing the new tokens'
//! KV, every request of the batch must see exactly its own sequence through its table row.
//! With `ahead` the sim plans the next step while one is in flight (`schedule_ahead_into`),
//! runs the plans in order, and resolves each placeholder from the older step's tokens.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};

use sglrs_sched::{
    FinishReason, FinishedBatch, RequestOptions, SchedStats, Scheduler, SchedulerConfig, StepKind,
    StepPlan,
};

pub const EOS: u32 = 1;
pub const STOP: u32 = 2;
pub const VOCAB: u32 = 500;

pub fn mix(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x
}

/// The fake model's token at `pos` of request `id`; about 2% EOS and 1% STOP.
pub fn model_token(id: u64, pos: usize) -> u32 {
    let h = mix(id, pos as u64 + 1);
    match h % 100 {
        0 | 1 => EOS,
        2 => STOP,
        _ => 3 + (h / 100 % u64::from(VOCAB - 3)) as u32,
    }
}

/// Python decides to finish (a stop string, say) after the token at `pos`: about 1%.
pub fn python_finish(id: u64, pos: usize) -> bool {
    mix(id ^ 0xABCD, pos as u64) % 100 == 0
}

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = mix(self.0, 0x1234_5678);
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub generated: usize,
    pub reason: u8,
}

pub struct SimReq {
    /// Committed tokens (prompt, then those `update` took).
    pub tokens: Vec<u32>,
    /// The whole sequence the fake model dictates (prompt, then `model_token`s), and the
    /// hash of every prefix of it.
    pub full: Vec<u32>,
    pub hashes: Vec<u64>,
    pub prompt_len: usize,
    pub expected: Expected,
    pub row: Option<i32>,
    pub done: bool,
    /// The finish reason `update` reported.
    pub reason: Option<u8>,
}

/// A plan run by the fake model, awaiting its update.
#[derive(Default)]
pub struct Ran {
    pub plan: StepPlan,
    pub tokens: Vec<u32>,
    pub finished: Vec<bool>,
}

pub struct Sim {
    pub s: Scheduler,
    pub cfg: SchedulerConfig,
    pub reqs: HashMap<u64, SimReq>,
    /// (position, token, prefix hash) last written to each slot.
    pub kv: Vec<Option<(usize, u32, u64)>>,
    pub table: Vec<i32>,
    /// Plans in flight, oldest first (two only in `ahead` mode), and spare ones.
    pub queue: VecDeque<Ran>,
    pub spare: Vec<Ran>,
    pub done: FinishedBatch,
    pub steps: usize,
    pub admitted_order: Vec<u64>,
    pub aborted: HashSet<u64>,
    pub capacity_aborts: usize,
    pub kinds: HashMap<&'static str, usize>,
    /// Plan with `schedule_into_shared` (as the Python binding does).
    pub share: bool,
    /// Plans whose table writes used `out_cache_loc`.
    pub shared_plans: usize,
    /// Plan the next step while one is in flight whenever the scheduler accepts.
    pub ahead: bool,
    pub ahead_plans: usize,
    pub placeholders: usize,
}

fn expected_finish(id: u64, prompt_len: usize, max_new: usize, opts: &RequestOptions) -> Expected {
    for k in 1..=max_new {
        let pos = prompt_len + k - 1;
        let tok = model_token(id, pos);
        if python_finish(id, pos) {
            return Expected {
                generated: k,
                reason: FinishReason::PYTHON_FINISH,
            };
        }
        let stops = opts.stop_token_ids.iter().chain(&opts.eos_token_ids);
        if !opts.ignore_eos && stops.clone().any(|&s| s == tok) {
            return Expected {
                generated: k,
                reason: FinishReason::STOP_TOKEN,
            };
        }
    }
    Expected {
        generated: max_new,
        reason: FinishReason::LENGTH,
    }
}

impl Sim {
    pub fn new(cfg: SchedulerConfig) -> Self {
        let s = Scheduler::new(cfg.clone()).expect("valid config");
        let capacity = cfg.capacity_tokens / cfg.page_size * cfg.page_size;
        Sim {
            kv: vec![None; capacity],
            table: vec![-1; cfg.max_running_requests * cfg.context_length],
            s,
            cfg,
            reqs: HashMap::new(),
            queue: VecDeque::new(),
            spare: Vec::new(),
            done: FinishedBatch::default(),
            steps: 0,
            admitted_order: Vec::new(),
            aborted: HashSet::new(),
            capacity_aborts: 0,
            kinds: HashMap::new(),
            share: false,
            shared_plans: 0,
            ahead: false,
            ahead_plans: 0,
            placeholders: 0,
        }
    }

    pub fn add(&mut self, id: u64, prompt: Vec<u32>, max_new: usize, opts: RequestOptions) {
        let expected = expected_finish(id, prompt.len(), max_new, &opts);
        let prompt_len = prompt.len();
        let mut full = prompt.clone();
        full.extend((prompt_len..=prompt_len + max_new).map(|pos| model_token(id, pos)));
        let mut hashes = Vec::with_capacity(full.len());
        let mut h = 0;
        for &t in &full {
            h = mix(h, u64::from(t));
            hashes.push(h);
        }
        self.s
            .add_request(id, prompt.clone(), max_new, opts)
            .expect("valid request");
        self.reqs.insert(
            id,
            SimReq {
                tokens: prompt,
                full,
                hashes,
                prompt_len,
                expected,
                row: None,
                done: false,
                reason: None,
            },
        );
    }

    pub fn abort(&mut self, id: u64) {
        let known = self.reqs.get(&id).is_some_and(|r| !r.done);
        assert_eq!(self.s.abort(id).unwrap(), known, "abort({id}) result");
        if known {
            self.aborted.insert(id);
            let r = self.reqs.get_mut(&id).unwrap();
            r.done = true;
            r.row = None;
        }
    }

    pub fn live(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| !r.done)
            .map(|(&id, _)| id)
            .collect();
        v.sort_unstable();
        v
    }

    pub fn all_done(&self) -> bool {
        self.reqs.values().all(|r| r.done)
    }

    /// Schedules one step (nothing in flight), runs it and checks the plan; returns its kind.
    pub fn schedule(&mut self) -> StepKind {
        assert!(
            self.queue.is_empty(),
            "plain schedule with a step in flight"
        );
        let mut ran = self.spare.pop().unwrap_or_default();
        if self.share {
            self.s.schedule_into_shared(&mut ran.plan).unwrap();
        } else {
            self.s.schedule_into(&mut ran.plan).unwrap();
        }
        self.run(ran)
    }

    /// Plans the next step while one is in flight; runs it if the scheduler accepted.
    pub fn schedule_ahead(&mut self) -> Option<StepKind> {
        assert_eq!(self.queue.len(), 1);
        let mut ran = self.spare.pop().unwrap_or_default();
        let planned = if self.share {
            self.s.schedule_ahead_into_shared(&mut ran.plan).unwrap()
        } else {
            self.s.schedule_ahead_into(&mut ran.plan).unwrap()
        };
        if !planned {
            self.spare.push(ran);
            return None;
        }
        self.ahead_plans += 1;
        self.placeholders += ran.plan.num_placeholders;
        Some(self.run(ran))
    }

    /// The fake model runs the plan (after the plans before it): checks it, writes its KV and
    /// samples.
    fn run(&mut self, mut ran: Ran) -> StepKind {
        self.steps += 1;
        *self.kinds.entry(ran.plan.kind.as_str()).or_default() += 1;
        self.check_plan(&ran.plan);
        self.shared_plans += usize::from(ran.plan.table_slots_shared);
        let p = &ran.plan;
        ran.tokens.clear();
        ran.finished.clear();
        for r in 0..p.batch_size() {
            if p.sample_mask[r] {
                let (id, pos) = (p.req_ids[r], p.seq_lens[r] as usize);
                ran.tokens.push(model_token(id, pos));
                ran.finished.push(python_finish(id, pos));
            }
        }
        let kind = p.kind;
        self.queue.push_back(ran);
        kind
    }

    fn check_plan(&mut self, p: &StepPlan) {
        let b = p.batch_size();
        for len in [
            p.req_pool_indices.len(),
            p.prefix_lens.len(),
            p.extend_lens.len(),
            p.seq_lens.len(),
            p.sample_mask.len(),
            p.table_rows.len(),
            p.table_starts.len(),
        ] {
            assert_eq!(len, b);
        }
        assert_eq!(p.qo_indptr.len(), b + 1);
        assert_eq!(p.table_indptr.len(), b + 1);
        assert_eq!(*p.qo_indptr.last().unwrap() as usize, p.input_ids.len());
        assert_eq!(p.positions.len(), p.input_ids.len());
        assert_eq!(p.out_cache_loc.len(), p.input_ids.len());
        assert_eq!(
            *p.table_indptr.last().unwrap() as usize,
            p.table_write_slots().len()
        );
        if p.table_slots_shared {
            assert!(self.share && p.table_slots.is_empty());
            assert_eq!(
                (&p.table_indptr, &p.table_starts),
                (&p.qo_indptr, &p.prefix_lens)
            );
        }
        assert_eq!(p.kind == StepKind::Idle, b == 0);
        // The step still in flight (if this plan was made ahead): its sampled rows by request.
        let mut older: HashMap<u64, usize> = HashMap::new();
        let mut older_tokens: &[u32] = &[];
        if let Some(u) = self.queue.back() {
            let mut j = 0;
            for r in 0..u.plan.batch_size() {
                if u.plan.sample_mask[r] {
                    older.insert(u.plan.req_ids[r], j);
                    j += 1;
                }
            }
            older_tokens = &u.tokens;
        }
        for id in p
            .retracted_ids
            .iter()
            .chain(&p.finished_ids)
            .chain(&p.aborted_ids)
        {
            if let Some(r) = self.reqs.get_mut(id) {
                r.row = None;
            }
        }
        let mut seen_slots = HashSet::new();
        let mut seen_rows = HashSet::new();
        for &s in &p.out_cache_loc {
            assert!((s as usize) < self.kv.len(), "slot {s} beyond capacity");
            assert!(seen_slots.insert(s), "slot {s} written twice in one step");
        }
        // Table writes first (as the runner does), then the forward writes the new KV.
        let ctx = self.cfg.context_length;
        for w in 0..b {
            let (row, start) = (p.table_rows[w] as usize, p.table_starts[w] as usize);
            let all = p.table_write_slots();
            let slots = &all[p.table_indptr[w] as usize..p.table_indptr[w + 1] as usize];
            assert!(start + slots.len() <= ctx);
            self.table[row * ctx + start..row * ctx + start + slots.len()].copy_from_slice(slots);
        }
        let mut placeholders = 0;
        for r in 0..b {
            let id = p.req_ids[r];
            let sr = self.reqs.get_mut(&id).expect("planned request is known");
            assert!(!sr.done, "request {id} planned after it finished");
            let row = p.req_pool_indices[r];
            assert!(seen_rows.insert(row), "row {row} used twice");
            assert!((row as usize) < self.cfg.max_running_requests);
            match sr.row {
                None => {
                    sr.row = Some(row);
                    self.admitted_order.push(id);
                }
                Some(old) => assert_eq!(old, row, "request {id} changed rows while admitted"),
            }
            let (prefix, extend, seq) = (
                p.prefix_lens[r] as usize,
                p.extend_lens[r] as usize,
                p.seq_lens[r] as usize,
            );
            assert_eq!(prefix + extend, seq);
            assert!(extend >= 1);
            // Tokens known to the scheduler: committed, plus the older step's (a placeholder).
            let known = sr.tokens.len() + usize::from(older.contains_key(&id));
            assert!(seq <= known, "request {id} computes beyond its tokens");
            assert!(seq <= ctx);
            assert_eq!(p.sample_mask[r], seq == known);
            let t0 = p.qo_indptr[r] as usize;
            assert_eq!(p.qo_indptr[r + 1] as usize - t0, extend);
            for j in 0..extend {
                let (pos, v) = (prefix + j, p.input_ids[t0 + j]);
                let token = if v < 0 {
                    placeholders += 1;
                    let k = (-(v + 1)) as usize;
                    assert_eq!(older.get(&id), Some(&k), "request {id}: placeholder {v}");
                    assert_eq!(pos, sr.tokens.len(), "placeholder not at the older token");
                    older_tokens[k]
                } else {
                    assert!(
                        pos < sr.tokens.len(),
                        "request {id}: real input id {v} at {pos}"
                    );
                    v as u32
                };
                assert_eq!(token, sr.full[pos]);
                assert_eq!(p.positions[t0 + j] as usize, pos);
                assert_eq!(
                    self.table[row as usize * ctx + pos],
                    p.out_cache_loc[t0 + j]
                );
                self.kv[p.out_cache_loc[t0 + j] as usize] = Some((pos, token, sr.hashes[pos]));
            }
        }
        assert_eq!(placeholders, p.num_placeholders);
        for r in 0..b {
            let id = p.req_ids[r];
            let sr = &self.reqs[&id];
            let (row, seq) = (p.req_pool_indices[r] as usize, p.seq_lens[r] as usize);
            let table_row = &self.table[row * ctx..row * ctx + seq];
            for (pos, &slot) in table_row.iter().enumerate() {
                assert!(
                    slot >= 0,
                    "request {id}: position {pos} has no slot in the table"
                );
                let want = Some((pos, sr.full[pos], sr.hashes[pos]));
                assert_eq!(
                    self.kv[slot as usize], want,
                    "request {id}: KV at position {pos} (slot {slot}) is not its own"
                );
            }
            if self.cfg.emit_kv_indices {
                let kv = &p.kv_indices[p.kv_indptr[r] as usize..p.kv_indptr[r + 1] as usize];
                assert_eq!(
                    kv, table_row,
                    "kv_indices of request {id} differ from the table row"
                );
            }
        }
    }

    /// Updates the oldest step in flight with what the fake model sampled; checks the reported
    /// finishes.
    pub fn update(&mut self) {
        let ran = self.queue.pop_front().expect("a step in flight");
        let p = &ran.plan;
        let mut j = 0;
        for r in 0..p.batch_size() {
            if p.sample_mask[r] {
                let (id, pos) = (p.req_ids[r], p.seq_lens[r] as usize);
                if let Some(sr) = self.reqs.get_mut(&id) {
                    if !sr.done {
                        assert_eq!(pos, sr.tokens.len(), "request {id} sampled out of order");
                        sr.tokens.push(ran.tokens[j]);
                    }
                }
                j += 1;
            }
        }
        self.s
            .update_into(&ran.tokens, &ran.finished, &mut self.done)
            .unwrap();
        self.spare.push(ran);
        for k in 0..self.done.len() {
            let (id, reason) = (self.done.ids[k], self.done.reasons[k]);
            let sr = self.reqs.get_mut(&id).expect("finished request is known");
            assert!(sr.reason.is_none(), "request {id} reported twice");
            sr.reason = Some(reason);
            match reason {
                FinishReason::ABORT => assert!(
                    self.aborted.contains(&id),
                    "request {id} aborted without abort()"
                ),
                FinishReason::ABORT_KV_CAPACITY => {
                    assert!(!sr.done);
                    sr.done = true;
                    self.capacity_aborts += 1;
                }
                _ => {
                    assert!(!sr.done, "request {id} finished twice");
                    sr.done = true;
                    let generated = sr.tokens.len() - sr.prompt_len;
                    let got = Expected { generated, reason };
                    assert_eq!(got, sr.expected, "request {id} finished wrongly");
                    if reason == FinishReason::STOP_TOKEN {
                        assert_eq!(
                            self.done.matched_tokens[k] as u32,
                            *sr.tokens.last().unwrap()
                        );
                    } else {
                        assert_eq!(self.done.matched_tokens[k], -1);
                    }
                }
            }
        }
    }

    /// One round: in `ahead` mode, plan ahead when a step is in flight (a plain schedule when
    /// none is), then update the oldest; otherwise schedule + update.
    pub fn advance(&mut self) {
        self.advance_with(|_| {});
    }

    /// `advance`, calling `between` before the update (with two steps in flight after a plan
    /// made ahead).
    pub fn advance_with(&mut self, mut between: impl FnMut(&mut Sim)) {
        if self.queue.is_empty() {
            self.schedule();
            self.s.check_integrity().unwrap();
        }
        if self.ahead {
            self.schedule_ahead();
            self.s.check_integrity().unwrap();
        }
        between(self);
        self.update();
        self.s.check_integrity().unwrap();
    }

    /// One full step; `check_integrity` after it.
    pub fn step(&mut self) -> StepKind {
        let kind = self.schedule();
        self.update();
        self.s.check_integrity().unwrap();
        kind
    }

    /// Steps until every request is done (panics past `max_steps`), then flushes the cache
    /// and checks that every slot is free again.
    pub fn drain(&mut self, max_steps: usize) {
        let start = self.steps;
        while !self.all_done() {
            assert!(
                self.steps - start < max_steps,
                "no termination after {max_steps} steps: {:?}",
                self.s.stats()
            );
            self.advance();
        }
        while !self.queue.is_empty() {
            self.update();
            self.s.check_integrity().unwrap();
        }
        // One more schedule delivers the last finished ids; then nothing is admitted.
        assert_eq!(self.step(), StepKind::Idle);
        assert_eq!(self.s.num_requests(), 0);
        assert!(self.s.flush_cache().unwrap());
        self.s.check_integrity().unwrap();
        let st = self.stats();
        assert_eq!(st.free_tokens, st.capacity_tokens, "slots leaked: {st:?}");
    }

    pub fn stats(&self) -> SchedStats {
        self.s.stats()
    }
}

/// A prompt made of one of `templates` shared prefixes (or none) and a random suffix.
pub fn make_prompt(rng: &mut Rng, templates: &[Vec<u32>], suffix_max: usize) -> Vec<u32> {
    let mut p = Vec::new();
    if !templates.is_empty() && rng.chance(75) {
        p.extend_from_slice(&templates[rng.below(templates.len())]);
    }
    let suffix = 1 + rng.below(suffix_max);
    p.extend((0..suffix).map(|_| 3 + rng.below(VOCAB as usize - 3) as u32));
    p
}

pub fn make_templates(rng: &mut Rng, n: usize, max_len: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|_| {
            let len = 1 + rng.below(max_len);
            (0..len)
                .map(|_| 3 + rng.below(VOCAB as usize - 3) as u32)
                .collect()
        })
        .collect()
}

pub fn opts(rng: &mut Rng) -> RequestOptions {
    RequestOptions {
        ignore_eos: rng.chance(20),
        stop_token_ids: if rng.chance(50) { vec![STOP] } else { vec![] },
        eos_token_ids: vec![EOS],
        priority: rng.below(3) as i64,
        max_cached_prefix: None,
    }
}
