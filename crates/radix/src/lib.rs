//! A tensor-free radix tree over token ids that maps cached prefixes to KV-cache slot ids, with
//! LRU eviction of unlocked leaves, page-aligned keys, and the KV slot allocator beside it.
//!
//! - [`RadixTree`]: nodes live in an arena (a `Vec` with a free list and generation counters, so
//!   a stale [`NodeHandle`] is an error, never UB); each node stores its edge's slots and tokens
//!   in one reference-counted `[u32]` (so matched slots can be handed out as [`SharedSlots`]
//!   without a copy), the tokens as `u16` when all of the edge's are below 65,536 (a long match
//!   then reads a quarter fewer bytes); children are a sorted `Vec` keyed by their first token;
//!   the unlocked leaves sit in an ordered set by a logical clock, so eviction never rescans the
//!   tree.
//! - [`SlotAllocator`]: a bitmap of free slots over `0..capacity` handing out the lowest free
//!   ones first (so slots come in long runs), in whole pages when `page_size > 1`.
//!
//! No operation recurses on tree depth or prompt length.

mod alloc;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod bits;
mod error;
mod ids;
mod integrity;
mod key;
mod node;
mod prefix;
mod shared;
mod simd;
mod tree;

pub use alloc::SlotAllocator;
pub use error::{IdKind, RadixError};
pub use ids::IdElem;
pub use node::NodeHandle;
pub use shared::SharedSlots;
pub use tree::RadixTree;

/// A token id.
pub type TokenId = u32;
/// A KV-cache slot index.
pub type SlotId = u32;

/// Cumulative counters of a [`RadixTree`] (kept across [`RadixTree::reset`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `match_prefix` calls.
    pub match_calls: u64,
    /// Tokens passed to `match_prefix`.
    pub queried_tokens: u64,
    /// Tokens `match_prefix` found cached.
    pub hit_tokens: u64,
    /// Tokens newly cached by `insert` (not counting the already-cached prefix).
    pub inserted_tokens: u64,
    /// Tokens freed by `evict`.
    pub evicted_tokens: u64,
}
