//! bfloat16 linear layers `y = x W^T (+ b)` on Intel AMX tiles, for the CPU decode step.
//!
//! At decode's few rows a linear layer is bound by reading its weight once from memory. oneDNN's
//! AMX kernel reads a cold weight at ~7.5 GB/s on a 2-core Sapphire Rapids guest whose cores
//! stream ~21 GB/s: its tile loads wait on memory one after another. Here the weight is packed
//! once in the order the kernel reads it (each thread streams one contiguous range) and every
//! step prefetches well ahead into L2, which reads the same weight at ~18 GB/s.
//!
//! Packed layout of a `[n, k]` weight: blocks of 32 output columns (two 16-column tiles), each
//! its `k / 32` steps of two 1 KiB tiles in AMX's pair-interleaved ("VNNI") form: tile row `r`
//! holds, for each of its 16 columns `c`, the elements `k0 + 2r` and `k0 + 2r + 1` of weight
//! row `c`. Products are accumulated in f32 by the tile unit (as oneDNN does); the output is
//! rounded once to bf16 (nearest even) after the bias add, or kept in f32.

use crate::element::Bf16;
use crate::DecodeError;

/// Output columns of one packed block (two tiles of 16).
pub const BLOCK_N: usize = 32;
/// Reduction elements of one tile step (a tile row is 64 bytes of bf16 pairs).
pub const BLOCK_K: usize = 32;

fn shape_err<T>(message: String) -> Result<T, DecodeError> {
    Err(DecodeError::Shape(format!("amx linear: {message}")))
}

/// Where the output rows `[m, n]` (row-major, contiguous) go.
pub enum LinearOut<'a> {
    Bf16(&'a mut [Bf16]),
    F32(&'a mut [f32]),
}

impl LinearOut<'_> {
    fn len(&self) -> usize {
        match self {
            LinearOut::Bf16(o) => o.len(),
            LinearOut::F32(o) => o.len(),
        }
    }
}

/// Whether the weight shape `[n, k]` has a packed form (both multiples of 32, non-empty).
pub fn shape_supported(n: usize, k: usize) -> bool {
    n > 0 && k > 0 && n.is_multiple_of(BLOCK_N) && k.is_multiple_of(BLOCK_K)
}

fn check_weight(n: usize, k: usize) -> Result<(), DecodeError> {
    if !shape_supported(n, k) {
        return shape_err(format!(
            "weight [{n}, {k}]: both sizes must be positive multiples of 32"
        ));
    }
    Ok(())
}

/// Packs a row-major `[n, k]` weight into `out` (same length) in the kernel's layout.
pub fn pack(weight: &[Bf16], n: usize, k: usize, out: &mut [Bf16]) -> Result<(), DecodeError> {
    check_weight(n, k)?;
    if weight.len() != n * k || out.len() != n * k {
        return shape_err(format!(
            "weight ({}) and packed ({}) must both hold {n} x {k} elements",
            weight.len(),
            out.len()
        ));
    }
    let mut at = 0;
    for nb in 0..n / BLOCK_N {
        for kb in 0..k / BLOCK_K {
            for tile in 0..2 {
                for pair in 0..16 {
                    for col in 0..16 {
                        let row = &weight[(nb * BLOCK_N + tile * 16 + col) * k..];
                        let src = kb * BLOCK_K + 2 * pair;
                        out[at] = row[src];
                        out[at + 1] = row[src + 1];
                        at += 2;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether this CPU and OS run the kernel (AMX-BF16 tiles, AVX-512 BF16, and the Linux
/// permission to use the tile state, requested once for the process).
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(x86::detect)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// `out = x W^T (+ bias)` for `m` rows `x` `[m, k]` (row-major) and a weight packed by [`pack`]
/// (`[n, k]`), on `threads` threads (each streams its own range of column blocks).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[Bf16],
    m: usize,
    k: usize,
    packed: &[Bf16],
    n: usize,
    bias: Option<&[Bf16]>,
    mut out: LinearOut<'_>,
    threads: usize,
) -> Result<(), DecodeError> {
    check_weight(n, k)?;
    crate::check_linear_call(
        "amx linear",
        m,
        k,
        n,
        x.len(),
        packed.len(),
        out.len(),
        bias.map(|b| b.len()),
        threads,
    )?;
    if !available() {
        return shape_err("this CPU or OS has no AMX-BF16 tiles".into());
    }
    if m == 0 {
        return Ok(());
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let job = x86::Job {
            x: x.as_ptr() as usize,
            m,
            k,
            w: packed.as_ptr() as usize,
            n,
            bias: bias.map_or(0, |b| b.as_ptr() as usize),
            out: match &mut out {
                LinearOut::Bf16(o) => x86::Out::Bf16(o.as_mut_ptr() as usize),
                LinearOut::F32(o) => x86::Out::F32(o.as_mut_ptr() as usize),
            },
        };
        x86::run(&job, threads)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        let _ = &mut out;
        unreachable!("available() is false off x86-64 Linux")
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;

    use super::{BLOCK_K, BLOCK_N};
    use crate::{thread_pool, DecodeError};

    /// Bytes of one column block's k-step (two 1 KiB tiles).
    const STEP_BYTES: usize = 2 * 1024;
    /// How far ahead of the current k-step each step prefetches into L2 (measured best of
    /// 4-64 KiB: 8-32 KiB, ~18 GB/s against ~13 without).
    const PREFETCH_BYTES: usize = 32 * 1024;
    /// Rows of `x` kept hot while the column blocks stream past them (prefill): ~768 KiB.
    const GROUP_BYTES: usize = 768 * 1024;

    pub(super) fn detect() -> bool {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            return false;
        }
        // cpuid leaf 7 exists on every x86-64 CPU that has AVX-512.
        let (l0, l1) = (__cpuid_count(7, 0), __cpuid_count(7, 1));
        let amx_bf16 = l0.edx & (1 << 22) != 0;
        let amx_tile = l0.edx & (1 << 24) != 0;
        let avx512_bf16 = l1.eax & (1 << 5) != 0;
        amx_bf16 && amx_tile && avx512_bf16 && request_tile_permission()
    }

    /// Linux's arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): the process may use the
    /// tile registers (idempotent; torch's oneDNN asks the same).
    fn request_tile_permission() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a plain syscall with integer arguments; rcx and r11 are clobbered by it.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }

    #[derive(Clone, Copy)]
    pub(super) enum Out {
        Bf16(usize),
        F32(usize),
    }

    /// One call's buffers as addresses (checked by the caller), shared by the threads; each
    /// thread writes only its own output columns.
    pub(super) struct Job {
        pub x: usize,
        pub m: usize,
        pub k: usize,
        pub w: usize,
        pub n: usize,
        pub bias: usize,
        pub out: Out,
    }

    pub(super) fn run(job: &Job, threads: usize) -> Result<(), DecodeError> {
        let blocks = job.n / BLOCK_N;
        let threads = threads.min(blocks);
        if threads <= 1 {
            // SAFETY: `available()` held and the caller checked every buffer's size.
            unsafe { blocks_range(job, 0, blocks) };
            return Ok(());
        }
        thread_pool(threads)?.broadcast(|ctx| {
            let (t, all) = (ctx.index(), ctx.num_threads());
            // SAFETY: as above; the column ranges of the threads are disjoint.
            unsafe { blocks_range(job, blocks * t / all, blocks * (t + 1) / all) };
        });
        Ok(())
    }

    /// The 64-byte tile configuration (palette 1).
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// tmm0..3: C (rows block 0/1 x column tile 0/1), tmm4/5: x rows block 0/1, tmm6/7: W
    /// column tile 0/1. `rows0`/`rows1`: x rows in the two row blocks (rows1 may be 0).
    unsafe fn configure(rows0: usize, rows1: usize) {
        let mut cfg = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        let tiles = [rows0, rows0, rows1, rows1, rows0, rows1, 16, 16];
        for (t, &rows) in tiles.iter().enumerate() {
            if rows > 0 {
                cfg.colsb[t] = 64;
                cfg.rows[t] = rows as u8;
            }
        }
        asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly));
    }

    /// Column blocks `b0..b1` of every row: rows in groups that stay in cache, each column
    /// block's k-steps streamed once per group, 32 rows (two tile row blocks) at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn blocks_range(job: &Job, b0: usize, b1: usize) {
        let k = job.k;
        let k_steps = k / BLOCK_K;
        let group = (GROUP_BYTES / (2 * k)).max(32) / 32 * 32;
        let mut config = (usize::MAX, usize::MAX);
        let mut c = Tiles([0.0; 4 * 256]);
        for g0 in (0..job.m).step_by(group) {
            let g1 = (g0 + group).min(job.m);
            for b in b0..b1 {
                let w = (job.w as *const u8).add(b * k_steps * STEP_BYTES);
                for r0 in (g0..g1).step_by(32) {
                    let rows0 = (g1 - r0).min(16);
                    let rows1 = (g1 - r0 - rows0).min(16);
                    if config != (rows0, rows1) {
                        configure(rows0, rows1);
                        config = (rows0, rows1);
                    }
                    let x = (job.x as *const u16).add(r0 * k) as *const u8;
                    // Only the first pass over a block reads it from memory.
                    let prefetch = r0 == g0;
                    if rows1 > 0 {
                        two_row_blocks(x, k, w, k_steps, prefetch);
                    } else {
                        one_row_block(x, k, w, k_steps, prefetch);
                    }
                    store_tiles(&mut c, rows1 > 0);
                    write_rows(job, &c, r0, rows0, rows1, b * BLOCK_N);
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }

    #[inline(always)]
    unsafe fn prefetch_step(w: *const u8) {
        let ahead = w.wrapping_add(PREFETCH_BYTES);
        for line in 0..STEP_BYTES / 64 {
            // Prefetches never fault, so reading past the end of the weight is harmless.
            asm!("prefetcht2 [{}]", in(reg) ahead.wrapping_add(line * 64),
                 options(nostack, readonly, preserves_flags));
        }
    }

    #[inline(always)]
    unsafe fn two_row_blocks(x: *const u8, k: usize, w: *const u8, steps: usize, prefetch: bool) {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let row_bytes = 2 * k;
        for s in 0..steps {
            let b = w.add(s * STEP_BYTES);
            if prefetch {
                prefetch_step(b);
            }
            let a = x.add(s * 64);
            asm!(
                "tileloadd tmm4, [{a} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a = in(reg) a,
                a1 = in(reg) a.add(16 * row_bytes),
                sa = in(reg) row_bytes,
                b = in(reg) b,
                b1 = in(reg) b.add(1024),
                sb = in(reg) 64usize,
                options(nostack, readonly),
            );
        }
    }

    #[inline(always)]
    unsafe fn one_row_block(x: *const u8, k: usize, w: *const u8, steps: usize, prefetch: bool) {
        asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
        for s in 0..steps {
            let b = w.add(s * STEP_BYTES);
            if prefetch {
                prefetch_step(b);
            }
            asm!(
                "tileloadd tmm4, [{a} + {sa}*1]",
                "tileloadd tmm6, [{b} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                a = in(reg) x.add(s * 64),
                sa = in(reg) 2 * k,
                b = in(reg) b,
                b1 = in(reg) b.add(1024),
                sb = in(reg) 64usize,
                options(nostack, readonly),
            );
        }
    }

    /// The four accumulator tiles, 16 x 16 f32 each, in tmm order.
    #[repr(C, align(64))]
    struct Tiles([f32; 4 * 256]);

    #[inline(always)]
    unsafe fn store_tiles(c: &mut Tiles, both: bool) {
        let p = c.0.as_mut_ptr() as *mut u8;
        asm!(
            "tilestored [{p} + {s}*1], tmm0",
            "tilestored [{p1} + {s}*1], tmm1",
            p = in(reg) p, p1 = in(reg) p.add(1024), s = in(reg) 64usize,
            options(nostack),
        );
        if both {
            asm!(
                "tilestored [{p2} + {s}*1], tmm2",
                "tilestored [{p3} + {s}*1], tmm3",
                p2 = in(reg) p.add(2048), p3 = in(reg) p.add(3072), s = in(reg) 64usize,
                options(nostack),
            );
        }
    }

    /// Rows `r0 .. r0 + rows0 + rows1` of output columns `col .. col + 32` from the tiles,
    /// plus the bias, in the output's type.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn write_rows(job: &Job, c: &Tiles, r0: usize, rows0: usize, rows1: usize, col: usize) {
        let bias = |t: usize| {
            if job.bias == 0 {
                _mm512_setzero_ps()
            } else {
                let b = _mm256_loadu_si256((job.bias as *const u16).add(col + 16 * t).cast());
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(b)))
            }
        };
        let biases = [bias(0), bias(1)];
        for (block, rows) in [(0, rows0), (1, rows1)] {
            for r in 0..rows {
                let row = r0 + 16 * block + r;
                for (t, &b) in biases.iter().enumerate() {
                    let tile = c.0.as_ptr().add((2 * block + t) * 256 + r * 16);
                    let v = _mm512_add_ps(_mm512_load_ps(tile), b);
                    let at = row * job.n + col + 16 * t;
                    match job.out {
                        Out::F32(o) => _mm512_storeu_ps((o as *mut f32).add(at), v),
                        Out::Bf16(o) => {
                            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                            _mm256_storeu_si256((o as *mut u16).add(at).cast(), h);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;
    use proptest::prelude::*;

    fn reference(
        x: &[Bf16],
        m: usize,
        k: usize,
        w: &[Bf16],
        n: usize,
        bias: Option<&[Bf16]>,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|l| f64::from(x[i * k + l].to_f32()) * f64::from(w[j * k + l].to_f32()))
                    .sum();
                out[i * n + j] = dot as f32 + bias.map_or(0.0, |b| b[j].to_f32());
            }
        }
        out
    }

    fn values(len: usize, seed: u64) -> Vec<Bf16> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                Bf16::from_f32((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            })
            .collect()
    }

    fn check(m: usize, nb: usize, kb: usize, with_bias: bool, threads: usize, seed: u64) {
        let (n, k) = (nb * BLOCK_N, kb * BLOCK_K);
        let x = values(m * k, seed);
        let w = values(n * k, seed + 1);
        let b = values(n, seed + 2);
        let bias = with_bias.then_some(b.as_slice());
        let mut packed = vec![Bf16::default(); n * k];
        pack(&w, n, k, &mut packed).unwrap();
        let want = reference(&x, m, k, &w, n, bias);
        let mut got32 = vec![0.0f32; m * n];
        linear(
            &x,
            m,
            k,
            &packed,
            n,
            bias,
            LinearOut::F32(&mut got32),
            threads,
        )
        .unwrap();
        let mut got16 = vec![Bf16::default(); m * n];
        linear(
            &x,
            m,
            k,
            &packed,
            n,
            bias,
            LinearOut::Bf16(&mut got16),
            threads,
        )
        .unwrap();
        for i in 0..m * n {
            // f32 sums in another order: a few ulps of the magnitude of the terms.
            let tol = 1e-5 * (k as f32).sqrt() + 1e-6;
            assert!(
                (got32[i] - want[i]).abs() <= tol,
                "f32 [{i}] {} vs {}",
                got32[i],
                want[i]
            );
            // The bf16 output is that f32 value rounded once (nearest even).
            assert_eq!(got16[i], Bf16::from_f32(got32[i]), "bf16 [{i}]");
        }
    }

    #[test]
    fn decode_and_prefill_shapes_match_the_reference() {
        if !available() {
            eprintln!("skipped: no AMX-BF16 on this machine");
            return;
        }
        for (m, nb, kb) in [
            (1, 1, 1),
            (16, 2, 3),
            (17, 3, 2),
            (32, 2, 18),
            (33, 1, 2),
            (100, 4, 5),
        ] {
            for threads in [1, 2, 3] {
                check(m, nb, kb, m % 2 == 1, threads, (m * 31 + nb) as u64);
            }
        }
        // Enough rows for two row groups (the x rows kept in cache) at k = 64.
        check(6200, 1, 2, true, 2, 7);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_rows_and_blocks_match(m in 1usize..80, nb in 1usize..5, kb in 1usize..6,
                                     bias in any::<bool>(), threads in 1usize..4, seed in any::<u64>()) {
            if available() {
                check(m, nb, kb, bias, threads, seed);
            }
        }
    }

    #[test]
    fn unsupported_shapes_and_sizes_are_errors() {
        let w = vec![Bf16::default(); 48 * 32];
        let mut p = w.clone();
        assert!(pack(&w, 48, 32, &mut p).is_err()); // n not a multiple of 32
        let w = vec![Bf16::default(); 32 * 32];
        let mut p = vec![Bf16::default(); 32 * 31];
        assert!(pack(&w, 32, 32, &mut p).is_err()); // packed too short
        let mut p = vec![Bf16::default(); 32 * 32];
        pack(&w, 32, 32, &mut p).unwrap();
        let x = vec![Bf16::default(); 2 * 32];
        let mut out = vec![0.0f32; 2 * 31];
        let err = linear(&x, 2, 32, &p, 32, None, LinearOut::F32(&mut out), 1);
        assert!(err.is_err()); // out too short
        let mut out = vec![0.0f32; 2 * 32];
        let b = vec![Bf16::default(); 31];
        assert!(linear(&x, 2, 32, &p, 32, Some(&b), LinearOut::F32(&mut out), 1).is_err());
        assert!(linear(&x, 2, 32, &p, 32, None, LinearOut::F32(&mut out), 0).is_err());
    }
}
