//! `sglrs._core.paged_decode_attention`: the `sglrs-cpu-attn` kernel over the memory of CPU
//! torch tensors, passed as addresses (`tensor.data_ptr()`) with their shapes and strides.
//!
//! Contract: the addresses are those of live CPU tensors with the stated shapes, strides and
//! dtype, which the caller keeps alive and unmodified during the call (`sglrs.attention.
//! cpu_decode` derives every argument from the tensors themselves). Everything else is checked
//! here or in the kernel: sizes, alignment, overlaps with the output, table rows, sequence
//! lengths and every slot id read (a ValueError, never an out-of-bounds read).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use sglrs_cpu_attn::{Bf16, DecodeShape, Element, PagedDecode, F16};

use crate::buffers::to_u32_vec;

/// dtype codes: the order of `sglrs.attention.cpu_decode.DTYPE_CODES`.
const F32: u8 = 0;
const BF16: u8 = 1;
const F16_CODE: u8 = 2;

/// A memory range `[start, end)` in bytes, for the overlap checks.
type Span = (usize, usize);

fn span<T>(ptr: usize, len: usize, what: &str) -> PyResult<Span> {
    let align = std::mem::align_of::<T>();
    if len > 0 && (ptr == 0 || ptr % align != 0) {
        return Err(PyValueError::new_err(format!(
            "{what}: address {ptr:#x} is null or not {align}-byte aligned"
        )));
    }
    let bytes = len
        .checked_mul(std::mem::size_of::<T>())
        .and_then(|b| b.checked_add(ptr).map(|end| (ptr, end)))
        .ok_or_else(|| PyValueError::new_err(format!("{what}: size overflows")))?;
    Ok(bytes)
}

fn mul(a: usize, b: usize, what: &str) -> PyResult<usize> {
    a.checked_mul(b)
        .ok_or_else(|| PyValueError::new_err(format!("{what}: size overflows")))
}

/// # Safety
/// `span` was built by [`span`] for `T` from the address of a live allocation of at least that
/// many bytes that nothing writes during the borrow.
unsafe fn slice<'a, T>(s: Span) -> &'a [T] {
    let len = (s.1 - s.0) / std::mem::size_of::<T>();
    if len == 0 {
        return &[];
    }
    std::slice::from_raw_parts(s.0 as *const T, len)
}

struct Call {
    shape: DecodeShape,
    q: Span,
    q_strides: [usize; 2],
    k: Span,
    v: Span,
    table: Span,
    table_stride: usize,
    rows: Vec<u32>,
    seq_lens: Vec<u32>,
    scale: f32,
    sliding_window: Option<usize>,
    out: Span,
    threads: usize,
}

fn overlaps(a: Span, b: Span) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl Call {
    fn run<T: Element>(self, py: Python<'_>) -> PyResult<()> {
        let table = span::<i32>(
            self.table.0,
            (self.table.1 - self.table.0) / 4,
            "req_to_token",
        )?;
        for (s, what) in [
            (self.q, "q"),
            (self.k, "k_buffer"),
            (self.v, "v_buffer"),
            (table, "req_to_token"),
        ] {
            if overlaps(self.out, s) {
                return Err(PyValueError::new_err(format!("out overlaps {what}")));
            }
        }
        // SAFETY: the module contract (live tensors of these sizes, see the top of the file);
        // `out` shares no byte with the inputs (checked above).
        let (q, k, v, req_to_token, out) = unsafe {
            (
                slice::<T>(self.q),
                slice::<T>(self.k),
                slice::<T>(self.v),
                slice::<i32>(table),
                std::slice::from_raw_parts_mut(
                    self.out.0 as *mut T,
                    (self.out.1 - self.out.0) / std::mem::size_of::<T>(),
                ),
            )
        };
        let p = PagedDecode {
            shape: self.shape,
            q,
            q_strides: self.q_strides,
            k,
            v,
            req_to_token,
            table_stride: self.table_stride,
            req_pool_indices: &self.rows,
            seq_lens: &self.seq_lens,
            scale: self.scale,
            sliding_window: self.sliding_window,
        };
        let threads = self.threads;
        py.detach(|| p.run(out, threads))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }
}

/// Decode attention of `q` `[B, Hq, D]` (strides `q_strides`, the last 1) over the paged K/V
/// buffers `[num_slots, Hkv, D]` (contiguous) into `out` (contiguous `[B, Hq, D]`), reading each
/// request's slots from `req_to_token` (contiguous int32 `[rows, stride]`). `dtype`: 0 float32,
/// 1 bfloat16, 2 float16 (q, K, V and out alike). Releases the GIL while it runs.
#[pyfunction]
#[pyo3(signature = (
    *, dtype, q_ptr, q_shape, q_strides, k_ptr, v_ptr, num_slots, kv_heads, table_ptr,
    table_shape, req_pool_indices, seq_lens, scale, sliding_window, out_ptr, num_threads
))]
#[allow(clippy::too_many_arguments)]
fn paged_decode_attention(
    py: Python<'_>,
    dtype: u8,
    q_ptr: usize,
    q_shape: (usize, usize, usize),
    q_strides: (usize, usize, usize),
    k_ptr: usize,
    v_ptr: usize,
    num_slots: usize,
    kv_heads: usize,
    table_ptr: usize,
    table_shape: (usize, usize),
    req_pool_indices: &Bound<'_, PyAny>,
    seq_lens: &Bound<'_, PyAny>,
    scale: f64,
    sliding_window: Option<usize>,
    out_ptr: usize,
    num_threads: usize,
) -> PyResult<()> {
    let (batch, q_heads, head_dim) = q_shape;
    if q_strides.2 != 1 {
        return Err(PyValueError::new_err(format!(
            "q: the head dimension must be contiguous (stride {})",
            q_strides.2
        )));
    }
    let shape = DecodeShape {
        batch,
        q_heads,
        kv_heads,
        head_dim,
    };
    let rows = to_u32_vec(req_pool_indices, "req_pool_indices")?;
    let seq_lens = to_u32_vec(seq_lens, "seq_lens")?;
    let q_len = if batch == 0 || q_heads == 0 || head_dim == 0 {
        0
    } else {
        // One past the last element q's strides reach.
        mul(batch - 1, q_strides.0, "q")?
            .checked_add(mul(q_heads - 1, q_strides.1, "q")?)
            .and_then(|x| x.checked_add(head_dim))
            .ok_or_else(|| PyValueError::new_err("q: size overflows"))?
    };
    let kv_len = mul(mul(num_slots, kv_heads, "k_buffer")?, head_dim, "k_buffer")?;
    let table_len = mul(table_shape.0, table_shape.1, "req_to_token")?;
    let out_len = shape.out_len();
    macro_rules! call {
        ($t:ty) => {
            Call {
                shape,
                q: span::<$t>(q_ptr, q_len, "q")?,
                q_strides: [q_strides.0, q_strides.1],
                k: span::<$t>(k_ptr, kv_len, "k_buffer")?,
                v: span::<$t>(v_ptr, kv_len, "v_buffer")?,
                table: span::<i32>(table_ptr, table_len, "req_to_token")?,
                table_stride: table_shape.1,
                rows,
                seq_lens,
                scale: scale as f32,
                sliding_window,
                out: span::<$t>(out_ptr, out_len, "out")?,
                threads: num_threads,
            }
            .run::<$t>(py)
        };
    }
    match dtype {
        F32 => call!(f32),
        BF16 => call!(Bf16),
        F16_CODE => call!(F16),
        other => Err(PyValueError::new_err(format!(
            "paged_decode_attention: unknown dtype code {other} (0 float32, 1 bfloat16, 2 float16)"
        ))),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(paged_decode_attention, m)?)
}
