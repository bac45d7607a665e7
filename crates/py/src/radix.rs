//! Python bindings of `sglrs_radix`: `RadixCache` (one radix tree + its KV slot allocator) and
//! the opaque `RadixNode` handle.
//!
//! The cache also keeps one bit per slot saying "cached in the tree", so that bad input (a
//! slot inserted twice, a tree slot freed by hand) is a `ValueError` instead of a corrupted
//! cache. State sits behind a mutex so that calls that release the GIL stay safe when several
//! Python threads share one cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use std::ffi::c_void;
use std::ptr;

use numpy::npyffi::{self, npy_intp, PY_ARRAY_API};
use numpy::{Element, PyArray1, PyArrayDescr};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sglrs_radix::bits::{any_bit, runs, set_bits};
use sglrs_radix::{
    IdElem, IdKind, NodeHandle, RadixError, RadixTree, SharedSlots, SlotAllocator, SlotId,
};

use crate::buffers::{self, with_ids, IdsArg, POOL};

/// Inputs longer than this are processed with the GIL released (shorter calls are cheaper
/// without the release/reacquire round trip) when they are owned copies; ids read in place
/// from a numpy array keep the GIL, which is what keeps the array unmodified meanwhile.
const HEAVY_TOKENS: usize = 4096;

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RadixCache>()?;
    m.add_class::<RadixNode>()?;
    Ok(())
}

/// Opaque handle of a tree node, returned by `RadixCache.match_prefix`; pass it to `lock` and
/// `unlock`. It goes stale when its node is evicted or the cache is reset.
#[pyclass(frozen, eq, hash, module = "sglrs._core", name = "RadixNode")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RadixNode {
    cache: u64,
    handle: NodeHandle,
}

#[pymethods]
impl RadixNode {
    fn __repr__(&self) -> String {
        format!("RadixNode(cache={}, {:?})", self.cache, self.handle)
    }
}

struct Inner {
    tree: RadixTree,
    alloc: SlotAllocator,
    /// One bit per slot: set while the slot is cached in the tree.
    in_tree: Vec<u64>,
    /// Where a match spanning several edges collects their slots (kept while unused, so that
    /// a long query that matches one edge costs no buffer).
    scratch: Vec<SlotId>,
    /// The objects the latest hit returned, handed out again when a hit ends at the same node
    /// or views the same edge storage (a repeated long prefix, say): both are immutable, and
    /// a new node object alone costs ~75 ns of a ~250 ns one-token hit. Only touched with the
    /// GIL held.
    recent: Recent,
}

#[derive(Default)]
struct Recent {
    node: Option<(NodeHandle, Py<RadixNode>)>,
    /// Keeps the storage of the edge that the latest long one-edge match viewed alive.
    owner: Option<Py<SharedSlotsOwner>>,
}

impl Recent {
    /// The recent objects that fit a match ending at `handle`, sharing `shared`.
    fn fitting(
        &self,
        py: Python<'_>,
        handle: NodeHandle,
        shared: Option<&SharedSlots>,
    ) -> (Option<Py<RadixNode>>, Option<Py<SharedSlotsOwner>>) {
        let node = self
            .node
            .as_ref()
            .filter(|(h, _)| *h == handle)
            .map(|(_, n)| n.clone_ref(py));
        let owner = match (shared, &self.owner) {
            (Some(s), Some(o)) if o.get().0.same_storage(s) => Some(o.clone_ref(py)),
            _ => None,
        };
        (node, owner)
    }
}

/// A radix-tree KV cache: token prefixes -> KV slot ids, with LRU eviction of unlocked leaves,
/// and the slot allocator those slots come from (`free + cached + held by callers ==
/// capacity`).
#[pyclass(frozen, module = "sglrs._core", name = "RadixCache")]
pub struct RadixCache {
    inner: Mutex<Inner>,
    id: u64,
    page_size: usize,
    capacity: usize,
    /// What a match that finds nothing returns: the root's handle (the root never changes)
    /// and a read-only empty slot array, shared instead of created per miss.
    root: Py<RadixNode>,
    no_slots: Py<PyArray1<i32>>,
    /// numpy's int32 dtype, for the arrays that view edge storage.
    int32: Py<PyArrayDescr>,
}

/// Why an insert was refused.
enum InsertError {
    Radix(RadixError),
    Slot(String),
}

impl From<RadixError> for InsertError {
    fn from(e: RadixError) -> Self {
        Self::Radix(e)
    }
}

fn value_error(e: RadixError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl RadixCache {
    #[new]
    #[pyo3(signature = (capacity_tokens, page_size = 1))]
    fn new(py: Python<'_>, capacity_tokens: i64, page_size: i64) -> PyResult<Self> {
        if page_size <= 0 {
            return Err(PyValueError::new_err(format!(
                "page_size must be >= 1, got {page_size}"
            )));
        }
        if capacity_tokens <= 0 {
            return Err(PyValueError::new_err(format!(
                "capacity_tokens must be >= 1, got {capacity_tokens}"
            )));
        }
        // Slots come back as int32.
        if capacity_tokens > i64::from(i32::MAX) + 1 {
            return Err(PyValueError::new_err(format!(
                "capacity_tokens must be <= 2^31, got {capacity_tokens}"
            )));
        }
        let (capacity, page_size) = (capacity_tokens as usize, page_size as usize);
        if capacity < page_size {
            return Err(PyValueError::new_err(format!(
                "capacity_tokens ({capacity}) must hold at least one page of {page_size}"
            )));
        }
        let alloc = SlotAllocator::try_new(capacity, page_size).map_err(value_error)?;
        let capacity = alloc.capacity();
        let tree = RadixTree::try_new(page_size).map_err(value_error)?;
        let id = NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed);
        let root = Py::new(
            py,
            RadixNode {
                cache: id,
                handle: tree.root(),
            },
        )?;
        let no_slots = PyArray1::<i32>::zeros(py, 0, false);
        buffers::set_read_only(&no_slots);
        Ok(Self {
            inner: Mutex::new(Inner {
                tree,
                alloc,
                in_tree: vec![0; capacity.div_ceil(64)],
                scratch: Vec::new(),
                recent: Recent::default(),
            }),
            id,
            page_size,
            capacity,
            root,
            no_slots: no_slots.unbind(),
            int32: i32::get_dtype(py).unbind(),
        })
    }

    #[getter]
    fn page_size(&self) -> usize {
        self.page_size
    }

    /// Longest cached prefix of `tokens` (whole pages): `(matched_len, slots, node)`, `slots` a
    /// read-only int32 array (a view of the tree's storage when long). Marks the path as
    /// recently used; `node` is what to `lock` while the slots are in use (hits that end at
    /// the same node may return the same node object).
    fn match_prefix<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<(usize, Bound<'py, PyArray1<i32>>, Bound<'py, RadixNode>)> {
        // SAFETY: no Python code runs and the GIL stays held while `tokens` is alive
        // (`heavy` below is false for borrowed ids).
        let tokens = unsafe { IdsArg::extract(tokens, "tokens")? };
        let heavy = !tokens.is_borrowed() && tokens.len() > HEAVY_TOKENS;
        let long = tokens.len() > buffers::COPY_OUT_MAX;
        let (found, slots, (node, owner)) = if heavy {
            let mut slots = POOL.take_u32();
            let found = with_ids!(tokens, t => self.run(py, true, |inner| {
                inner.tree.match_prefix_shared(t, &mut slots)
            }))?;
            let recent = match &found {
                Ok((_, h, s)) => self.gil_state(py)?.recent.fitting(py, *h, s.as_ref()),
                Err(_) => (None, None),
            };
            (found, slots, recent)
        } else {
            // One lock for the match and the recent objects; no Python object is created
            // while it is held (that could run a finalizer that calls this cache).
            let mut guard = self.gil_state(py)?;
            let inner = &mut *guard;
            if long && inner.scratch.capacity() == 0 {
                // Sized for a full hit: a match spanning several edges never reallocates it.
                inner.scratch = POOL.take_u32();
                inner.scratch.reserve(tokens.len());
            }
            let found =
                with_ids!(tokens, t => inner.tree.match_prefix_shared(t, &mut inner.scratch));
            // Filled only when the match spans several edges (one edge is shared, not copied).
            let slots = if inner.scratch.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut inner.scratch)
            };
            let recent = match &found {
                Ok((_, h, s)) => inner.recent.fitting(py, *h, s.as_ref()),
                Err(_) => (None, None),
            };
            (found, slots, recent)
        };
        tokens.recycle();
        let (n, handle, shared) = found.map_err(|e| radix_error(e, "tokens", "slot_ids"))?;
        if n == 0 {
            if slots.capacity() > 0 {
                POOL.give_back_u32(slots);
            }
            return Ok((
                0,
                self.no_slots.bind(py).clone(),
                self.root.bind(py).clone(),
            ));
        }
        let mut fresh_owner = None;
        let array = match shared {
            Some(shared) if shared.len() > buffers::COPY_OUT_MAX => {
                let owner = match owner {
                    Some(o) => o.into_bound(py),
                    None => {
                        let o = Bound::new(py, SharedSlotsOwner(shared.clone()))?;
                        fresh_owner = Some(o.clone().unbind());
                        o
                    }
                };
                self.view_of(py, &shared, owner.into_any())?
            }
            Some(shared) => read_only(PyArray1::from_slice(py, as_i32(&shared))),
            None => read_only(pooled_numpy(py, slots)?),
        };
        let mut fresh_node = None;
        let node = match node {
            Some(n) => n.into_bound(py),
            None => {
                let n = Bound::new(
                    py,
                    RadixNode {
                        cache: self.id,
                        handle,
                    },
                )?;
                fresh_node = Some((handle, n.clone().unbind()));
                n
            }
        };
        if fresh_node.is_some() || fresh_owner.is_some() {
            let mut guard = self.gil_state(py)?;
            let recent = &mut guard.recent;
            // The replaced objects are dropped after the lock is released.
            let replaced = (
                fresh_node.and_then(|n| recent.node.replace(n)),
                fresh_owner.and_then(|o| recent.owner.replace(o)),
            );
            drop(guard);
            drop(replaced);
        }
        Ok((n, array, node))
    }

    /// Caches `tokens` with their `slot_ids` (slots the caller allocated from this cache);
    /// returns how many leading tokens were already cached (the caller still owns its slots
    /// for those, and for a tail shorter than a page). The tree owns the rest from now on.
    /// Only the slots the tree adopts are read and checked: the caller's slots for the cached
    /// prefix and the tail stay the caller's, and `free` checks them when they are returned.
    fn insert(
        &self,
        py: Python<'_>,
        tokens: &Bound<'_, PyAny>,
        slot_ids: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        // SAFETY: no Python code runs and the GIL stays held while `tokens` and `slots` are
        // alive (`heavy` below is false when either is borrowed).
        let tokens = unsafe { IdsArg::extract(tokens, "tokens")? };
        let slots = unsafe { IdsArg::extract(slot_ids, "slot_ids")? };
        if tokens.len() != slots.len() {
            return Err(value_error(RadixError::LengthMismatch {
                tokens: tokens.len(),
                slots: slots.len(),
            }));
        }
        let heavy = !tokens.is_borrowed() && !slots.is_borrowed() && tokens.len() > HEAVY_TOKENS;
        let page = self.page_size;
        let result = with_ids!(tokens, t => with_ids!(slots, s => self.run(py, heavy, |inner| {
            let Inner {
                tree,
                alloc,
                in_tree,
                ..
            } = inner;
            // `adopt` range-checks the adopted slots run by run. The others are not read (for
            // a 32k-token cached prefix, reading them would cost as much as the match).
            tree.insert_ids_checked(t, s, |_, new| adopt(alloc, in_tree, new, page))
                .map(|(cached, _)| cached)
        })))?;
        tokens.recycle();
        slots.recycle();
        result.map_err(|e| match e {
            InsertError::Radix(e) => radix_error(e, "tokens", "slot_ids"),
            InsertError::Slot(msg) => PyValueError::new_err(msg),
        })
    }

    /// Adds a reference on `node` and its ancestors; locked nodes are never evicted.
    fn lock(&self, py: Python<'_>, node: &RadixNode) -> PyResult<()> {
        let h = self.own(node)?;
        self.run(py, false, |inner| inner.tree.lock(h))?
            .map_err(value_error)
    }

    /// Drops a reference taken by `lock`.
    fn unlock(&self, py: Python<'_>, node: &RadixNode) -> PyResult<()> {
        let h = self.own(node)?;
        self.run(py, false, |inner| inner.tree.unlock(h))?
            .map_err(value_error)
    }

    /// Evicts least recently used unlocked leaves until at least `num_tokens` slots are freed
    /// (or nothing is evictable); the slots go back to this cache's allocator and are
    /// returned for information.
    fn evict<'py>(&self, py: Python<'py>, num_tokens: i64) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let n = non_negative(num_tokens, "num_tokens")?;
        let freed = self.run(py, n > HEAVY_TOKENS, |inner| {
            let mut freed = POOL.take_u32();
            inner.tree.evict(n, &mut freed);
            inner.alloc.free(&freed).map(|()| {
                for (s, len) in runs(&freed) {
                    set_bits(&mut inner.in_tree, s as usize, s as usize + len, false);
                }
                freed
            })
        })?;
        let freed = freed.map_err(|e| {
            PyRuntimeError::new_err(format!("internal error: evicted slots not freeable: {e}"))
        })?;
        pooled_numpy(py, freed)
    }

    /// `n` free slots (`n` a multiple of `page_size`), or `None` if fewer are free.
    fn alloc<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Option<Bound<'py, PyArray1<i32>>>> {
        let n = non_negative(n, "n")?;
        if n % self.page_size != 0 {
            return Err(PyValueError::new_err(format!(
                "n ({n}) must be a multiple of page_size ({})",
                self.page_size
            )));
        }
        let slots = self.run(py, false, |inner| inner.alloc.alloc(n))?;
        Ok(slots.map(|s| to_numpy(py, s)))
    }

    /// Returns slots from `alloc` (whole pages when `page_size > 1`). Slots cached in the tree
    /// are freed by `evict`/`reset`, never here.
    fn free(&self, py: Python<'_>, slot_ids: &Bound<'_, PyAny>) -> PyResult<()> {
        let slots = ids(slot_ids, "slot_ids")?;
        self.check_range(&slots[..], "slot_ids")?;
        self.run(py, slots.len() > HEAVY_TOKENS, |inner| {
            if let Some(&s) = slots.iter().find(|&&s| get_bit(&inner.in_tree, s)) {
                return Err(format!(
                    "slot {s} is cached in the tree; evict() or reset() frees it"
                ));
            }
            inner.alloc.free(&slots).map_err(|e| e.to_string())
        })?
        .map_err(PyValueError::new_err)
    }

    fn available(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, false, |inner| inner.alloc.available())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn evictable_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, false, |inner| inner.tree.evictable_size())
    }

    fn protected_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, false, |inner| inner.tree.protected_size())
    }

    fn total_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, false, |inner| inner.tree.total_size())
    }

    /// Cumulative counters: match_calls, queried_tokens, hit_tokens, inserted_tokens,
    /// evicted_tokens.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.run(py, false, |inner| inner.tree.stats())?;
        let d = PyDict::new(py);
        d.set_item("match_calls", s.match_calls)?;
        d.set_item("queried_tokens", s.queried_tokens)?;
        d.set_item("hit_tokens", s.hit_tokens)?;
        d.set_item("inserted_tokens", s.inserted_tokens)?;
        d.set_item("evicted_tokens", s.evicted_tokens)?;
        Ok(d)
    }

    /// Verifies the tree's invariants and the slot accounting (free and cached slots are
    /// disjoint, free + cached <= capacity); raises RuntimeError describing a violation.
    fn check_integrity(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, true, |inner| check_accounting(inner))?
            .map_err(PyRuntimeError::new_err)
    }

    /// Drops every cached prefix and frees its slots (ValueError if any node is locked).
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, true, |inner| {
            let mut freed = Vec::new();
            inner.tree.reset(&mut freed).map_err(value_error_msg)?;
            inner
                .alloc
                .free(&freed)
                .map_err(|e| format!("internal error: cached slots not freeable: {e}"))?;
            inner.in_tree.fill(0);
            Ok(())
        })?
        .map_err(|e: String| {
            if e.starts_with("internal error") {
                PyRuntimeError::new_err(e)
            } else {
                PyValueError::new_err(e)
            }
        })
    }

    /// Heap bytes used by the tree (not the allocator).
    fn memory_bytes(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, false, |inner| inner.tree.memory_bytes())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (total, available) = self.run(py, false, |inner| {
            (inner.tree.total_size(), inner.alloc.available())
        })?;
        Ok(format!(
            "RadixCache(capacity_tokens={}, page_size={}, cached={total}, available={available})",
            self.capacity, self.page_size
        ))
    }
}

impl RadixCache {
    /// Runs `f` on the state, with the GIL released when `heavy`.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        heavy: bool,
        f: impl FnOnce(&mut Inner) -> T + Send,
    ) -> PyResult<T> {
        let call = || self.state().map(|mut inner| f(&mut inner));
        let result = if heavy { py.detach(call) } else { call() };
        result.map_err(PyRuntimeError::new_err)
    }

    fn state(&self) -> Result<MutexGuard<'_, Inner>, String> {
        self.inner
            .lock()
            .map_err(|_| "RadixCache is unusable after an internal panic".to_string())
    }

    /// The state, locked by a caller that holds the GIL (and may touch `Inner::recent`).
    fn gil_state(&self, _py: Python<'_>) -> PyResult<MutexGuard<'_, Inner>> {
        self.state().map_err(PyRuntimeError::new_err)
    }

    /// A read-only int32 array viewing `shared`, kept alive by `owner` (which holds the same
    /// edge storage). Made directly with numpy's C API, flags and dtype given at creation.
    fn view_of<'py>(
        &self,
        py: Python<'py>,
        shared: &SharedSlots,
        owner: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let mut dims = [shared.len() as npy_intp];
        // SAFETY: `PyArray_NewFromDescr` steals the dtype reference passed to it, and
        // `PyArray_SetBaseObject` the owner's; the data (never modified: the tree replaces an
        // edge's storage, it never writes it) stays alive as long as its owner, which the
        // array keeps. Flags 0: not writeable (numpy derives contiguity and alignment).
        unsafe {
            let array = PY_ARRAY_API.PyArray_NewFromDescr(
                py,
                npyffi::get_type_object(py, npyffi::NpyTypes::PyArray_Type),
                self.int32.clone_ref(py).into_ptr().cast(),
                1,
                dims.as_mut_ptr(),
                ptr::null_mut(),
                shared.as_ptr().cast_mut().cast::<c_void>(),
                0,
                ptr::null_mut(),
            );
            let array = Bound::from_owned_ptr_or_err(py, array)?;
            if PY_ARRAY_API.PyArray_SetBaseObject(py, array.as_ptr().cast(), owner.into_ptr()) < 0 {
                return Err(PyErr::fetch(py));
            }
            Ok(array.cast_into_unchecked())
        }
    }

    fn own(&self, node: &RadixNode) -> PyResult<NodeHandle> {
        if node.cache != self.id {
            return Err(PyValueError::new_err("node belongs to another RadixCache"));
        }
        Ok(node.handle)
    }

    fn check_range<E: IdElem>(&self, slots: &[E], what: &str) -> PyResult<()> {
        match range_problem(slots, self.capacity) {
            Some(msg) => Err(PyValueError::new_err(format!("{what}: {msg}"))),
            None => Ok(()),
        }
    }
}

/// Why some slot of `slots` is not below `capacity` (<= 2^31, so the bound fits), if one is not.
fn range_problem<E: IdElem>(slots: &[E], capacity: usize) -> Option<String> {
    E::first_at_least(slots, capacity as u32).map(|i| {
        format!(
            "slot {} is out of range (capacity {capacity})",
            slots[i].value()
        )
    })
}

/// A `RadixError` as a `ValueError`, an invalid id naming the argument it is in.
fn radix_error(e: RadixError, tokens: &str, slots: &str) -> PyErr {
    match e {
        RadixError::IdOutOfRange {
            what,
            position,
            value,
        } => {
            let arg = if what == IdKind::Token { tokens } else { slots };
            buffers::out_of_range(arg, position, value)
        }
        e => value_error(e),
    }
}

fn value_error_msg(e: RadixError) -> String {
    e.to_string()
}

/// Accepts `new` (the slots an insert would hand to the tree) only if they are allocated,
/// not already cached, not repeated, and whole pages; marks them as cached.
fn adopt(
    alloc: &SlotAllocator,
    in_tree: &mut [u64],
    new: &[SlotId],
    page: usize,
) -> Result<(), InsertError> {
    if adopt_runs(alloc, in_tree, new, page) {
        return Ok(());
    }
    // Something is wrong: find and report the first bad slot.
    let mut problem = None;
    let mut marked = 0;
    for (i, &s) in new.iter().enumerate() {
        // `new` starts at a page boundary (the cached length is page-aligned).
        let offset = if page == 1 { 0 } else { i % page };
        if s as usize >= alloc.capacity() {
            problem = range_problem(&[s], alloc.capacity());
        } else if alloc.is_free(s) {
            problem = Some(format!(
                "slot {s} is free: insert only slots allocated by alloc()"
            ));
        } else if get_bit(in_tree, s) {
            problem = Some(format!(
                "slot {s} is already cached in the tree (or repeated)"
            ));
        } else if (offset == 0 && !page_aligned(s, page)) || (offset > 0 && s != new[i - 1] + 1) {
            problem = Some(format!(
                "slot {s} at position {i} breaks page alignment: each page of {page} tokens \
                 must be one allocated page"
            ));
        }
        if problem.is_some() {
            break;
        }
        set_bit(in_tree, s, true);
        marked += 1;
    }
    match problem {
        None => Ok(()),
        Some(msg) => {
            for &s in &new[..marked] {
                set_bit(in_tree, s, false);
            }
            Err(InsertError::Slot(format!("slot_ids: {msg}")))
        }
    }
}

/// The fast path of `adopt`: slots normally come in ascending runs of whole pages (what the
/// allocator hands out), range-checked, checked and marked a 64-bit word at a time. `false`
/// (nothing marked) if anything is off; the per-slot path then reports it.
fn adopt_runs(alloc: &SlotAllocator, in_tree: &mut [u64], new: &[SlotId], page: usize) -> bool {
    let mut pos = 0;
    for (start, len) in runs(new) {
        let (a, b) = (start as usize, start as usize + len);
        let whole_pages = page == 1 || (pos % page == 0 && len % page == 0 && a % page == 0);
        if b > alloc.capacity()
            || !whole_pages
            || alloc.any_free(start..b as u32)
            || any_bit(in_tree, a, b)
        {
            for (s, l) in runs(&new[..pos]) {
                set_bits(in_tree, s as usize, s as usize + l, false);
            }
            return false;
        }
        set_bits(in_tree, a, b, true);
        pos += len;
    }
    true
}

fn page_aligned(s: SlotId, page: usize) -> bool {
    page == 1 || s as usize % page == 0
}

fn check_accounting(inner: &Inner) -> Result<(), String> {
    inner.tree.check_integrity()?;
    let mut slots = Vec::new();
    inner.tree.cached_slots(&mut slots);
    let marked: usize = inner.in_tree.iter().map(|w| w.count_ones() as usize).sum();
    if marked != slots.len() {
        return Err(format!(
            "{marked} slots marked as cached but the tree holds {}",
            slots.len()
        ));
    }
    if let Some(&s) = slots.iter().find(|&&s| !get_bit(&inner.in_tree, s)) {
        return Err(format!("tree slot {s} is not marked as cached"));
    }
    if let Some(&s) = slots.iter().find(|&&s| inner.alloc.is_free(s)) {
        return Err(format!("slot {s} is both cached and free"));
    }
    let (free, cached, cap) = (inner.alloc.available(), slots.len(), inner.alloc.capacity());
    if free + cached > cap {
        return Err(format!(
            "free ({free}) + cached ({cached}) > capacity ({cap})"
        ));
    }
    Ok(())
}

#[inline]
fn get_bit(bits: &[u64], s: SlotId) -> bool {
    bits[s as usize / 64] >> (s % 64) & 1 == 1
}

#[inline]
fn set_bit(bits: &mut [u64], s: SlotId, on: bool) {
    let mask = 1u64 << (s % 64);
    if on {
        bits[s as usize / 64] |= mask;
    } else {
        bits[s as usize / 64] &= !mask;
    }
}

fn non_negative(v: i64, what: &str) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{what} must be >= 0, got {v}")))
}

/// Ids from an integer buffer as an owned `u32` vector (see [`IdsArg::extract`]).
fn ids(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u32>> {
    // SAFETY: the borrowed ids are copied out before any Python code can run.
    unsafe { IdsArg::extract(obj, what)? }.into_vec(what)
}

/// `slots` (a buffer from `POOL`) as numpy int32: copied when short (the buffer goes back to the
/// pool), else viewed by numpy and recycled when Python frees the array.
fn pooled_numpy(py: Python<'_>, slots: Vec<u32>) -> PyResult<Bound<'_, PyArray1<i32>>> {
    // Slots are < capacity <= 2^31: the same values as int32.
    let mut slots: Vec<i32> = buffers::cast_vec(slots);
    let array = buffers::pooled_to_numpy(py, &mut slots, &POOL)?;
    if slots.capacity() > 0 {
        POOL.give_back_u32(buffers::cast_vec(slots));
    }
    Ok(array)
}

/// Owner of slots shared with the tree while a numpy array views them.
#[pyclass(frozen, module = "sglrs._core", name = "_SharedSlots")]
struct SharedSlotsOwner(SharedSlots);

/// `array`, made read-only (match results may view tree storage; all are read-only alike).
fn read_only<T: Element>(array: Bound<'_, PyArray1<T>>) -> Bound<'_, PyArray1<T>> {
    buffers::set_read_only(&array);
    array
}

/// Slot ids as int32 (they are below the capacity, <= 2^31).
fn as_i32(slots: &[SlotId]) -> &[i32] {
    // SAFETY: same size and alignment, and every bit pattern is a valid i32.
    unsafe { std::slice::from_raw_parts(slots.as_ptr().cast::<i32>(), slots.len()) }
}

fn to_numpy(py: Python<'_>, slots: Vec<u32>) -> Bound<'_, PyArray1<i32>> {
    // Slots are < capacity <= 2^31; the map is done in place (same size and alignment).
    buffers::vec_to_numpy(py, slots.into_iter().map(|s| s as i32).collect())
}
