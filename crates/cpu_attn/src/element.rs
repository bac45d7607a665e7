//! The element types of q, K, V and the output: `f32`, [`Bf16`] and [`F16`], each converted to
//! `f32` for the arithmetic. The row conversions are plain loops over bit operations so that
//! LLVM vectorizes them (a bf16 is the top half of an f32; an f16 is rebased branch-free).

/// A brain-float value (the top 16 bits of an `f32`), as torch stores `bfloat16`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

/// An IEEE half-precision value, as torch stores `float16`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct F16(pub u16);

/// The storage formats, for the SIMD loads that convert them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementKind {
    F32,
    Bf16,
    F16,
}

/// A storage type the kernel reads and writes; arithmetic is always in `f32`.
pub trait Element: Copy + Send + Sync + 'static {
    const KIND: ElementKind;

    fn to_f32(self) -> f32;
    /// Round to nearest, ties to even (NaN stays NaN).
    fn from_f32(x: f32) -> Self;

    /// `dst[i] = src[i]` as `f32`.
    #[inline(always)]
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
}

impl Element for f32 {
    const KIND: ElementKind = ElementKind::F32;

    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }

    #[inline(always)]
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        // A plain copy (the generic loop compiles to scalar moves here).
        dst.copy_from_slice(src);
    }
}

impl Element for Bf16 {
    const KIND: ElementKind = ElementKind::Bf16;

    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.0) << 16)
    }

    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        // Both results, then a select (no early return): row loops over it vectorize.
        let bits = x.to_bits();
        let round = 0x7fff + ((bits >> 16) & 1);
        let rounded = (bits.wrapping_add(round) >> 16) as u16;
        let nan = 0x7fc0 | ((bits >> 16) as u16 & 0x8000);
        Bf16(if x.is_nan() { nan } else { rounded })
    }
}

impl Element for F16 {
    const KIND: ElementKind = ElementKind::F16;

    /// Exact; branch-free so that row conversions vectorize (subnormals through a float
    /// subtraction, infinities and NaN by a second exponent rebase).
    #[inline(always)]
    fn to_f32(self) -> f32 {
        const EXP_MASK: u32 = 0x7c00 << 13;
        let h = u32::from(self.0);
        let shifted = (h & 0x7fff) << 13;
        let exp = shifted & EXP_MASK;
        let normal = shifted + ((127 - 15) << 23);
        let inf_nan = normal + ((128 - 16) << 23);
        // A subnormal h: its mantissa as the mantissa of 2^-14 * (1 + m), minus 2^-14.
        let sub = (f32::from_bits(normal + (1 << 23)) - f32::from_bits(113 << 23)).to_bits();
        let magnitude = if exp == EXP_MASK {
            inf_nan
        } else if exp == 0 {
            sub
        } else {
            normal
        };
        f32::from_bits(magnitude | ((h & 0x8000) << 16))
    }

    fn from_f32(x: f32) -> Self {
        let bits = x.to_bits();
        let sign = ((bits >> 16) & 0x8000) as u16;
        let abs = bits & 0x7fff_ffff;
        if abs > 0x7f80_0000 {
            return F16(sign | 0x7e00);
        }
        if abs >= 0x477f_f000 {
            // 65520 and above round to infinity.
            return F16(sign | 0x7c00);
        }
        if abs < 0x3880_0000 {
            // Below 2^-14: a subnormal (or zero), whose mantissa counts units of 2^-24. The
            // product is exact; 1024 units encode the smallest normal, as they should.
            let units = (f32::from_bits(abs) * 16_777_216.0).round_ties_even();
            return F16(sign | units as u16);
        }
        let exp = (abs >> 23) + 15 - 127;
        let mant = abs & 0x7f_ffff;
        let mut h = (exp << 10) | (mant >> 13);
        let rest = mant & 0x1fff;
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
            h += 1; // a carry into the exponent is the right result
        }
        F16(sign | h as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f16 bits to f64 by the definition.
    fn f16_reference(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let mant = f64::from(h & 0x3ff);
        match exp {
            0 => sign * mant * 2f64.powi(-24),
            31 if mant == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    #[test]
    fn f16_to_f32_is_exact_for_every_value() {
        for h in 0..=u16::MAX {
            let want = f16_reference(h);
            let got = F16(h).to_f32();
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(f64::from(got), want, "{h:#06x}");
            }
        }
    }

    #[test]
    fn f16_from_f32_round_trips_and_ties_to_even() {
        for h in 0..=u16::MAX {
            let x = F16(h).to_f32();
            if x.is_nan() {
                assert!(F16::from_f32(x).to_f32().is_nan());
                continue;
            }
            assert_eq!(F16::from_f32(x), F16(h), "{h:#06x}");
            // The midpoint to the next value away from zero (exact in f32) goes to the even one.
            let next = h.wrapping_add(1);
            if h & 0x7fff < 0x7c00 && next & 0x7fff <= 0x7c00 {
                let mid = ((f64::from(x) + f16_reference(next)) / 2.0) as f32;
                let even = if h & 1 == 0 { h } else { next };
                assert_eq!(F16::from_f32(mid), F16(even), "midpoint above {h:#06x}");
            }
        }
        assert_eq!(F16::from_f32(65519.0), F16(0x7bff));
        assert_eq!(F16::from_f32(-1e6), F16(0xfc00));
        assert_eq!(F16::from_f32(1e-9), F16(0));
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(Bf16::from_f32(1.0), Bf16(0x3f80));
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.0.
        assert_eq!(Bf16::from_f32(1.0 + 2f32.powi(-8)), Bf16(0x3f80));
        assert_eq!(Bf16::from_f32(1.0 + 3.0 * 2f32.powi(-8)), Bf16(0x3f82));
        assert_eq!(Bf16::from_f32(f32::INFINITY), Bf16(0x7f80));
        assert!(Bf16::from_f32(f32::NAN).to_f32().is_nan());
        for bits in [0u16, 0x8000, 0x0001, 0x7f7f, 0xc2f7, 0x3c00] {
            assert_eq!(Bf16::from_f32(Bf16(bits).to_f32()), Bf16(bits));
        }
    }
}
