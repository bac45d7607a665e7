//! Where compile time goes for a regex: parse, NFA, lazy DFA. `cargo run --release --example
//! compile_profile -- '<regex>'`.

use regex_automata::hybrid::dfa::DFA;
use regex_automata::nfa::thompson;
use std::time::Instant;

fn main() {
    let pattern = std::env::args()
        .nth(1)
        .unwrap_or_else(|| r#""[^"]{0,200}""#.to_string());
    let best = |f: &dyn Fn()| {
        (0..9)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    let parse = best(&|| {
        regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(&pattern)
            .unwrap();
    });
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(&pattern)
        .unwrap();
    let config = thompson::Config::new().which_captures(thompson::WhichCaptures::None);
    let nfa_time = best(&|| {
        thompson::Compiler::new()
            .configure(config.clone())
            .build_from_hir(&hir)
            .unwrap();
    });
    let nfa = thompson::Compiler::new()
        .configure(config.clone())
        .build_from_hir(&hir)
        .unwrap();
    let dfa_time = best(&|| {
        let dfa = DFA::builder().build_from_nfa(nfa.clone()).unwrap();
        dfa.create_cache();
    });
    println!(
        "parse {parse:.3} ms, NFA {nfa_time:.3} ms ({} states, {} bytes), DFA+cache {dfa_time:.3} ms",
        nfa.states().len(),
        nfa.memory_usage()
    );
}
