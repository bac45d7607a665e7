//! Ordering of the waiting queue for admission, with a starvation bound.
//!
//! Requests that have waited more than `starvation_steps` rounds, or were overtaken by more than
//! `starvation_overtakes` later arrivals, go first (in arrival order) whatever the policy; since
//! admission stops at the first request that does not fit, an aged request at the head also
//! holds back everyone behind it until it is admitted.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::config::{SchedulePolicy, SchedulerConfig};
use crate::dfs::{dfs_weight_order, DfsItem};
use crate::kv::KvPool;
use crate::request::Request;
use crate::slab::Slab;

/// SGLang's in-batch prefix check: among waiting requests with at most this many cached tokens,
/// only the first of those sharing this many leading tokens keeps its `lpm` rank; the others
/// wait for it to cache the shared prefix instead of prefilling it again in the same batch.
const IN_BATCH_PREFIX_TOKENS: usize = 32;

#[derive(Default)]
pub(crate) struct PolicyScratch {
    fresh: Vec<u32>,
    keyed: Vec<(u32, bool, usize)>,
    dfs: Vec<DfsItem>,
    seen: HashSet<u64>,
}

fn is_aged(cfg: &SchedulerConfig, round: u64, r: &Request) -> bool {
    round.saturating_sub(r.enqueued_round) > cfg.starvation_steps
        || r.overtakes > cfg.starvation_overtakes
}

/// The part of a waiting request's tokens matched against the cache: all but the last, so at
/// least one token is computed and yields logits.
pub(crate) fn cache_key(tokens: &[u32]) -> &[u32] {
    &tokens[..tokens.len() - 1]
}

/// The policy actually applied to a queue of `waiting` requests.
pub(crate) fn effective_policy(
    cfg: &SchedulerConfig,
    radix: bool,
    waiting: usize,
) -> SchedulePolicy {
    match cfg.schedule_policy {
        SchedulePolicy::Lpm | SchedulePolicy::DfsWeight if !radix => SchedulePolicy::Fcfs,
        SchedulePolicy::Lpm if waiting > cfg.lpm_fallback_queue_len => SchedulePolicy::Fcfs,
        p => p,
    }
}

/// Fills `out` with the waiting requests (given in arrival order) in admission order.
pub(crate) fn order_waiting(
    cfg: &SchedulerConfig,
    round: u64,
    waiting: &[u32],
    slab: &mut Slab,
    kv: &mut KvPool,
    sc: &mut PolicyScratch,
    out: &mut Vec<u32>,
) {
    out.clear();
    let policy = effective_policy(cfg, kv.radix_enabled, waiting.len());
    if policy == SchedulePolicy::Fcfs {
        out.extend_from_slice(waiting);
        return;
    }
    sc.fresh.clear();
    for &i in waiting {
        if is_aged(cfg, round, slab.get(i)) {
            out.push(i);
        } else {
            sc.fresh.push(i);
        }
    }
    let fresh = sc.fresh.iter().copied();
    match policy {
        SchedulePolicy::Fcfs => unreachable!("handled above"),
        SchedulePolicy::Priority => {
            sc.keyed.clear();
            sc.keyed.extend(fresh.map(|i| (i, false, 0)));
            sc.keyed.sort_by_key(|&(i, _, _)| {
                let r = slab.get(i);
                (Reverse(r.priority), r.arrival)
            });
        }
        SchedulePolicy::Lpm => {
            sc.keyed.clear();
            sc.seen.clear();
            for i in fresh {
                let r = slab.get_mut(i);
                r.match_len = kv.match_len(cache_key(&r.tokens));
                let mut deprioritized = false;
                let tokens = cache_key(&r.tokens);
                if r.match_len <= IN_BATCH_PREFIX_TOKENS && tokens.len() >= IN_BATCH_PREFIX_TOKENS {
                    let mut h = DefaultHasher::new();
                    tokens[..IN_BATCH_PREFIX_TOKENS].hash(&mut h);
                    deprioritized = !sc.seen.insert(h.finish());
                }
                sc.keyed.push((i, deprioritized, r.match_len));
            }
            sc.keyed.sort_by_key(|&(i, deprioritized, len)| {
                (deprioritized, Reverse(len), slab.get(i).arrival)
            });
        }
        SchedulePolicy::DfsWeight => {
            sc.dfs.clear();
            for i in fresh {
                let r = slab.get_mut(i);
                r.match_len = kv.match_len(cache_key(&r.tokens));
                sc.dfs.push(DfsItem {
                    idx: i,
                    len: r.match_len,
                    arrival: r.arrival,
                });
            }
            let slab_ref: &Slab = slab;
            dfs_weight_order(&mut sc.dfs, |i| &slab_ref.get(i).tokens, out);
            return;
        }
    }
    out.extend(sc.keyed.iter().map(|&(i, _, _)| i));
}

/// After an admission pass: each request still waiting counts the admitted later arrivals.
pub(crate) fn count_overtakes(waiting: &[u32], slab: &mut Slab, admitted_arrivals: &mut [u64]) {
    if admitted_arrivals.is_empty() {
        return;
    }
    admitted_arrivals.sort_unstable();
    let latest = admitted_arrivals[admitted_arrivals.len() - 1];
    for &i in waiting {
        let r = slab.get_mut(i);
        if r.arrival < latest {
            let later =
                admitted_arrivals.len() - admitted_arrivals.partition_point(|&a| a <= r.arrival);
            r.overtakes = r.overtakes.saturating_add(later as u32);
        }
    }
}
