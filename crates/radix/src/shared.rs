//! Matched slots handed out without a copy: a reference-counted view of one edge's storage.

use std::ops::Deref;
use std::sync::Arc;

use crate::SlotId;

/// Slots that stay valid and unchanged after the node they came from is split or evicted (the
/// tree never modifies an edge's storage; it replaces it). Cloning is a reference count.
#[derive(Clone, Debug)]
pub struct SharedSlots {
    data: Arc<[u32]>,
    start: usize,
    len: usize,
}

impl SharedSlots {
    /// `data[start..start + len]`.
    pub(crate) fn new(data: Arc<[u32]>, start: usize, len: usize) -> Self {
        assert!(start + len <= data.len(), "shared slots out of bounds");
        Self { data, start, len }
    }

    pub fn as_slice(&self) -> &[SlotId] {
        &self.data[self.start..self.start + self.len]
    }

    /// Whether `self` and `other` view the same edge storage (so that one can keep the other's
    /// memory alive).
    pub fn same_storage(&self, other: &SharedSlots) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}

impl Deref for SharedSlots {
    type Target = [SlotId];

    fn deref(&self) -> &[SlotId] {
        self.as_slice()
    }
}
