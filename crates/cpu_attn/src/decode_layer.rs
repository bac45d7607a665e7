//! One Llama-family decoder layer of a bf16 decode step in a single call: add + RMSNorm, the
//! fused q/k/v projection, rope on q and k, the new K/V rows stored at their slots, paged decode
//! attention, the output projection, add + RMSNorm, the gate/up projection, SiLU * up and the
//! down projection. The projections run on AMX ([`crate::amx_linear`]), the rest on the
//! crate's kernels, in the same order and with the same rounding as the op-by-op CPU path, so
//! the results are identical to it; what goes is the interpreter and allocator work between
//! ~10 ops per layer (~5 ms of a 36 ms step on SmolLM2 at batch 32).

use std::cell::RefCell;

use crate::amx_linear::{self, LinearOut};
use crate::element::Bf16;
use crate::layer_ops::{add_rms_norm, rms_norm, rope, silu_and_mul};
use crate::{DecodeError, DecodeShape, PagedDecode};

fn shape_err<T>(message: String) -> Result<T, DecodeError> {
    Err(DecodeError::Shape(format!("decode layer: {message}")))
}

/// The weights of one layer: norms `[hidden]`, projections packed by [`amx_linear::pack`].
#[derive(Clone, Copy)]
pub struct LayerWeights<'a> {
    pub input_norm: &'a [Bf16],
    pub post_norm: &'a [Bf16],
    pub eps: f32,
    /// `[(q_heads + 2 kv_heads) * head_dim, hidden]`, rows `[q | k | v]`.
    pub qkv: &'a [Bf16],
    /// `[hidden, q_heads * head_dim]`.
    pub o: &'a [Bf16],
    /// `[2 * inter, hidden]`, rows `[gate | up]`.
    pub gate_up: &'a [Bf16],
    /// `[hidden, inter]`.
    pub down: &'a [Bf16],
    pub inter: usize,
}

/// This step's attention inputs (see [`PagedDecode`]) and where the new K/V rows go.
pub struct LayerAttention<'a> {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// `[batch]` positions, and float32 `[max_position, head_dim]` rope tables.
    pub positions: &'a [i64],
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    /// This layer's `[num_slots, kv_heads, head_dim]` K and V.
    pub k: &'a mut [Bf16],
    pub v: &'a mut [Bf16],
    /// `[batch]`: the slot of each request's new token.
    pub out_cache_loc: &'a [i64],
    pub req_to_token: &'a [i32],
    pub table_stride: usize,
    pub req_pool_indices: &'a [u32],
    pub seq_lens: &'a [u32],
    pub scale: f32,
    pub sliding_window: Option<usize>,
}

thread_local! {
    /// The intermediate rows of a call, reused by the next (a step calls once per layer).
    static SCRATCH: RefCell<Vec<Bf16>> = const { RefCell::new(Vec::new()) };
}

/// `hidden` `[batch, h]` and `residual` (None in the first layer: the residual is `hidden`)
/// in; the layer's output into `out` and the new residual into `res_out` (both `[batch, h]`).
pub fn run(
    w: &LayerWeights<'_>,
    a: &mut LayerAttention<'_>,
    hidden: &[Bf16],
    residual: Option<&[Bf16]>,
    out: &mut [Bf16],
    res_out: &mut [Bf16],
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
            residual.map_or(batch * h, <[Bf16]>::len),
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
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        let sizes = [
            batch * h,
            batch * qkv_n,
            batch * q_size,
            batch * h,
            batch * 2 * inter,
        ];
        let total: usize = sizes.iter().sum::<usize>() + batch * (inter + h);
        if scratch.len() < total {
            scratch.resize(total, Bf16::default());
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
        let linear = |x: &[Bf16], k: usize, packed: &[Bf16], n: usize, y: &mut [Bf16]| {
            amx_linear::linear(x, batch, k, packed, n, None, LinearOut::Bf16(y), threads)
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

    fn values(len: usize, seed: u32) -> Vec<Bf16> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1001)
            .map(|u| Bf16::from_f32(u as f32 / 2000.0 - 0.25))
            .collect()
    }

    fn packed(n: usize, k: usize, seed: u32) -> (Vec<Bf16>, Vec<Bf16>) {
        let w = values(n * k, seed);
        let mut p = vec![Bf16::default(); n * k];
        amx_linear::pack(&w, n, k, &mut p).unwrap();
        (w, p)
    }

    #[test]
    fn stores_the_new_rows_and_treats_no_residual_as_zero() {
        if !amx_linear::available() {
            eprintln!("skipped: no AMX-BF16 on this machine");
            return;
        }
        let batch = 2;
        let norm = vec![Bf16::from_f32(1.0); H];
        let ((_, qkv), (_, o), (_, gu), (_, down)) = (
            packed(QKV_N, H, 1),
            packed(H, HQ * HD, 2),
            packed(2 * INTER, H, 3),
            packed(H, INTER, 4),
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
        let (k, v) = (values(SLOTS * HKV * HD, 5), values(SLOTS * HKV * HD, 6));
        // Request 0 has one position (slot 3); request 1 three (slots 7, 8, then 9).
        let table: Vec<i32> = vec![3, 0, 0, 0, 7, 8, 9, 0];
        let hidden = values(batch * H, 7);
        let (mut out, mut res_out) = (
            vec![Bf16::default(); batch * H],
            vec![Bf16::default(); batch * H],
        );
        let attention =
            |k: &'static mut [Bf16], v: &'static mut [Bf16], loc: &'static [i64]| LayerAttention {
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
        let zeros = vec![Bf16::default(); batch * H];
        let (mut out2, mut res2) = (out.clone(), res_out.clone());
        let mut a = attention(k.clone().leak(), v.clone().leak(), &[3, 9]);
        run(&w, &mut a, &hidden, Some(&zeros), &mut out2, &mut res2, 1).unwrap();
        assert_eq!((out2, res2), (out.clone(), res_out.clone()));
        // The stored rows: the normed input's k (roped) and v projections.
        let mut normed = vec![Bf16::default(); batch * H];
        rms_norm(&hidden, &norm, 1e-6, &mut normed, 1).unwrap();
        let mut proj = vec![Bf16::default(); batch * QKV_N];
        amx_linear::linear(
            &normed,
            batch,
            H,
            &qkv,
            QKV_N,
            None,
            LinearOut::Bf16(&mut proj),
            1,
        )
        .unwrap();
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
