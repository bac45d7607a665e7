//! Errors of the tree and the allocator. Every error leaves the structure unchanged.

use std::fmt;

/// What went wrong; the tree or allocator is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RadixError {
    /// `page_size` was 0.
    InvalidPageSize,
    /// The handle's node was evicted or the tree was reset since the handle was issued.
    StaleHandle,
    /// The handle was issued by another tree.
    ForeignHandle,
    /// `unlock` of a node whose lock count is already zero.
    NotLocked,
    /// `tokens` and `slots` differ in length.
    LengthMismatch { tokens: usize, slots: usize },
    /// `reset` while some nodes are locked.
    Locked { protected_tokens: usize },
    /// A slot freed that is already free.
    DoubleFree { slot: u32 },
    /// A slot outside `0..capacity`.
    SlotOutOfRange { slot: u32, capacity: usize },
    /// Slots freed that are not whole pages (`p * page_size ..` in order, page_size at a time).
    PartialPage { slot: u32, page_size: usize },
    /// A token or slot id outside `0..2^32` (from a signed or wider input slice).
    IdOutOfRange {
        what: IdKind,
        position: usize,
        value: i64,
    },
}

/// Which argument an [`RadixError::IdOutOfRange`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Token,
    Slot,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Token => "token",
            Self::Slot => "slot",
        })
    }
}

impl fmt::Display for RadixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPageSize => write!(f, "page_size must be >= 1"),
            Self::StaleHandle => {
                write!(
                    f,
                    "stale node handle: its node was evicted or the tree was reset"
                )
            }
            Self::ForeignHandle => write!(f, "node handle belongs to another radix tree"),
            Self::NotLocked => write!(f, "unlock of a node that is not locked"),
            Self::LengthMismatch { tokens, slots } => {
                write!(f, "length mismatch: {tokens} tokens but {slots} slots")
            }
            Self::Locked { protected_tokens } => {
                write!(
                    f,
                    "cannot reset: {protected_tokens} cached tokens are locked"
                )
            }
            Self::DoubleFree { slot } => write!(f, "double free of slot {slot}"),
            Self::SlotOutOfRange { slot, capacity } => {
                write!(f, "slot {slot} is out of range (capacity {capacity})")
            }
            Self::PartialPage { slot, page_size } => write!(
                f,
                "slots must be freed as whole pages of {page_size} (page-aligned, in order); \
                 offending slot {slot}"
            ),
            Self::IdOutOfRange {
                what,
                position,
                value,
            } => write!(
                f,
                "{what} id {value} at position {position} is out of range (ids must be in 0..2^32)"
            ),
        }
    }
}

impl std::error::Error for RadixError {}
