//! `sglrs._core.paged_decode_attention`, the per-layer ops (`rms_norm`, `add_rms_norm`,
//! `silu_and_mul`, `rope_inplace`), the AMX bf16 linear layers (`amx_pack_bf16`,
//! `amx_linear_bf16`), the AVX-512 float32 ones (`f32_pack`, `f32_linear`) and a whole decode
//! layer (`decode_layer`): the `sglrs-cpu-attn` kernels over the memory of CPU torch
//! tensors, passed as addresses (`tensor.data_ptr()`) with their shapes and strides.
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

// ---- The per-layer ops of `sglrs_cpu_attn::layer_ops` (RMSNorm, SiLU-and-mul, rope) ----
// Same contract as above: addresses of live, contiguous CPU tensors of the stated sizes that
// nothing else touches during the call. Every buffer a call writes must share no byte with any
// other buffer of the call (checked: a ValueError).

fn check_disjoint(spans: &[(Span, &str)], written: &[usize]) -> PyResult<()> {
    for &w in written {
        for (i, &(s, what)) in spans.iter().enumerate() {
            if i != w && overlaps(spans[w].0, s) {
                return Err(PyValueError::new_err(format!(
                    "{} overlaps {what}",
                    spans[w].1
                )));
            }
        }
    }
    Ok(())
}

/// # Safety
/// As for [`slice`], and nothing else reads or writes the range during the borrow.
unsafe fn slice_mut<'a, T>(s: Span) -> &'a mut [T] {
    let len = (s.1 - s.0) / std::mem::size_of::<T>();
    if len == 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(s.0 as *mut T, len)
}

fn op_err(e: sglrs_cpu_attn::DecodeError) -> PyErr {
    PyValueError::new_err(e.to_string().replace("paged decode attention: ", ""))
}

/// Runs `$body` with `$t` bound to the element type of dtype code `$dtype`.
macro_rules! by_dtype {
    ($dtype:expr, $name:literal, |$t:ident| $body:expr) => {
        match $dtype {
            F32 => {
                type $t = f32;
                $body
            }
            BF16 => {
                type $t = Bf16;
                $body
            }
            F16_CODE => {
                type $t = F16;
                $body
            }
            other => Err(PyValueError::new_err(format!(
                concat!(
                    $name,
                    ": unknown dtype code {} (0 float32, 1 bfloat16, 2 float16)"
                ),
                other
            ))),
        }
    };
}

/// `out = RMSNorm(x) * weight` over `rows` rows of `dim` values (x, weight, out contiguous).
#[pyfunction]
#[pyo3(signature = (*, dtype, x_ptr, rows, dim, weight_ptr, eps, out_ptr, num_threads))]
#[allow(clippy::too_many_arguments)]
fn rms_norm(
    py: Python<'_>,
    dtype: u8,
    x_ptr: usize,
    rows: usize,
    dim: usize,
    weight_ptr: usize,
    eps: f64,
    out_ptr: usize,
    num_threads: usize,
) -> PyResult<()> {
    let n = mul(rows, dim, "x")?;
    by_dtype!(dtype, "rms_norm", |T| {
        let spans = [
            (span::<T>(x_ptr, n, "x")?, "x"),
            (span::<T>(weight_ptr, dim, "weight")?, "weight"),
            (span::<T>(out_ptr, n, "out")?, "out"),
        ];
        check_disjoint(&spans, &[2])?;
        // SAFETY: the contract above; `out` is disjoint from the inputs (checked).
        let (x, w, out) = unsafe {
            (
                slice::<T>(spans[0].0),
                slice::<T>(spans[1].0),
                slice_mut::<T>(spans[2].0),
            )
        };
        py.detach(|| sglrs_cpu_attn::layer_ops::rms_norm(x, w, eps as f32, out, num_threads))
            .map_err(op_err)
    })
}

/// `res_out = x + residual; out = RMSNorm(res_out) * weight` (`rows` x `dim`, contiguous).
#[pyfunction]
#[pyo3(signature = (
    *, dtype, x_ptr, residual_ptr, rows, dim, weight_ptr, eps, out_ptr, res_out_ptr, num_threads
))]
#[allow(clippy::too_many_arguments)]
fn add_rms_norm(
    py: Python<'_>,
    dtype: u8,
    x_ptr: usize,
    residual_ptr: usize,
    rows: usize,
    dim: usize,
    weight_ptr: usize,
    eps: f64,
    out_ptr: usize,
    res_out_ptr: usize,
    num_threads: usize,
) -> PyResult<()> {
    let n = mul(rows, dim, "x")?;
    by_dtype!(dtype, "add_rms_norm", |T| {
        let spans = [
            (span::<T>(x_ptr, n, "x")?, "x"),
            (span::<T>(residual_ptr, n, "residual")?, "residual"),
            (span::<T>(weight_ptr, dim, "weight")?, "weight"),
            (span::<T>(out_ptr, n, "out")?, "out"),
            (span::<T>(res_out_ptr, n, "res_out")?, "res_out"),
        ];
        check_disjoint(&spans, &[3, 4])?;
        // SAFETY: the contract above; the written buffers are disjoint from all others.
        let (x, r, w, out, res_out) = unsafe {
            (
                slice::<T>(spans[0].0),
                slice::<T>(spans[1].0),
                slice::<T>(spans[2].0),
                slice_mut::<T>(spans[3].0),
                slice_mut::<T>(spans[4].0),
            )
        };
        py.detach(|| {
            sglrs_cpu_attn::layer_ops::add_rms_norm(x, r, w, eps as f32, out, res_out, num_threads)
        })
        .map_err(op_err)
    })
}

/// `out[r] = silu(gate[r]) * up[r]` for `rows` contiguous rows `[gate | up]` of `2 * inter`.
#[pyfunction]
#[pyo3(signature = (*, dtype, gate_up_ptr, rows, inter, out_ptr, num_threads))]
fn silu_and_mul(
    py: Python<'_>,
    dtype: u8,
    gate_up_ptr: usize,
    rows: usize,
    inter: usize,
    out_ptr: usize,
    num_threads: usize,
) -> PyResult<()> {
    let n = mul(rows, inter, "out")?;
    by_dtype!(dtype, "silu_and_mul", |T| {
        let spans = [
            (
                span::<T>(gate_up_ptr, mul(n, 2, "gate_up")?, "gate_up")?,
                "gate_up",
            ),
            (span::<T>(out_ptr, n, "out")?, "out"),
        ];
        check_disjoint(&spans, &[1])?;
        // SAFETY: the contract above; `out` is disjoint from `gate_up` (checked).
        let (gu, out) = unsafe { (slice::<T>(spans[0].0), slice_mut::<T>(spans[1].0)) };
        py.detach(|| sglrs_cpu_attn::layer_ops::silu_and_mul(gu, inter, out, num_threads))
            .map_err(op_err)
    })
}

/// Rope in place on the first `heads` heads (of `head_dim`) of `rows` rows of `x`, rows
/// `row_stride` elements apart; `positions` int64 `[rows]`; `cos`/`sin` float32
/// `[max_position, head_dim]` (all contiguous).
#[pyfunction]
#[pyo3(signature = (
    *, dtype, x_ptr, rows, row_stride, heads, head_dim, positions_ptr, cos_ptr, sin_ptr,
    max_position, num_threads
))]
#[allow(clippy::too_many_arguments)]
fn rope_inplace(
    py: Python<'_>,
    dtype: u8,
    x_ptr: usize,
    rows: usize,
    row_stride: usize,
    heads: usize,
    head_dim: usize,
    positions_ptr: usize,
    cos_ptr: usize,
    sin_ptr: usize,
    max_position: usize,
    num_threads: usize,
) -> PyResult<()> {
    let width = mul(heads, head_dim, "x")?;
    if width > row_stride {
        return Err(PyValueError::new_err(format!(
            "rope: {heads} heads of {head_dim} do not fit the row stride {row_stride}"
        )));
    }
    let x_len = if rows == 0 {
        0
    } else {
        mul(rows - 1, row_stride, "x")?
            .checked_add(width)
            .ok_or_else(|| PyValueError::new_err("x: size overflows"))?
    };
    let table = mul(max_position, head_dim, "cos")?;
    by_dtype!(dtype, "rope_inplace", |T| {
        let spans = [
            (span::<T>(x_ptr, x_len, "x")?, "x"),
            (span::<i64>(positions_ptr, rows, "positions")?, "positions"),
            (span::<f32>(cos_ptr, table, "cos")?, "cos"),
            (span::<f32>(sin_ptr, table, "sin")?, "sin"),
        ];
        check_disjoint(&spans, &[0])?;
        // SAFETY: the contract above; `x` is disjoint from the inputs (checked).
        let (x, pos, cos, sin) = unsafe {
            (
                slice_mut::<T>(spans[0].0),
                slice::<i64>(spans[1].0),
                slice::<f32>(spans[2].0),
                slice::<f32>(spans[3].0),
            )
        };
        py.detach(|| {
            sglrs_cpu_attn::layer_ops::rope(
                x,
                row_stride,
                heads,
                head_dim,
                pos,
                cos,
                sin,
                num_threads,
            )
        })
        .map_err(op_err)
    })
}

// ---- bf16 linear layers on AMX tiles (`sglrs_cpu_attn::amx_linear`) ----

/// Whether `amx_linear_bf16` runs here (AMX-BF16 CPU, Linux tile permission granted).
#[pyfunction]
fn amx_linear_available() -> bool {
    sglrs_cpu_attn::amx_linear::available()
}

/// Packs a contiguous bf16 weight `[n, k]` into `out_ptr` (`n * k` bf16) for
/// `amx_linear_bf16`.
#[pyfunction]
#[pyo3(signature = (*, weight_ptr, n, k, out_ptr))]
fn amx_pack_bf16(
    py: Python<'_>,
    weight_ptr: usize,
    n: usize,
    k: usize,
    out_ptr: usize,
) -> PyResult<()> {
    let len = mul(n, k, "weight")?;
    let spans = [
        (span::<Bf16>(weight_ptr, len, "weight")?, "weight"),
        (span::<Bf16>(out_ptr, len, "out")?, "out"),
    ];
    check_disjoint(&spans, &[1])?;
    // SAFETY: the contract above; `out` is disjoint from `weight` (checked).
    let (w, out) = unsafe { (slice::<Bf16>(spans[0].0), slice_mut::<Bf16>(spans[1].0)) };
    py.detach(|| sglrs_cpu_attn::amx_linear::pack(w, n, k, out))
        .map_err(op_err)
}

/// `out = x W^T (+ bias)`: `x` bf16 `[m, k]`, the weight packed by `amx_pack_bf16`, `bias`
/// bf16 `[n]` or None, `out` `[m, n]` in float32 (`out_f32`) or bfloat16 (all contiguous).
#[pyfunction]
#[pyo3(signature = (*, x_ptr, m, k, packed_ptr, n, bias_ptr, out_ptr, out_f32, num_threads))]
#[allow(clippy::too_many_arguments)]
fn amx_linear_bf16(
    py: Python<'_>,
    x_ptr: usize,
    m: usize,
    k: usize,
    packed_ptr: usize,
    n: usize,
    bias_ptr: Option<usize>,
    out_ptr: usize,
    out_f32: bool,
    num_threads: usize,
) -> PyResult<()> {
    use sglrs_cpu_attn::amx_linear::{linear, LinearOut};
    let out_len = mul(m, n, "out")?;
    let out = if out_f32 {
        span::<f32>(out_ptr, out_len, "out")?
    } else {
        span::<Bf16>(out_ptr, out_len, "out")?
    };
    let mut spans = vec![
        (out, "out"),
        (span::<Bf16>(x_ptr, mul(m, k, "x")?, "x")?, "x"),
        (
            span::<Bf16>(packed_ptr, mul(n, k, "weight")?, "packed weight")?,
            "packed weight",
        ),
    ];
    if let Some(b) = bias_ptr {
        spans.push((span::<Bf16>(b, n, "bias")?, "bias"));
    }
    check_disjoint(&spans, &[0])?;
    // SAFETY: the contract above; `out` is disjoint from every input (checked).
    let (x, w, bias) = unsafe {
        (
            slice::<Bf16>(spans[1].0),
            slice::<Bf16>(spans[2].0),
            spans.get(3).map(|s| slice::<Bf16>(s.0)),
        )
    };
    let out = if out_f32 {
        // SAFETY: as above.
        LinearOut::F32(unsafe { slice_mut::<f32>(spans[0].0) })
    } else {
        // SAFETY: as above.
        LinearOut::Bf16(unsafe { slice_mut::<Bf16>(spans[0].0) })
    };
    py.detach(|| linear(x, m, k, w, n, bias, out, num_threads))
        .map_err(op_err)
}

// ---- float32 linear layers on AVX-512 (`sglrs_cpu_attn::f32_linear`) ----

/// Whether `f32_linear` runs here (AVX-512F CPU).
#[pyfunction]
fn f32_linear_available() -> bool {
    sglrs_cpu_attn::f32_linear::available()
}

/// Packs a contiguous float32 weight `[n, k]` into `out_ptr` (`n * k` float32) for
/// `f32_linear`.
#[pyfunction]
#[pyo3(signature = (*, weight_ptr, n, k, out_ptr))]
fn f32_pack(py: Python<'_>, weight_ptr: usize, n: usize, k: usize, out_ptr: usize) -> PyResult<()> {
    let len = mul(n, k, "weight")?;
    let spans = [
        (span::<f32>(weight_ptr, len, "weight")?, "weight"),
        (span::<f32>(out_ptr, len, "out")?, "out"),
    ];
    check_disjoint(&spans, &[1])?;
    // SAFETY: the contract above; `out` is disjoint from `weight` (checked).
    let (w, out) = unsafe { (slice::<f32>(spans[0].0), slice_mut::<f32>(spans[1].0)) };
    py.detach(|| sglrs_cpu_attn::f32_linear::pack(w, n, k, out))
        .map_err(op_err)
}

/// `out = x W^T (+ bias)`: `x` float32 `[m, k]`, the weight packed by `f32_pack`, `bias`
/// float32 `[n]` or None, `out` float32 `[m, n]` (all contiguous).
#[pyfunction]
#[pyo3(signature = (*, x_ptr, m, k, packed_ptr, n, bias_ptr, out_ptr, num_threads))]
#[allow(clippy::too_many_arguments)]
fn f32_linear(
    py: Python<'_>,
    x_ptr: usize,
    m: usize,
    k: usize,
    packed_ptr: usize,
    n: usize,
    bias_ptr: Option<usize>,
    out_ptr: usize,
    num_threads: usize,
) -> PyResult<()> {
    let mut spans = vec![
        (span::<f32>(out_ptr, mul(m, n, "out")?, "out")?, "out"),
        (span::<f32>(x_ptr, mul(m, k, "x")?, "x")?, "x"),
        (
            span::<f32>(packed_ptr, mul(n, k, "weight")?, "packed weight")?,
            "packed weight",
        ),
    ];
    if let Some(b) = bias_ptr {
        spans.push((span::<f32>(b, n, "bias")?, "bias"));
    }
    check_disjoint(&spans, &[0])?;
    // SAFETY: the contract above; `out` is disjoint from every input (checked).
    let (out, x, w, bias) = unsafe {
        (
            slice_mut::<f32>(spans[0].0),
            slice::<f32>(spans[1].0),
            slice::<f32>(spans[2].0),
            spans.get(3).map(|s| slice::<f32>(s.0)),
        )
    };
    py.detach(|| sglrs_cpu_attn::f32_linear::linear(x, m, k, w, n, bias, out, num_threads))
        .map_err(op_err)
}

/// One decoder layer of a decode step (`sglrs_cpu_attn::decode_layer`) in `dtype` (0 float32,
/// 1 bfloat16; every activation, weight and K/V buffer in it): `hidden`
/// `[batch, h]` and `residual` (None in the first layer) in, the layer's output into `out` and
/// the new residual into `res_out`; this layer's K/V rows of the new tokens are stored at
/// `out_cache_loc`. `weights`: addresses of (input norm, post-attention norm, qkv, o, gate_up,
/// down), the projections packed by `f32_pack` / `amx_pack_bf16`; `sizes`: (h, inter, q_heads, kv_heads,
/// head_dim). The attention arguments are those of `paged_decode_attention`; `positions` and
/// `out_cache_loc` are int64 `[batch]`, `cos`/`sin` float32 `[max_position, head_dim]`.
#[pyfunction]
#[pyo3(signature = (
    *, dtype, hidden_ptr, residual_ptr, out_ptr, res_out_ptr, batch, weights, sizes, eps,
    positions_ptr, cos_ptr, sin_ptr, max_position, k_ptr, v_ptr, num_slots, out_cache_loc_ptr,
    table_ptr, table_shape, req_pool_indices, seq_lens, scale, sliding_window, num_threads
))]
#[allow(clippy::too_many_arguments)]
fn decode_layer(
    py: Python<'_>,
    dtype: u8,
    hidden_ptr: usize,
    residual_ptr: Option<usize>,
    out_ptr: usize,
    res_out_ptr: usize,
    batch: usize,
    weights: (usize, usize, usize, usize, usize, usize),
    sizes: (usize, usize, usize, usize, usize),
    eps: f64,
    positions_ptr: usize,
    cos_ptr: usize,
    sin_ptr: usize,
    max_position: usize,
    k_ptr: usize,
    v_ptr: usize,
    num_slots: usize,
    out_cache_loc_ptr: usize,
    table_ptr: usize,
    table_shape: (usize, usize),
    req_pool_indices: &Bound<'_, PyAny>,
    seq_lens: &Bound<'_, PyAny>,
    scale: f64,
    sliding_window: Option<usize>,
    num_threads: usize,
) -> PyResult<()> {
    // One argument list for both element types.
    macro_rules! run_as {
        ($t:ty) => {
            decode_layer_as::<$t>(
                py,
                hidden_ptr,
                residual_ptr,
                out_ptr,
                res_out_ptr,
                batch,
                weights,
                sizes,
                eps,
                positions_ptr,
                cos_ptr,
                sin_ptr,
                max_position,
                k_ptr,
                v_ptr,
                num_slots,
                out_cache_loc_ptr,
                table_ptr,
                table_shape,
                req_pool_indices,
                seq_lens,
                scale,
                sliding_window,
                num_threads,
            )
        };
    }
    match dtype {
        F32 => run_as!(f32),
        BF16 => run_as!(Bf16),
        other => Err(PyValueError::new_err(format!(
            "decode_layer: dtype code {other} is not 0 (float32) or 1 (bfloat16)"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_layer_as<T: sglrs_cpu_attn::decode_layer::LayerElement>(
    py: Python<'_>,
    hidden_ptr: usize,
    residual_ptr: Option<usize>,
    out_ptr: usize,
    res_out_ptr: usize,
    batch: usize,
    weights: (usize, usize, usize, usize, usize, usize),
    sizes: (usize, usize, usize, usize, usize),
    eps: f64,
    positions_ptr: usize,
    cos_ptr: usize,
    sin_ptr: usize,
    max_position: usize,
    k_ptr: usize,
    v_ptr: usize,
    num_slots: usize,
    out_cache_loc_ptr: usize,
    table_ptr: usize,
    table_shape: (usize, usize),
    req_pool_indices: &Bound<'_, PyAny>,
    seq_lens: &Bound<'_, PyAny>,
    scale: f64,
    sliding_window: Option<usize>,
    num_threads: usize,
) -> PyResult<()> {
    use sglrs_cpu_attn::decode_layer::{run, LayerAttention, LayerWeights};
    let (h, inter, q_heads, kv_heads, head_dim) = sizes;
    let rows = to_u32_vec(req_pool_indices, "req_pool_indices")?;
    let lens = to_u32_vec(seq_lens, "seq_lens")?;
    let q_size = mul(q_heads, head_dim, "q")?;
    let kv_size = mul(kv_heads, head_dim, "k")?;
    let qkv_n = q_size + 2 * kv_size;
    let act = mul(batch, h, "hidden")?;
    let kv_len = mul(num_slots, kv_size, "k_buffer")?;
    let table = mul(max_position, head_dim, "cos")?;
    let (n_in, n_post, n_qkv, n_o, n_gu, n_down) = weights;
    let mut spans = vec![
        (span::<T>(out_ptr, act, "out")?, "out"),
        (span::<T>(res_out_ptr, act, "res_out")?, "res_out"),
        (span::<T>(k_ptr, kv_len, "k_buffer")?, "k_buffer"),
        (span::<T>(v_ptr, kv_len, "v_buffer")?, "v_buffer"),
        (span::<T>(hidden_ptr, act, "hidden")?, "hidden"),
        (span::<T>(n_in, h, "input norm")?, "input norm"),
        (span::<T>(n_post, h, "post norm")?, "post norm"),
        (span::<T>(n_qkv, mul(qkv_n, h, "qkv")?, "qkv")?, "qkv"),
        (span::<T>(n_o, mul(h, q_size, "o")?, "o")?, "o"),
        (
            span::<T>(n_gu, mul(2 * inter, h, "gate_up")?, "gate_up")?,
            "gate_up",
        ),
        (span::<T>(n_down, mul(h, inter, "down")?, "down")?, "down"),
        (span::<i64>(positions_ptr, batch, "positions")?, "positions"),
        (span::<f32>(cos_ptr, table, "cos")?, "cos"),
        (span::<f32>(sin_ptr, table, "sin")?, "sin"),
        (
            span::<i64>(out_cache_loc_ptr, batch, "out_cache_loc")?,
            "out_cache_loc",
        ),
        (
            span::<i32>(
                table_ptr,
                mul(table_shape.0, table_shape.1, "req_to_token")?,
                "req_to_token",
            )?,
            "req_to_token",
        ),
    ];
    if let Some(r) = residual_ptr {
        spans.push((span::<T>(r, act, "residual")?, "residual"));
    }
    check_disjoint(&spans, &[0, 1, 2, 3])?;
    // SAFETY: the module contract; the written buffers (out, res_out, K, V) share no byte with
    // any other buffer of the call (checked).
    let (out, res_out, k, v) = unsafe {
        (
            slice_mut::<T>(spans[0].0),
            slice_mut::<T>(spans[1].0),
            slice_mut::<T>(spans[2].0),
            slice_mut::<T>(spans[3].0),
        )
    };
    // SAFETY: as above (read-only inputs).
    let (hidden, w, positions, cos, sin, loc, req_to_token, residual) = unsafe {
        (
            slice::<T>(spans[4].0),
            LayerWeights {
                input_norm: slice::<T>(spans[5].0),
                post_norm: slice::<T>(spans[6].0),
                eps: eps as f32,
                qkv: slice::<T>(spans[7].0),
                o: slice::<T>(spans[8].0),
                gate_up: slice::<T>(spans[9].0),
                down: slice::<T>(spans[10].0),
                inter,
            },
            slice::<i64>(spans[11].0),
            slice::<f32>(spans[12].0),
            slice::<f32>(spans[13].0),
            slice::<i64>(spans[14].0),
            slice::<i32>(spans[15].0),
            spans.get(16).map(|s| slice::<T>(s.0)),
        )
    };
    let mut attention = LayerAttention {
        q_heads,
        kv_heads,
        head_dim,
        positions,
        cos,
        sin,
        k,
        v,
        out_cache_loc: loc,
        req_to_token,
        table_stride: table_shape.1,
        req_pool_indices: &rows,
        seq_lens: &lens,
        scale: scale as f32,
        sliding_window,
    };
    py.detach(|| {
        run(
            &w,
            &mut attention,
            hidden,
            residual,
            out,
            res_out,
            num_threads,
        )
    })
    .map_err(op_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_layer, m)?)?;
    m.add_function(wrap_pyfunction!(amx_linear_available, m)?)?;
    m.add_function(wrap_pyfunction!(amx_pack_bf16, m)?)?;
    m.add_function(wrap_pyfunction!(amx_linear_bf16, m)?)?;
    m.add_function(wrap_pyfunction!(f32_linear_available, m)?)?;
    m.add_function(wrap_pyfunction!(f32_pack, m)?)?;
    m.add_function(wrap_pyfunction!(f32_linear, m)?)?;
    m.add_function(wrap_pyfunction!(paged_decode_attention, m)?)?;
    m.add_function(wrap_pyfunction!(rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(add_rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(silu_and_mul, m)?)?;
    m.add_function(wrap_pyfunction!(rope_inplace, m)?)
}
