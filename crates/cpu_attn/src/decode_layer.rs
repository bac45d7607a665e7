//! One Llama-family decoder layer of a decode step in a single call: add + RMSNorm, the fused
//! q/k/v projection, rope on q and k, the new K/V rows stored at their slots, paged decode
//! attention, the output projection, add + RMSNorm, the gate/up projection, SiLU * up and the
//! down projection. The projections run on AMX in bfloat16 ([`crate::amx_linear`]) and on
//! AVX-512 in float32 ([`crate::f32_linear`]), the rest on the crate's kernels, in the same
//! order and with the same rounding as the op-by-op CPU path, so the results are identical to
//! it; what goes is the interpreter and allocator work between ~10 ops per layer (~5 ms of a
//! 36 ms bf16 step on SmolLM2 at batch 32, ~15 ms of a 40 ms float32 step at batch 1).

use std::cell::RefCell;

use crate::amx_linear::{self, LinearOut};
use crate::element::{Bf16, Element};
use crate::f32_linear;
use crate::layer_ops::{add_rms_norm, rms_norm, rope, silu_and_mul};
use crate::{DecodeError, DecodeShape, PagedDecode};

fn shape_err<T>(message: String) -> Result<T, DecodeError> {
    Err(DecodeError::Shape(format!("decode layer: {message}")))
}

/// An element type with a packed linear kernel for decode rows and a scratch buffer.
pub trait LayerElement: Element + Default {
    /// `y = x W^T` for `m` rows, `W` `[n, k]` packed for this type's kernel.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        x: &[Self],
        m: usize,
        k: usize,
        packed: &[Self],
        n: usize,
        y: &mut [Self],
        threads: usize,
    ) -> Result<(), DecodeError>;

    /// Runs `f` on this thread's scratch buffer of this type.
    fn with_scratch<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R;
}

thread_local! {
    /// The intermediate rows of a call, reused by the next (a step calls once per layer).
    static SCRATCH_BF16: RefCell<Vec<Bf16>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// bfloat16: projections packed by [`amx_linear::pack`].
impl LayerElement for Bf16 {
    fn linear(
        x: &[Self],
        m: usize,
        k: usize,
        packed: &[Self],
        n: usize,
        y: &mut [Self],
        threads: usize,
    ) -> Result<(), DecodeError> {
        amx_linear::linear(x, m, k, packed, n, None, LinearOut::Bf16(y), threads)
    }

    fn with_scratch<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R {
        SCRATCH_BF16.with(|cell| f(&mut cell.borrow_mut()))
    }
}

/// float32: projections packed by [`f32_linear::pack`].
impl LayerElement for f32 {
    fn linear(
        x: &[Self],
        m: usize,
        k: usize,
        packed: &[Self],
        n: usize,
        y: &mut [Self],
        threads: usize,
    ) -> Result<(), DecodeError> {
        f32_linear::linear(x, m, k, packed, n, None, y, threads)
    }

    fn with_scratch<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R {
        SCRATCH_F32.with(|cell| f(&mut cell.borrow_mut()))
    }
}

/// The weights of one layer: norms `[hidden]`, projections packed for `T`'s kernel.
#[derive(Clone, Copy)]
pub struct LayerWeights<'a, T> {
    pub input_norm: &'a [T],
    pub post_norm: &'a [T],
    pub eps: f32,
    /// `[(q_heads + 2 kv_heads) * head_dim, hidden]`, rows `[q | k | v]`.
    pub qkv: &'a [T],
    /// `[hidden, q_heads * head_dim]`.
    pub o: &'a [T],
    /// `[2 * inter, hidden]`, rows `[gate | up]`.
    pub gate_up: &'a [T],
    /// `[hidden, inter]`.
    pub down: &'a [T],
    pub inter: usize,
}

/// This step's attention inputs (see [`PagedDecode`]) and where the new K/V rows go.
pub struct LayerAttention<'a, T> {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// `[batch]` positions, and float32 `[max_position, head_dim]` rope tables.
    pub positions: &'a [i64],
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    /// This layer's `[num_slots, kv_heads, head_dim]` K and V.
    pub k: &'a mut [T],
    pub v: &'a mut [T],
    /// `[batch]`: the slot of each request's new token.
    pub out_cache_loc: &'a [i64],
    pub req_to_token: &'a [i32],
    pub table_stride: usize,
    pub req_pool_indices: &'a [u32],
    pub seq_lens: &'a [u32],
    pub scale: f32,
    pub sliding_window: Option<usize>,
}

/// `hidden` `[batch, h]` and `residual` (None in the first layer: the residual is `hidden`)
/// in; the layer's output into `out` and the new residual into `res_out` (both `[batch, h]`).
pub fn run<T: LayerElement>(
    w: &LayerWeights<'_, T>,
    a: &mut LayerAttention<'_, T>,
    hidden: &[T],
    residual: Option<&[T]>,
    out: &mut [T],
    res_out: &mut [T],
    threads: usize,
) -> Result<(), DecodeError> {
    let h = w.input_norm.len();
    let batch = a.positions.len();
    let (hd, hq, hkv) = (a.head_dim, a.q_heads, a.kv_heads);
    let (q_size, kv_size) = (hq * hd, hkv * hd);
    let qkv_n = q_size + 2 * kv_size;
    let inter = w.inter;
    if h == 0 || w.post_norm.len() != h {
        return shape_err(format!(
            "norm weights have {} and {} elements",
            h,
            w.post_norm.len()
        ));
    }
    for (name, got, want) in [
        ("hidden", hidden.len(), batch * h),
        ("out", out.len(), batch * h),
        ("res_out", res_out.len(), batch * h),
        (
            "residual",
            residual.map_or(batch * h, <[T]>::len),
            batch * h,
        ),
        ("out_cache_loc", a.out_cache_loc.len(), batch),
        ("qkv weight", w.qkv.len(), qkv_n * h),
        ("o weight", w.o.len(), h * q_size),
        ("gate_up weight", w.gate_up.len(), 2 * inter * h),
        ("down weight", w.down.len(), h * inter),
    ] {
        if got != want {
            return shape_err(format!("{name} has {got} elements, expected {want}"));
        }
    }
    let row_len = kv_size;
    if row_len == 0 || a.k.len() != a.v.len() || !a.k.len().is_multiple_of(row_len) {
        return shape_err(format!(
            "K ({}) and V ({}) must both be [num_slots, {hkv}, {hd}]",
            a.k.len(),
            a.v.len()
        ));
    }
    let num_slots = a.k.len() / row_len;
    if let Some(&s) = a
        .out_cache_loc
        .iter()
        .find(|&&s| s < 0 || s as usize >= num_slots)
    {
        return shape_err(format!(
            "new-token slot {s} outside the {num_slots} KV slots"
        ));
    }
    if batch == 0 {
        return Ok(());
    }
    T::with_scratch(|scratch| {
        let sizes = [
            batch * h,
            batch * qkv_n,
            batch * q_size,
            batch * h,
            batch * 2 * inter,
        ];
        let total: usize = sizes.iter().sum::<usize>() + batch * (inter + h);
        if scratch.len() < total {
            scratch.resize(total, T::default());
        }
        let (normed, rest) = scratch.split_at_mut(sizes[0]);
        let (qkv, rest) = rest.split_at_mut(sizes[1]);
        let (attn, rest) = rest.split_at_mut(sizes[2]);
        let (o, rest) = rest.split_at_mut(sizes[3]);
        let (gate_up, rest) = rest.split_at_mut(sizes[4]);
        let (act, rest) = rest.split_at_mut(batch * inter);
        let residual_mid = &mut rest[..batch * h];

        // Attention half: residual stream, norm, q/k/v, rope, K/V store, attention, o.
        match residual {
            None => {
                rms_norm(hidden, w.input_norm, w.eps, normed, threads)?;
                res_out.copy_from_slice(hidden);
            }
            Some(r) => add_rms_norm(hidden, r, w.input_norm, w.eps, normed, res_out, threads)?,
        }
        let linear = |x: &[T], k: usize, packed: &[T], n: usize, y: &mut [T]| {
            T::linear(x, batch, k, packed, n, y, threads)
        };
        linear(normed, h, w.qkv, qkv_n, qkv)?;
        // q and k heads are adjacent in each row: one rope over both.
        let width = (batch - 1) * qkv_n + q_size + kv_size;
        rope(
            &mut qkv[..width],
            qkv_n,
            hq + hkv,
            hd,
            a.positions,
            a.cos,
            a.sin,
            threads,
        )?;
        for (row, &slot) in qkv.chunks_exact(qkv_n).zip(a.out_cache_loc) {
            let at = slot as usize * row_len;
            a.k[at..at + row_len].copy_from_slice(&row[q_size..q_size + kv_size]);
            a.v[at..at + row_len].copy_from_slice(&row[q_size + kv_size..]);
        }
        PagedDecode {
            shape: DecodeShape {
                batch,
                q_heads: hq,
                kv_heads: hkv,
                head_dim: hd,
            },
            q: &qkv[..],
            q_strides: [qkv_n, hd],
            k: a.k,
            v: a.v,
            req_to_token: a.req_to_token,
            table_stride: a.table_stride,
            req_pool_indices: a.req_pool_indices,
            seq_lens: a.seq_lens,
            scale: a.scale,
            sliding_window: a.sliding_window,
        }
        .run(attn, threads)?;
        linear(attn, q_size, w.o, h, o)?;

        // MLP half: residual stream (o + residual), norm, gate/up, SiLU * up, down.
        residual_mid.copy_from_slice(res_out);
        add_rms_norm(
            o,
            residual_mid,
            w.post_norm,
            w.eps,
            normed,
            res_out,
            threads,
        )?;
        linear(normed, h, w.gate_up, 2 * inter, gate_up)?;
        silu_and_mul(gate_up, inter, act, threads)?;
        linear(act, inter, w.down, h, out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;

    const H: usize = 64;
    const INTER: usize = 64;
    const HD: usize = 32;
    const HQ: usize = 2;
    const HKV: usize = 1;
    const QKV_N: usize = (HQ + 2 * HKV) * HD;
    const SLOTS: usize = 16;

    fn values<T: Element>(len: usize, seed: u32) -> Vec<T> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1001)
            .map(|u| T::from_f32(u as f32 / 2000.0 - 0.25))
            .collect()
    }

    type Pack<T> = fn(&[T], usize, usize, &mut [T]) -> Result<(), DecodeError>;

    fn packed<T: LayerElement>(n: usize, k: usize, seed: u32, pack: Pack<T>) -> Vec<T> {
        let w = values(n * k, seed);
        let mut p = vec![T::default(); n * k];
        pack(&w, n, k, &mut p).unwrap();
        p
    }

    #[test]
    fn bf16_stores_the_new_rows_and_treats_no_residual_as_zero() {
        if !amx_linear::available() {
            eprintln!("skipped: no AMX-BF16 on this machine");
            return;
        }
        stores_the_new_rows_and_treats_no_residual_as_zero::<Bf16>(amx_linear::pack);
    }

    #[test]
    fn f32_stores_the_new_rows_and_treats_no_residual_as_zero() {
        if !f32_linear::available() {
            eprintln!("skipped: no AVX-512 on this machine");
            return;
        }
        stores_the_new_rows_and_treats_no_residual_as_zero::<f32>(f32_linear::pack);
    }

    fn stores_the_new_rows_and_treats_no_residual_as_zero<T>(pack: Pack<T>)
    where
        T: LayerElement + PartialEq + std::fmt::Debug,
    {
        let batch = 2;
        let norm = vec![T::from_f32(1.0); H];
        let (qkv, o, gu, down) = (
            packed(QKV_N, H, 1, pack),
            packed(H, HQ * HD, 2, pack),
            packed(2 * INTER, H, 3, pack),
            packed(H, INTER, 4, pack),
        );
        let w = LayerWeights {
            input_norm: &norm,
            post_norm: &norm,
            eps: 1e-6,
            qkv: &qkv,
            o: &o,
            gate_up: &gu,
            down: &down,
            inter: INTER,
        };
        let cos: Vec<f32> = (0..8 * HD).map(|i| ((i % 7) as f32 * 0.1).cos()).collect();
        let sin: Vec<f32> = (0..8 * HD).map(|i| ((i % 7) as f32 * 0.1).sin()).collect();
        let positions = [0i64, 2];
        let (k, v) = (
            values::<T>(SLOTS * HKV * HD, 5),
            values::<T>(SLOTS * HKV * HD, 6),
        );
        // Request 0 has one position (slot 3); request 1 three (slots 7, 8, then 9).
        let table: Vec<i32> = vec![3, 0, 0, 0, 7, 8, 9, 0];
        let hidden = values::<T>(batch * H, 7);
        let (mut out, mut res_out) = (vec![T::default(); batch * H], vec![T::default(); batch * H]);
        let attention =
            |k: &'static mut [T], v: &'static mut [T], loc: &'static [i64]| LayerAttention {
                q_heads: HQ,
                kv_heads: HKV,
                head_dim: HD,
                positions: &[0, 2],
                cos: cos.clone().leak(),
                sin: sin.clone().leak(),
                k,
                v,
                out_cache_loc: loc,
                req_to_token: table.clone().leak(),
                table_stride: 4,
                req_pool_indices: &[0, 1],
                seq_lens: &[1, 3],
                scale: 0.2,
                sliding_window: None,
            };
        let mut a = attention(k.clone().leak(), v.clone().leak(), &[3, 9]);
        run(&w, &mut a, &hidden, None, &mut out, &mut res_out, 2).unwrap();
        let (k, v) = (a.k.to_vec(), a.v.to_vec());
        assert!(out.iter().all(|x| x.to_f32().is_finite()));
        // No residual (the first layer) is a zero residual: hidden + 0 rounds to hidden.
        let zeros = vec![T::default(); batch * H];
        let (mut out2, mut res2) = (out.clone(), res_out.clone());
        let mut a = attention(k.clone().leak(), v.clone().leak(), &[3, 9]);
        run(&w, &mut a, &hidden, Some(&zeros), &mut out2, &mut res2, 1).unwrap();
        assert_eq!((out2, res2), (out.clone(), res_out.clone()));
        // The stored rows: the normed input's k (roped) and v projections.
        let mut normed = vec![T::default(); batch * H];
        rms_norm(&hidden, &norm, 1e-6, &mut normed, 1).unwrap();
        let mut proj = vec![T::default(); batch * QKV_N];
        T::linear(&normed, batch, H, &qkv, QKV_N, &mut proj, 1).unwrap();
        let width = QKV_N + (HQ + HKV) * HD;
        rope(
            &mut proj[..width],
            QKV_N,
            HQ + HKV,
            HD,
            &positions,
            &cos,
            &sin,
            1,
        )
        .unwrap();
        for (r, slot) in [(0, 3), (1, 9)] {
            let row = &proj[r * QKV_N..(r + 1) * QKV_N];
            assert_eq!(&k[slot * HD..(slot + 1) * HD], &row[HQ * HD..(HQ + 1) * HD]);
            assert_eq!(&v[slot * HD..(slot + 1) * HD], &row[(HQ + 1) * HD..]);
        }

        // A new-token slot outside the pool is refused before anything is written.
        let mut a = attention(k.clone().leak(), v.clone().leak(), &[3, SLOTS as i64]);
        let err = run(&w, &mut a, &hidden, None, &mut out, &mut res_out, 1).unwrap_err();
        assert!(err.to_string().contains("outside the 16 KV slots"), "{err}");
        assert_eq!(a.k, &k[..]);
    }
}
