//! Thread pools built once per size and kept: a decode step calls the kernel once per layer,
//! and spawning threads each time would cost more than the attention.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::DecodeError;

static POOLS: Mutex<Vec<Arc<ThreadPool>>> = Mutex::new(Vec::new());

/// The shared pool of `threads` worker threads (built on first use).
pub fn thread_pool(threads: usize) -> Result<Arc<ThreadPool>, DecodeError> {
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.iter().find(|p| p.current_num_threads() == threads) {
        return Ok(Arc::clone(p));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sglrs-attn-{i}"))
        .build()
        .map_err(|e| DecodeError::Threads(e.to_string()))?;
    let pool = Arc::new(pool);
    pools.push(Arc::clone(&pool));
    Ok(pool)
}
