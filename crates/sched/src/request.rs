//! One request: its tokens, stop conditions, state and the KV slots it references.

use sglrs_radix::NodeHandle;

/// Where a request is in its life. Finished and aborted requests leave the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqState {
    /// Queued (new, or retracted with its generated tokens kept).
    Waiting,
    /// Admitted; its prompt (plus any tokens generated before a retraction) is being prefilled.
    Prefilling,
    /// Prefill done; one token per decode step.
    Running,
}

/// Why a request stopped. `code()` is the integer handed to Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Generated `max_new_tokens` tokens.
    Length,
    /// Sampled an EOS or stop token id (the id is kept).
    StopToken(u32),
    /// `update` was told to finish it (stop string, grammar end, ...).
    PythonFinish,
    /// `abort(id)` was called.
    Abort,
    /// The scheduler aborted it: it cannot fit the KV pool even alone.
    AbortKvCapacity,
}

impl FinishReason {
    pub const LENGTH: u8 = 0;
    pub const STOP_TOKEN: u8 = 1;
    pub const PYTHON_FINISH: u8 = 2;
    pub const ABORT: u8 = 3;
    pub const ABORT_KV_CAPACITY: u8 = 4;

    pub fn code(self) -> u8 {
        match self {
            FinishReason::Length => Self::LENGTH,
            FinishReason::StopToken(_) => Self::STOP_TOKEN,
            FinishReason::PythonFinish => Self::PYTHON_FINISH,
            FinishReason::Abort => Self::ABORT,
            FinishReason::AbortKvCapacity => Self::ABORT_KV_CAPACITY,
        }
    }

    /// The matched stop token, or -1.
    pub fn matched_token(self) -> i32 {
        match self {
            FinishReason::StopToken(t) => t as i32,
            _ => -1,
        }
    }
}

/// Arguments of `Scheduler::add_request` besides the id, prompt and length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    pub ignore_eos: bool,
    pub stop_token_ids: Vec<u32>,
    pub eos_token_ids: Vec<u32>,
    /// Larger runs first under the `priority` policy.
    pub priority: i64,
    /// At most this many leading tokens are taken from the prefix cache (`None`: no limit).
    /// A request that needs the prompt's logits from position `L` on sets `Some(L)`.
    pub max_cached_prefix: Option<usize>,
}

/// The token a plan made ahead reads in place of the one sampled at index `j` of the step in
/// flight: `-(j + 1)` as int32 (stored as u32 until `update` writes the real token over it).
pub(crate) fn placeholder(j: u32) -> u32 {
    (-(i64::from(j) + 1)) as i32 as u32
}

/// Real token ids are below 2^31 (checked at `add_request` and `update`); placeholders are not.
pub(crate) fn is_placeholder(token: u32) -> bool {
    token > i32::MAX as u32
}

/// Output tokens (and their slots) a request's vectors have room for before they regrow.
pub(crate) const OUTPUT_RESERVE: usize = 1024;

/// The capacity a prompt vector passed to `Scheduler::add_request` should have: the request
/// keeps it as its token buffer, with room for the first outputs, so a vector built with this
/// capacity is never copied to a larger allocation.
pub fn prompt_capacity(prompt_len: usize, max_new_tokens: usize) -> usize {
    prompt_len.saturating_add(max_new_tokens.min(OUTPUT_RESERVE))
}

#[derive(Debug)]
pub(crate) struct Request {
    pub id: u64,
    /// Prompt followed by the generated tokens (kept across retraction).
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    pub max_new_tokens: usize,
    pub ignore_eos: bool,
    /// EOS and stop ids merged, sorted, deduplicated (both end with a stop-token reason).
    pub stop_ids: Vec<u32>,
    pub priority: i64,
    pub max_cached_prefix: usize,
    pub arrival: u64,
    pub state: ReqState,

    /// KV slot of every position that has one (computed, or being computed by the plan in flight).
    pub slots: Vec<u32>,
    /// Positions whose KV is computed.
    pub kv_len: usize,
    /// Leading positions whose slots belong to the radix tree (held by `lock`).
    pub cached_len: usize,
    pub lock: Option<NodeHandle>,
    /// Row of the runner's `req_to_token` table while admitted.
    pub row: Option<u32>,
    /// First position whose slot the runner's table row does not have yet.
    pub table_dirty_from: usize,
    /// Round of the last plan in which it sampled (0: never), and its index among that plan's
    /// sampled rows: a plan made ahead of that one's update reads the token as a placeholder.
    pub sample_round: u64,
    pub sample_index: u32,

    /// Scheduling round at which it (re)entered the waiting queue.
    pub enqueued_round: u64,
    /// Later arrivals admitted while it waited.
    pub overtakes: u32,
    /// Cached prefix length found by the last policy pass (`lpm`, `dfs-weight`).
    pub match_len: usize,
}

impl Request {
    pub fn new(
        id: u64,
        prompt: Vec<u32>,
        max_new_tokens: usize,
        opts: RequestOptions,
        arrival: u64,
        round: u64,
    ) -> Self {
        let mut prompt = prompt;
        // Room for the first outputs, so appending the first sampled token (in the prefill
        // step) does not copy the whole prompt to a new allocation.
        prompt.reserve_exact(max_new_tokens.min(OUTPUT_RESERVE));
        let mut stop_ids = opts.stop_token_ids;
        stop_ids.extend_from_slice(&opts.eos_token_ids);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Request {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            max_new_tokens,
            ignore_eos: opts.ignore_eos,
            stop_ids,
            priority: opts.priority,
            max_cached_prefix: opts.max_cached_prefix.unwrap_or(usize::MAX),
            arrival,
            state: ReqState::Waiting,
            slots: Vec::new(),
            kv_len: 0,
            cached_len: 0,
            lock: None,
            row: None,
            table_dirty_from: 0,
            sample_round: 0,
            sample_index: 0,
            enqueued_round: round,
            overtakes: 0,
            match_len: 0,
        }
    }

    pub fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    pub fn remaining_new(&self) -> usize {
        self.max_new_tokens.saturating_sub(self.generated())
    }

    /// Tokens still to prefill (given slots by no plan yet) before the request can sample.
    pub fn remaining_fill(&self) -> usize {
        self.tokens.len() - self.slots.len()
    }

    /// The finish condition after `token` was appended (`python` = finished in Python).
    /// A Python finish wins, then a stop token, then the length limit.
    pub fn finish_after(&self, token: u32, python: bool) -> Option<FinishReason> {
        if python {
            Some(FinishReason::PythonFinish)
        } else if !self.ignore_eos && self.stop_ids.binary_search(&token).is_ok() {
            Some(FinishReason::StopToken(token))
        } else if self.generated() >= self.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(max_new: usize, ignore_eos: bool) -> Request {
        let opts = RequestOptions {
            ignore_eos,
            stop_token_ids: vec![7, 3],
            eos_token_ids: vec![2, 3],
            priority: 0,
            max_cached_prefix: None,
        };
        Request::new(1, vec![10, 11], max_new, opts, 0, 0)
    }

    #[test]
    fn finish_order_python_then_stop_then_length() {
        let mut r = req(2, false);
        assert_eq!(r.stop_ids, vec![2, 3, 7]);
        r.tokens.push(5);
        assert_eq!(r.finish_after(5, false), None);
        assert_eq!(r.finish_after(5, true), Some(FinishReason::PythonFinish));
        r.tokens.push(7);
        assert_eq!(r.finish_after(7, false), Some(FinishReason::StopToken(7)));
        assert_eq!(r.finish_after(9, false), Some(FinishReason::Length));
        assert_eq!(r.remaining_new(), 0);
    }

    #[test]
    fn a_prompt_with_prompt_capacity_is_kept_in_place() {
        let mut prompt = Vec::with_capacity(prompt_capacity(3, 5000));
        prompt.extend([4, 5, 6]);
        let ptr = prompt.as_ptr();
        let r = Request::new(1, prompt, 5000, RequestOptions::default(), 0, 0);
        assert_eq!(r.tokens.as_ptr(), ptr);
        assert_eq!(r.tokens.capacity(), 3 + OUTPUT_RESERVE);
    }

    #[test]
    fn ignore_eos_skips_stop_ids() {
        let mut r = req(3, true);
        r.tokens.push(2);
        assert_eq!(r.finish_after(2, false), None);
        assert_eq!(FinishReason::StopToken(2).matched_token(), 2);
        assert_eq!(FinishReason::Length.matched_token(), -1);
    }
}
