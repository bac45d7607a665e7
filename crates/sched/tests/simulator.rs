//! Random workloads against the scheduler with a fake model (see `common`): every request ends
//! exactly as the model dictates, every plan's KV and table writes are consistent, capacity is
//! never exceeded, aborts leak nothing and retraction under a tiny pool terminates. Each
//! workload also runs with plans made ahead (`schedule_ahead_into`, two steps in flight) and
//! must end with the same tokens and finish reasons.

mod common;

use std::collections::BTreeMap;

use common::{make_prompt, make_templates, opts, Rng, Sim};
use proptest::prelude::*;
use sglrs_sched::{SchedulePolicy, SchedulerConfig};

#[derive(Debug, Clone)]
struct Workload {
    seed: u64,
    page_size: usize,
    chunked: Option<usize>,
    mixed: bool,
    radix: bool,
    policy: SchedulePolicy,
    capacity: usize,
    max_running: usize,
    requests: usize,
    abort_percent: u64,
    /// Low values make admission overcommit, so decode runs out and retracts.
    init_ratio: f64,
    /// Plans share `table_slots` with `out_cache_loc` where equal.
    share: bool,
    /// Plan the next step while one is in flight whenever the scheduler accepts.
    ahead: bool,
}

fn config(w: &Workload) -> SchedulerConfig {
    let mut cfg = SchedulerConfig::new(w.capacity);
    cfg.page_size = w.page_size;
    cfg.chunked_prefill_size = w.chunked;
    cfg.enable_mixed_chunk = w.mixed;
    cfg.disable_radix_cache = !w.radix;
    cfg.schedule_policy = w.policy;
    cfg.max_running_requests = w.max_running;
    cfg.max_prefill_tokens = 96;
    cfg.context_length = 160;
    cfg.emit_kv_indices = true;
    cfg.starvation_steps = 64;
    cfg.starvation_overtakes = 16;
    cfg.init_new_token_ratio = w.init_ratio;
    cfg
}

/// Requests arrive over time; some are aborted at random moments (also between a plan and its
/// update); the run must drain with every slot free again. The request stream depends only on
/// the seed, not on how the steps are driven.
fn play(w: &Workload) -> Sim {
    let mut rng = Rng(w.seed);
    let mut sim = Sim::new(config(w));
    sim.share = w.share;
    sim.ahead = w.ahead;
    let templates = make_templates(&mut rng, 4, 48);
    let mut stream = Vec::new();
    for id in 0..w.requests as u64 {
        // Every request fits the pool alone, so none may be aborted for capacity.
        let room = w.capacity / w.page_size * w.page_size - w.page_size;
        let mut prompt = make_prompt(&mut rng, &templates, 40);
        prompt.truncate(room / 2);
        let max_new = 1 + rng.below(48.min(room - prompt.len()));
        stream.push((id, prompt, max_new, opts(&mut rng)));
    }
    let mut stream = stream.into_iter().peekable();
    let mut events = Rng(w.seed ^ 0x5EED);
    while stream.peek().is_some() || !sim.all_done() {
        if stream.peek().is_some() && events.chance(40) {
            for _ in 0..1 + events.below(3) {
                if let Some((id, prompt, max_new, o)) = stream.next() {
                    sim.add(id, prompt, max_new, o);
                }
            }
        }
        let mut maybe_abort = |sim: &mut Sim| {
            if events.chance(w.abort_percent) {
                let live = sim.live();
                if !live.is_empty() {
                    sim.abort(live[events.below(live.len())]);
                    sim.s.check_integrity().unwrap();
                }
            }
        };
        maybe_abort(&mut sim);
        sim.advance_with(maybe_abort);
        let st = sim.stats();
        assert!(st.free_tokens + st.cached_tokens + st.held_tokens == st.capacity_tokens);
        assert!(sim.steps < 50_000, "no termination: {st:?}");
        // Unknown ids are a no-op.
        assert!(!sim.s.abort(u64::MAX).unwrap());
    }
    sim.drain(10_000);
    assert_eq!(
        sim.capacity_aborts, 0,
        "a request that fits was aborted for capacity"
    );
    sim
}

/// Per request: its tokens and finish reason.
fn outcome(sim: &Sim) -> BTreeMap<u64, (Vec<u32>, Option<u8>)> {
    sim.reqs
        .iter()
        .map(|(&id, r)| (id, (r.tokens.clone(), r.reason)))
        .collect()
}

/// Plays the workload driven plainly and with plans made ahead: same tokens, same finishes.
fn play_both(w: &Workload) -> (Sim, Sim) {
    let plain = play(&Workload {
        ahead: false,
        ..w.clone()
    });
    let ahead = play(&Workload {
        ahead: true,
        ..w.clone()
    });
    assert_eq!(outcome(&plain), outcome(&ahead), "{w:?}");
    (plain, ahead)
}

fn workload(seed: u64, page_size: usize, chunked: Option<usize>, mixed: bool) -> Workload {
    Workload {
        seed,
        page_size,
        chunked,
        mixed,
        radix: true,
        policy: SchedulePolicy::Lpm,
        capacity: 512,
        max_running: 8,
        requests: 60,
        abort_percent: 3,
        init_ratio: 0.7,
        share: seed % 2 == 1,
        ahead: seed % 3 == 1,
    }
}

#[test]
fn matrix_of_page_size_chunking_and_mixed() {
    for page_size in [1, 4] {
        for chunked in [None, Some(16)] {
            for mixed in [false, true] {
                for seed in 0..3 {
                    let w = workload(seed, page_size, chunked, mixed);
                    let sim = play(&w);
                    let st = sim.stats();
                    assert!(
                        st.num_finished + st.num_aborted == sim.reqs.len() as u64,
                        "{w:?}: {st:?}"
                    );
                    if mixed && seed == 0 {
                        assert!(
                            sim.kinds.get("mixed").copied().unwrap_or(0) > 0,
                            "{w:?}: no mixed step"
                        );
                    }
                    assert!(st.hit_tokens > 0, "{w:?}: shared prefixes never hit");
                    assert_eq!(sim.shared_plans > 0, w.share, "{w:?}: table_slots sharing");
                }
            }
        }
    }
}

#[test]
fn every_policy_and_no_radix() {
    for policy in SchedulePolicy::ALL {
        for radix in [true, false] {
            let mut w = workload(11, 4, Some(16), false);
            w.policy = policy;
            w.radix = radix;
            let sim = play(&w);
            if !radix {
                assert_eq!(sim.stats().hit_tokens, 0);
            }
        }
    }
}

#[test]
fn retraction_under_a_tiny_pool_terminates() {
    for page_size in [1, 4] {
        for mixed in [false, true] {
            for chunked in [None, Some(8)] {
                let mut w = workload(7, page_size, chunked, mixed);
                w.capacity = 96;
                w.max_running = 6;
                w.requests = 40;
                w.abort_percent = 0;
                w.init_ratio = 0.05;
                let sim = play(&w);
                assert!(
                    sim.stats().num_retractions > 0,
                    "{w:?}: the pool never ran out"
                );
            }
        }
    }
}

#[test]
fn a_request_that_cannot_fit_alone_is_aborted_not_looped() {
    // 24 slots; a 20-token prompt that wants 30 new tokens can never finish.
    let mut cfg = SchedulerConfig::new(24);
    cfg.context_length = 64;
    cfg.emit_kv_indices = true;
    let mut sim = Sim::new(cfg);
    let o = sglrs_sched::RequestOptions {
        ignore_eos: true,
        ..Default::default()
    };
    sim.add(1, (3..23).collect(), 30, o);
    for _ in 0..100 {
        sim.step();
        if sim.all_done() {
            break;
        }
    }
    assert!(sim.all_done());
    assert_eq!(sim.capacity_aborts, 1);
    sim.drain(10);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random streams (no aborts: their timing depends on the driving) give the same tokens
    /// and finish reasons whether steps are planned ahead or not.
    #[test]
    fn ahead_and_plain_driving_agree(
        seed in any::<u64>(),
        page_size in prop::sample::select(vec![1usize, 2, 4]),
        chunked in prop::option::of(prop::sample::select(vec![4usize, 8, 16, 40])),
        mixed in any::<bool>(),
        radix in any::<bool>(),
        policy in prop::sample::select(SchedulePolicy::ALL.to_vec()),
        capacity in 64usize..600,
        max_running in 1usize..10,
        requests in 1usize..30,
        share in any::<bool>(),
    ) {
        let chunked = chunked.map(|c| c.max(page_size));
        let init_ratio = if seed % 2 == 0 { 0.7 } else { 0.05 };
        let w = Workload {
            seed, page_size, chunked, mixed, radix, policy, capacity, max_running, requests,
            abort_percent: 0, init_ratio, share, ahead: true,
        };
        play_both(&w);
    }

    #[test]
    fn random_configs_stay_consistent(
        seed in any::<u64>(),
        page_size in prop::sample::select(vec![1usize, 2, 4]),
        chunked in prop::option::of(prop::sample::select(vec![4usize, 8, 16, 40])),
        mixed in any::<bool>(),
        radix in any::<bool>(),
        policy in prop::sample::select(SchedulePolicy::ALL.to_vec()),
        capacity in 64usize..600,
        max_running in 1usize..10,
        requests in 1usize..30,
        share in any::<bool>(),
        ahead in any::<bool>(),
    ) {
        let chunked = chunked.map(|c| c.max(page_size));
        let init_ratio = if seed % 2 == 0 { 0.7 } else { 0.05 };
        let w = Workload { seed, page_size, chunked, mixed, radix, policy, capacity, max_running, requests, abort_percent: 5, init_ratio, share, ahead };
        play(&w);
    }
}

#[test]
fn plans_made_ahead_match_plain_driving() {
    for page_size in [1, 4] {
        for chunked in [None, Some(16)] {
            for mixed in [false, true] {
                let mut w = workload(21, page_size, chunked, mixed);
                w.abort_percent = 0;
                let (_, ahead) = play_both(&w);
                assert!(ahead.ahead_plans > 0 && ahead.placeholders > 0, "{w:?}");
                let st = ahead.stats();
                assert_eq!(st.num_finished, ahead.reqs.len() as u64, "{w:?}: {st:?}");
            }
        }
    }
    // Retraction under a tiny pool: plans made ahead decline rather than retract.
    let mut w = workload(7, 1, Some(8), false);
    w.capacity = 96;
    w.max_running = 6;
    w.requests = 40;
    w.abort_percent = 0;
    w.init_ratio = 0.05;
    let (plain, ahead) = play_both(&w);
    assert!(plain.stats().num_retractions > 0 && ahead.stats().num_retractions > 0);
}
