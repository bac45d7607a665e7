//! One work item: the `G = q_heads / kv_heads` query heads of one request that share a KV head,
//! attending over that request's positions. Each K and V row is read once for the whole group,
//! in blocks of positions with an online softmax (running max and sum per query head), so the
//! memory stays bounded and long contexts stay stable.

use crate::element::Element;
use crate::math::{exp, max, prefetch, sum, MulAdd};
use crate::{DecodeError, PagedDecode};

/// Positions per softmax block: the scores of a block stay in L1 between the K and V passes.
const BLOCK: usize = 32;

/// Per-thread buffers, sized for one work item.
pub(crate) struct Scratch {
    q: Vec<f32>,
    pub(crate) acc: Vec<f32>,
    /// A block of K (then V) rows as f32, `[BLOCK, head_dim]`.
    tile: Vec<f32>,
    /// Where each row of the block starts in K and V.
    offsets: [usize; BLOCK],
    scores: Vec<f32>,
    pub(crate) max: Vec<f32>,
    pub(crate) sum: Vec<f32>,
    /// The bf16 AVX-512 item's whole-sequence scores then probabilities, `[group, padded]`,
    /// and the K/V row offset of every position (grown on demand).
    pub(crate) probs: Vec<f32>,
    pub(crate) row_offsets: Vec<usize>,
}

impl Scratch {
    pub(crate) fn new(group: usize, head_dim: usize) -> Self {
        Scratch {
            q: vec![0.0; group * head_dim],
            acc: vec![0.0; group * head_dim],
            tile: vec![0.0; BLOCK * head_dim],
            offsets: [0; BLOCK],
            scores: vec![0.0; group * BLOCK],
            max: vec![0.0; group],
            sum: vec![0.0; group],
            probs: Vec::new(),
            row_offsets: Vec::new(),
        }
    }
}

/// Attention of work item `item` (request `item / kv_heads`, KV head `item % kv_heads`) into
/// `out` (its `G * head_dim` outputs). `HEAD_DIM` is the head size when known at compile time
/// (so the lane loops unroll), or 0 to read it from the shape.
#[inline(always)]
pub(crate) fn attend<T: Element, M: MulAdd, const HEAD_DIM: usize>(
    p: &PagedDecode<'_, T>,
    item: usize,
    out: &mut [T],
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    let d = if HEAD_DIM == 0 {
        p.shape.head_dim
    } else {
        HEAD_DIM
    };
    let hkv = p.shape.kv_heads;
    let group = p.shape.q_heads / hkv;
    let (b, kvh) = (item / hkv, item % hkv);
    for g in 0..group {
        let at = b * p.q_strides[0] + (kvh * group + g) * p.q_strides[1];
        // The scale folds into q once instead of into every score.
        for (dst, x) in s.q[g * d..(g + 1) * d].iter_mut().zip(&p.q[at..at + d]) {
            *dst = x.to_f32() * p.scale;
        }
    }
    let seq = p.seq_lens[b] as usize;
    let first = p.sliding_window.map_or(0, |w| seq.saturating_sub(w));
    let row = p.req_pool_indices[b] as usize * p.table_stride;
    let slots = &p.req_to_token[row + first..row + seq];
    let row_len = hkv * d;
    let num_slots = p.k.len() / row_len;
    s.max.fill(f32::NEG_INFINITY);
    s.sum.fill(0.0);
    s.acc.fill(0.0);
    let row_bytes = d * std::mem::size_of::<T>();
    prefetch_rows(p, &slots[..BLOCK.min(slots.len())], kvh, row_bytes);
    for (block_at, block) in slots.chunks(BLOCK).enumerate() {
        // Scattered slots defeat the hardware prefetcher: ask for the next block's rows now.
        let next = &slots[((block_at + 1) * BLOCK).min(slots.len())..];
        prefetch_rows(p, &next[..BLOCK.min(next.len())], kvh, row_bytes);
        let position = first + block_at * BLOCK;
        row_offsets(
            block,
            b,
            position,
            num_slots,
            row_len,
            kvh * d,
            &mut s.offsets,
        )?;
        let n = block.len();
        M::scores(
            &s.q,
            p.k,
            &s.offsets[..n],
            &mut s.scores,
            BLOCK,
            &mut s.tile[..n * d],
        );
        for g in 0..group {
            let scores = &mut s.scores[g * BLOCK..g * BLOCK + block.len()];
            let block_max = max(scores);
            let new_max = s.max[g].max(block_max);
            if new_max > s.max[g] {
                // Earlier blocks were weighted against a smaller max: scale them down.
                let c = exp::<M>(s.max[g] - new_max);
                s.sum[g] *= c;
                for a in &mut s.acc[g * d..(g + 1) * d] {
                    *a *= c;
                }
                s.max[g] = new_max;
            }
            // The exponentials first (a vector loop), then their sum in lanes.
            for x in scores.iter_mut() {
                *x = exp::<M>(*x - new_max);
            }
            s.sum[g] += sum(scores);
        }
        M::weighted_v(
            &s.scores,
            BLOCK,
            p.v,
            &s.offsets[..n],
            &mut s.acc,
            &mut s.tile[..n * d],
        );
    }
    for g in 0..group {
        let inv = 1.0 / s.sum[g];
        let acc = &s.acc[g * d..(g + 1) * d];
        for (o, a) in out[g * d..(g + 1) * d].iter_mut().zip(acc) {
            *o = T::from_f32(a * inv);
        }
    }
    Ok(())
}

/// Prefetches the K and V rows (this KV head's `row_bytes`) of `slots` into the cache.
#[inline(always)]
/// Each slot's element offset for one KV head (`slot * row_len + head_offset`) into
/// `offsets`, or the error naming the first slot outside the pool; `block[0]` is position
/// `position` of request `request`.
pub(crate) fn row_offsets(
    block: &[i32],
    request: usize,
    position: usize,
    num_slots: usize,
    row_len: usize,
    head_offset: usize,
    offsets: &mut [usize],
) -> Result<(), DecodeError> {
    for (j, (&slot, offset)) in block.iter().zip(offsets.iter_mut()).enumerate() {
        if slot < 0 || slot as usize >= num_slots {
            return Err(DecodeError::Slot {
                request,
                position: position + j,
                slot: i64::from(slot),
                num_slots,
            });
        }
        *offset = slot as usize * row_len + head_offset;
    }
    Ok(())
}

fn prefetch_rows<T: Element>(p: &PagedDecode<'_, T>, slots: &[i32], kvh: usize, row_bytes: usize) {
    let d = p.shape.head_dim;
    let row_len = p.shape.kv_heads * d;
    for &slot in slots {
        // Unchecked: a prefetch of a bad address is harmless (the read checks the slot).
        let at = (slot as usize).wrapping_mul(row_len).wrapping_add(kvh * d);
        prefetch(p.k.as_ptr().wrapping_add(at), row_bytes);
        prefetch(p.v.as_ptr().wrapping_add(at), row_bytes);
    }
}
