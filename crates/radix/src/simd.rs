//! Run-time selection of AVX-512 and AVX2 code: the abi3 wheel targets baseline x86-64, and
//! the long compare/copy/check loops run up to twice as fast with wider vectors.

/// Runs `$body` (an `#[inline(always)]` function) compiled for AVX2 when the CPU has it, else
/// for the baseline target (the abi3 wheel targets any x86-64).
macro_rules! dispatch {
    ($body:ident, $avx2:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                return unsafe { $avx2($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}
pub(crate) use dispatch;

/// Returns `crate::avx512::$f(args)` from the enclosing function when the CPU has AVX-512
/// (detected once); otherwise falls through to the code after it.
macro_rules! avx512_first {
    ($f:ident($($arg:expr),*)) => {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::avx512::available() {
                // SAFETY: the CPU has AVX-512.
                return unsafe { crate::avx512::$f($($arg),*) };
            }
        }
    };
}
pub(crate) use avx512_first;
