//! Paged decode attention on the CPU, reading K and V in place from a slot-addressed KV pool.
//!
//! The pool layout is sglrs's (and SGLang's): per layer, K and V are `[num_slots, kv_heads,
//! head_dim]` row-major buffers, and a request-to-token table `[rows, stride]` (int32) holds the
//! slot of every position of each request. One new query token per request attends over its
//! positions `0..seq_len` (its own K/V already stored), or only the last `sliding_window` of
//! them. Grouped-query attention: query head `h` reads KV head `h / (q_heads / kv_heads)`.
//!
//! Work items are (request, KV head) pairs, run on a cached thread pool; arithmetic is `f32`
//! whatever the storage type ([`f32`], [`Bf16`], [`F16`]).
//!
//! [`layer_ops`] holds the other per-layer ops of a CPU decoder step (RMSNorm with the residual
//! add, SiLU-and-mul, rotary embedding in place), each a single pass over its rows;
//! [`amx_linear`] the bf16 linear layers of a decode step on AMX tiles, [`f32_linear`] the f32
//! ones on AVX-512, and [`decode_layer`] a whole bf16 or f32 decoder layer of a decode step in
//! one call.

pub mod amx_linear;
pub mod decode_layer;
mod dispatch;
mod element;
pub mod f32_linear;
mod kernel;
pub mod layer_ops;
mod math;
mod pool;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_bf16;

use std::fmt;

use rayon::prelude::*;

pub use element::{Bf16, Element, ElementKind, F16};
pub use pool::thread_pool;

/// The sizes of one decode attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeShape {
    /// Requests, one query token each.
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl DecodeShape {
    /// Elements of the output `[batch, q_heads, head_dim]`.
    pub fn out_len(&self) -> usize {
        self.batch * self.q_heads * self.head_dim
    }
}

/// The inputs of one decode attention call over one layer's KV.
#[derive(Clone, Copy, Debug)]
pub struct PagedDecode<'a, T> {
    pub shape: DecodeShape,
    /// Query `(b, h, d)` is `q[b * q_strides[0] + h * q_strides[1] + d]` (rows of `head_dim`
    /// contiguous values, e.g. a view into a fused qkv projection).
    pub q: &'a [T],
    pub q_strides: [usize; 2],
    /// `[num_slots, kv_heads, head_dim]`, row-major.
    pub k: &'a [T],
    pub v: &'a [T],
    /// `[rows, table_stride]`, row-major: the slot of each position of each table row.
    pub req_to_token: &'a [i32],
    pub table_stride: usize,
    /// `[batch]`: each request's table row.
    pub req_pool_indices: &'a [u32],
    /// `[batch]`: positions attended (`1 ..= table_stride`).
    pub seq_lens: &'a [u32],
    /// Multiplies every score (usually `head_dim^-0.5`).
    pub scale: f32,
    /// Attend only the last `w` positions (the query's own and `w - 1` before it).
    pub sliding_window: Option<usize>,
}

/// Why a call was refused; nothing is read out of bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Sizes that disagree with each other or with the buffers.
    Shape(String),
    /// A request whose table row or length is out of range.
    Request { request: usize, message: String },
    /// A table entry that names no slot of the K/V buffers (the output is then incomplete).
    Slot {
        request: usize,
        position: usize,
        slot: i64,
        num_slots: usize,
    },
    /// The thread pool could not be built.
    Threads(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Shape(m) => write!(f, "paged decode attention: {m}"),
            DecodeError::Request { request, message } => {
                write!(f, "paged decode attention: request {request}: {message}")
            }
            DecodeError::Slot {
                request,
                position,
                slot,
                num_slots,
            } => write!(
                f,
                "paged decode attention: request {request} position {position} has KV slot \
                 {slot}, outside the {num_slots} slots of the K/V buffers"
            ),
            DecodeError::Threads(m) => write!(f, "paged decode attention: thread pool: {m}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn shape_err<T>(message: String) -> Result<T, DecodeError> {
    Err(DecodeError::Shape(message))
}

/// Buffer lengths of a packed-weight linear call (`x [m, k]`, packed `[n, k]`, `out [m, n]`,
/// `bias [n]`) and its thread count; errors are prefixed with `what` (the kernel's name).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_linear_call(
    what: &str,
    m: usize,
    k: usize,
    n: usize,
    x_len: usize,
    packed_len: usize,
    out_len: usize,
    bias_len: Option<usize>,
    threads: usize,
) -> Result<(), DecodeError> {
    let err = |message: String| shape_err(format!("{what}: {message}"));
    if x_len != m * k {
        return err(format!("x has {x_len} elements, expected {m} x {k}"));
    }
    if packed_len != n * k {
        return err(format!(
            "packed weight has {packed_len} elements, expected {n} x {k}"
        ));
    }
    if out_len != m * n {
        return err(format!("out has {out_len} elements, expected {m} x {n}"));
    }
    if let Some(b) = bias_len {
        if b != n {
            return err(format!("bias has {b} elements, expected {n}"));
        }
    }
    if threads == 0 {
        return Err(DecodeError::Threads(
            "num_threads must be at least 1".into(),
        ));
    }
    Ok(())
}

impl<T: Element> PagedDecode<'_, T> {
    /// Checks every size and per-request bound (not the slot ids: those are checked as they
    /// are read, which costs nothing extra).
    pub fn validate(&self, out_len: usize) -> Result<(), DecodeError> {
        let DecodeShape {
            batch,
            q_heads,
            kv_heads,
            head_dim,
        } = self.shape;
        if head_dim == 0 || kv_heads == 0 || q_heads == 0 {
            return shape_err(format!(
                "head_dim, q_heads and kv_heads must be positive (got {head_dim}, {q_heads}, \
                 {kv_heads})"
            ));
        }
        if q_heads % kv_heads != 0 {
            return shape_err(format!(
                "q_heads {q_heads} is not a multiple of kv_heads {kv_heads}"
            ));
        }
        if out_len != self.shape.out_len() {
            return shape_err(format!(
                "output has {out_len} elements, expected {batch} x {q_heads} x {head_dim}"
            ));
        }
        if self.req_pool_indices.len() != batch || self.seq_lens.len() != batch {
            return shape_err(format!(
                "req_pool_indices ({}) and seq_lens ({}) must have batch = {batch} entries",
                self.req_pool_indices.len(),
                self.seq_lens.len()
            ));
        }
        let row_len = kv_heads * head_dim;
        if self.k.len() != self.v.len() || !self.k.len().is_multiple_of(row_len) {
            return shape_err(format!(
                "K ({}) and V ({}) must both be [num_slots, {kv_heads}, {head_dim}]",
                self.k.len(),
                self.v.len()
            ));
        }
        if !self.scale.is_finite() {
            return shape_err(format!("scale must be finite, got {}", self.scale));
        }
        if self.sliding_window == Some(0) {
            return shape_err("sliding_window must be at least 1".into());
        }
        if batch > 0 {
            let [sb, sh] = self.q_strides;
            let last = (batch - 1)
                .checked_mul(sb)
                .zip((q_heads - 1).checked_mul(sh))
                .and_then(|(a, b)| a.checked_add(b)?.checked_add(head_dim));
            if last.is_none_or(|end| end > self.q.len()) {
                return shape_err(format!(
                    "q strides {sb}, {sh} reach past its {} elements",
                    self.q.len()
                ));
            }
            if (q_heads > 1 && sh < head_dim) || (batch > 1 && sb < (q_heads - 1) * sh + head_dim) {
                // Overlapping query rows are legal to read but almost surely a caller's bug.
                return shape_err(format!("q strides {sb}, {sh} make query rows overlap"));
            }
        }
        let stride = self.table_stride;
        if stride == 0 || !self.req_to_token.len().is_multiple_of(stride) {
            return shape_err(format!(
                "req_to_token has {} entries, not a multiple of its stride {stride}",
                self.req_to_token.len()
            ));
        }
        let rows = self.req_to_token.len() / stride;
        for (r, (&row, &len)) in self.req_pool_indices.iter().zip(self.seq_lens).enumerate() {
            if row as usize >= rows {
                return Err(DecodeError::Request {
                    request: r,
                    message: format!("table row {row} outside the table's {rows} rows"),
                });
            }
            if len == 0 || len as usize > stride {
                return Err(DecodeError::Request {
                    request: r,
                    message: format!("seq_len {len} must be in 1..={stride} (the table stride)"),
                });
            }
        }
        Ok(())
    }

    /// Writes the attention output `[batch, q_heads, head_dim]` (row-major) to `out`, on
    /// `threads` threads (1: on the calling thread; more: a pool built once per size).
    pub fn run(&self, out: &mut [T], threads: usize) -> Result<(), DecodeError> {
        self.run_with(out, threads, dispatch::select::<T>())
    }

    fn run_with(
        &self,
        out: &mut [T],
        threads: usize,
        item_fn: dispatch::ItemFn<T>,
    ) -> Result<(), DecodeError> {
        self.validate(out.len())?;
        if threads == 0 {
            return Err(DecodeError::Threads(
                "num_threads must be at least 1".into(),
            ));
        }
        let group = self.shape.q_heads / self.shape.kv_heads;
        let d = self.shape.head_dim;
        let items = self.shape.batch * self.shape.kv_heads;
        if threads == 1 || items <= 1 {
            let mut scratch = kernel::Scratch::new(group, d);
            return out
                .chunks_mut(group * d)
                .enumerate()
                .try_for_each(|(i, o)| item_fn(self, i, o, &mut scratch));
        }
        thread_pool(threads)?.install(|| {
            out.par_chunks_mut(group * d).enumerate().try_for_each_init(
                || kernel::Scratch::new(group, d),
                |scratch, (i, o)| item_fn(self, i, o, scratch),
            )
        })
    }
}
