//! Picks the compiled variant of the kernel once per call: AVX2 + FMA on x86-64 CPUs that have
//! them (detected at run time, so the same binary runs on any x86-64), the portable build
//! otherwise; each with the common head sizes specialised. bf16 K/V on CPUs with AVX-512 BF16
//! take `x86_bf16` (BF16 dot products, 16-lane reductions) for head sizes that are multiples
//! of 32: the AVX2 item is bound by its arithmetic there.

use crate::element::Element;
use crate::kernel::{attend, Scratch};
use crate::math::MulAdd;
use crate::{DecodeError, PagedDecode};

/// A compiled variant of the per-item kernel.
pub(crate) type ItemFn<T> =
    fn(&PagedDecode<'_, T>, usize, &mut [T], &mut Scratch) -> Result<(), DecodeError>;

/// The portable build's multiply-add: aarch64 always has FMA; baseline x86-64 does not.
#[cfg(target_arch = "aarch64")]
pub(crate) type PortableMulAdd = crate::math::Fused;
#[cfg(not(target_arch = "aarch64"))]
pub(crate) type PortableMulAdd = crate::math::Separate;

#[inline(always)]
fn by_head_dim<T: Element, M: MulAdd>(
    p: &PagedDecode<'_, T>,
    item: usize,
    out: &mut [T],
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    match p.shape.head_dim {
        64 => attend::<T, M, 64>(p, item, out, s),
        128 => attend::<T, M, 128>(p, item, out, s),
        _ => attend::<T, M, 0>(p, item, out, s),
    }
}

pub(crate) fn portable<T: Element>(
    p: &PagedDecode<'_, T>,
    item: usize,
    out: &mut [T],
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    by_head_dim::<T, PortableMulAdd>(p, item, out, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_fma<T: Element>(
    p: &PagedDecode<'_, T>,
    item: usize,
    out: &mut [T],
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    by_head_dim::<T, crate::x86::Avx2Fma>(p, item, out, s)
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma_checked<T: Element>(
    p: &PagedDecode<'_, T>,
    item: usize,
    out: &mut [T],
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    // SAFETY: `available` returns this function only after detecting AVX2, FMA and F16C.
    unsafe { avx2_fma(p, item, out, s) }
}

#[cfg(target_arch = "x86_64")]
fn avx512_bf16_checked<T: Element>(
    p: &PagedDecode<'_, T>,
    item: usize,
    out: &mut [T],
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    if !crate::x86_bf16::supports(p.shape.head_dim) {
        return avx2_fma_checked(p, item, out, s);
    }
    // SAFETY: `available` returns this function only for `T = Bf16` (its only `KIND::Bf16`
    // element type), after detecting AVX-512 F/BW/BF16 (and AVX2, FMA, F16C).
    unsafe {
        let p = &*(p as *const PagedDecode<'_, T>).cast::<PagedDecode<'_, crate::Bf16>>();
        let out = std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len());
        crate::x86_bf16::attend(p, item, out, s)
    }
}

/// Every variant this CPU runs, fastest first.
pub(crate) fn available<T: Element>() -> Vec<ItemFn<T>> {
    let mut v: Vec<ItemFn<T>> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        if T::KIND == crate::ElementKind::Bf16
            && avx2
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512bf16")
        {
            v.push(avx512_bf16_checked::<T>);
        }
        if avx2 {
            v.push(avx2_fma_checked::<T>);
        }
    }
    v.push(portable::<T>);
    v
}

/// The fastest variant this CPU runs.
pub(crate) fn select<T: Element>() -> ItemFn<T> {
    available::<T>()[0]
}
