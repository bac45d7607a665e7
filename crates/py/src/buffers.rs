//! Integer buffers in and out of Python without per-element Python work.
//!
//! Inputs may be numpy arrays of any integer dtype, `array.array`, typed
//! memoryviews, bytes-like objects (one id per byte) or lists; anything that is
//! not already a numpy integer array goes through `numpy.asarray` once. Values
//! must fit `u32` (token ids, slot ids); a negative or too large value is a
//! `ValueError` naming the argument.

use std::mem::ManuallyDrop;
use std::sync::{Arc, LazyLock, Mutex};

use numpy::ndarray::ArrayView1;
use numpy::{
    Element, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyAnyMethods, PyByteArray, PyBytes};
use sglrs_radix::IdElem;

/// Copy an integer buffer into a `Vec<u32>`, checking the range of every value.
pub fn to_u32_vec(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u32>> {
    let mut out = Vec::new();
    extend_u32(obj, what, &mut out)?;
    Ok(out)
}

/// Append an integer buffer to `out` (reusing its allocation).
pub fn extend_u32(obj: &Bound<'_, PyAny>, what: &str, out: &mut Vec<u32>) -> PyResult<()> {
    let owned;
    let arr: &Bound<'_, PyUntypedArray> = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a,
        Err(_) => {
            let np = PyModule::import(obj.py(), "numpy")?;
            let converted = np.getattr("asarray")?.call1((obj,)).map_err(|e| {
                PyTypeError::new_err(format!("{what}: expected an integer buffer or list ({e})"))
            })?;
            owned = converted.cast_into::<PyUntypedArray>().map_err(|_| {
                PyTypeError::new_err(format!("{what}: expected an integer buffer or list"))
            })?;
            &owned
        }
    };
    if arr.ndim() != 1 && !(arr.ndim() == 0 || arr.len() == 0) {
        return Err(PyValueError::new_err(format!(
            "{what}: expected a 1-D buffer, got {} dimensions",
            arr.ndim()
        )));
    }
    if arr.len() == 0 {
        return Ok(());
    }
    // The dtypes ids usually come in: contiguous arrays are converted and checked by vector
    // code (a per-value checked push ran at ~1 ns per id, 30 µs for a 32k-token prompt).
    macro_rules! convert_as {
        ($t:ty) => {
            if let Ok(a) = arr.cast::<PyArray1<$t>>() {
                let ro = a.readonly();
                return match ro.as_slice() {
                    Ok(s) => <$t as IdElem>::extend_u32(s, out)
                        .map_err(|i| out_of_range(what, i, s[i].value())),
                    Err(_) => push_checked(ro.as_array().iter().copied(), what, out),
                };
            }
        };
    }
    macro_rules! copy_as {
        ($t:ty) => {
            if let Ok(a) = arr.cast::<PyArray1<$t>>() {
                let ro = a.readonly();
                return match ro.as_slice() {
                    Ok(s) => push_checked(s.iter().copied(), what, out),
                    Err(_) => push_checked(ro.as_array().iter().copied(), what, out),
                };
            }
        };
    }
    convert_as!(i32);
    convert_as!(i64);
    convert_as!(u32);
    convert_as!(u16);
    copy_as!(u64);
    copy_as!(i16);
    copy_as!(i8);
    copy_as!(u8);
    // Integers in the other byte order: swapped to native once, then read as above.
    let dtype = arr.dtype();
    if matches!(dtype.kind(), b'i' | b'u') && !dtype.is_native_byteorder().unwrap_or(true) {
        let native = dtype.call_method1("newbyteorder", ("=",))?;
        let swapped = arr.call_method1("astype", (native,))?;
        return extend_u32(&swapped, what, out);
    }
    Err(PyTypeError::new_err(format!(
        "{what}: expected integers, got dtype {dtype}"
    )))
}

fn push_checked<T>(values: impl Iterator<Item = T>, what: &str, out: &mut Vec<u32>) -> PyResult<()>
where
    T: TryInto<u32> + Copy + std::fmt::Display,
{
    for v in values {
        match v.try_into() {
            Ok(x) => out.push(x),
            Err(_) => {
                return Err(PyValueError::new_err(format!(
                    "{what}: value {v} is out of range (ids must be in 0..2^32)"
                )))
            }
        }
    }
    Ok(())
}

/// Vectors at most this long are copied into a numpy-owned array: cheaper than handing the
/// `Vec` over, which costs a second Python object (the owner of the Rust allocation).
pub const COPY_OUT_MAX: usize = 2048;

/// A numpy array with the contents of `v`: copied when short, else taking over its allocation.
pub fn vec_to_numpy<T: Element>(py: Python<'_>, v: Vec<T>) -> Bound<'_, PyArray1<T>> {
    if v.len() <= COPY_OUT_MAX {
        PyArray1::from_slice(py, &v)
    } else {
        PyArray1::from_vec(py, v)
    }
}

/// Like [`vec_to_numpy`] for a buffer the caller reuses: a short `v` is copied and kept (its
/// allocation serves the next call), a long one is handed over and `v` left empty.
pub fn take_to_numpy<'py, T: Element>(py: Python<'py>, v: &mut Vec<T>) -> Bound<'py, PyArray1<T>> {
    if v.len() <= COPY_OUT_MAX {
        PyArray1::from_slice(py, v)
    } else {
        PyArray1::from_vec(py, std::mem::take(v))
    }
}

/// Large 32-bit buffers kept for reuse: a numpy array made by [`pooled_to_numpy`] gives its
/// buffer back here when Python frees it, and the next call writes into it; scratch buffers
/// (ids converted from Python) come from here too. Memory that was written before does not
/// page-fault again (glibc maps blocks above 128 KiB fresh from the OS and trims its heap top:
/// a fresh 512 KiB buffer costs ~128 faults, ~1 µs each), and nothing is allocated while the
/// previous step's arrays are still alive.
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<i32>>>,
}

impl BufferPool {
    /// Buffers kept at most (a plan has four or five large arrays; two plans may be alive).
    const KEEP: usize = 16;

    /// An empty buffer: a recycled one (with its capacity) if any.
    pub fn take(&self) -> Vec<i32> {
        self.free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_default()
    }

    /// An empty `u32` buffer (see [`BufferPool::take`]).
    pub fn take_u32(&self) -> Vec<u32> {
        cast_vec(self.take())
    }

    /// Keeps `v`'s allocation for a later [`BufferPool::take_u32`].
    pub fn give_back_u32(&self, v: Vec<u32>) {
        self.put(cast_vec(v));
    }

    fn put(&self, mut v: Vec<i32>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < Self::KEEP {
                v.clear();
                free.push(v);
            }
        }
    }
}

/// The process-wide pool: one engine per process in practice, and a new cache or scheduler then
/// starts with warm buffers.
pub static POOL: LazyLock<Arc<BufferPool>> = LazyLock::new(Arc::default);

/// A `Vec<u32>` as a `Vec<i32>` or back, keeping the allocation.
pub fn cast_vec<A: Reinterpret<B>, B>(v: Vec<A>) -> Vec<B> {
    let mut v = ManuallyDrop::new(v);
    // SAFETY: `A` and `B` have the same size and alignment and every bit pattern of one is a
    // valid value of the other (the `Reinterpret` impls below), so the allocation's layout and
    // contents are valid for `B`.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<B>(), v.len(), v.capacity()) }
}

/// Marks the pairs of 32-bit integer types [`cast_vec`] may convert between.
pub trait Reinterpret<B> {}
impl Reinterpret<u32> for i32 {}
impl Reinterpret<i32> for u32 {}

/// Owner of a pooled buffer while a numpy array views it; returns it to the pool when freed.
#[pyclass(frozen, module = "sglrs._core", name = "_PooledBuffer")]
struct PooledBuffer {
    buf: Vec<i32>,
    pool: Arc<BufferPool>,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

/// Like [`take_to_numpy`], with a long `v` handed to numpy through `pool` (see [`BufferPool`]).
pub fn pooled_to_numpy<'py>(
    py: Python<'py>,
    v: &mut Vec<i32>,
    pool: &Arc<BufferPool>,
) -> PyResult<Bound<'py, PyArray1<i32>>> {
    if v.len() <= COPY_OUT_MAX {
        return Ok(PyArray1::from_slice(py, v));
    }
    let owner = Bound::new(
        py,
        PooledBuffer {
            buf: std::mem::take(v),
            pool: Arc::clone(pool),
        },
    )?;
    let view = ArrayView1::from(owner.get().buf.as_slice());
    // SAFETY: `owner` becomes the array's base object, so it outlives the array, and its
    // buffer is never modified or reallocated while it lives (the pyclass is frozen).
    Ok(unsafe { PyArray1::borrow_from_array(&view, owner.clone().into_any()) })
}

/// Integer ids from Python: read in place from a contiguous 1-D int64/int32/uint32/uint16 numpy
/// array (no copy, no conversion pass; [`sglrs_radix::IdElem`] validates while reading), else
/// converted once to `u32`. uint16 is what a vocabulary below 65,536 fits: a long match then
/// reads half the query bytes of int32. Use through [`with_ids!`].
pub enum IdsArg<'a> {
    I64(&'a [i64]),
    I32(&'a [i32]),
    U32(&'a [u32]),
    U16(&'a [u16]),
    Owned(Vec<u32>),
}

impl<'a> IdsArg<'a> {
    /// The ids of `obj`; anything but a contiguous int64/int32/uint32/uint16 array is converted
    /// (bytes-like objects give one id per byte, the rest goes through [`extend_u32`]), into a
    /// buffer from [`POOL`].
    ///
    /// # Safety
    /// A borrowed variant views the array's memory: while it lives, no Python code may run and
    /// the GIL must stay held, so that nothing mutates or frees the array meanwhile.
    pub unsafe fn extract(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        // SAFETY (the four `as_slice`): the caller keeps the array alive and unmodified.
        // A dtype test costs ~25 ns: the item size (a field) picks the one or two to run.
        if let Ok(arr) = obj.cast::<PyUntypedArray>() {
            match arr.dtype().itemsize() {
                4 => {
                    if let Ok(a) = obj.cast::<PyArray1<i32>>() {
                        if let Ok(s) = unsafe { a.as_slice() } {
                            return Ok(Self::I32(s));
                        }
                    } else if let Ok(a) = obj.cast::<PyArray1<u32>>() {
                        if let Ok(s) = unsafe { a.as_slice() } {
                            return Ok(Self::U32(s));
                        }
                    }
                }
                8 => {
                    if let Ok(a) = obj.cast::<PyArray1<i64>>() {
                        if let Ok(s) = unsafe { a.as_slice() } {
                            return Ok(Self::I64(s));
                        }
                    }
                }
                2 => {
                    if let Ok(a) = obj.cast::<PyArray1<u16>>() {
                        if let Ok(s) = unsafe { a.as_slice() } {
                            return Ok(Self::U16(s));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out = POOL.take_u32();
        // One id per byte (numpy.asarray would make a bytes object one string scalar).
        if let Ok(b) = obj.cast::<PyBytes>() {
            out.extend(b.as_bytes().iter().map(|&x| u32::from(x)));
        } else if let Ok(b) = obj.cast::<PyByteArray>() {
            out.extend(b.to_vec().into_iter().map(u32::from));
        } else {
            extend_u32(obj, what, &mut out)?;
        }
        Ok(Self::Owned(out))
    }

    pub fn len(&self) -> usize {
        match self {
            Self::I64(s) => s.len(),
            Self::I32(s) => s.len(),
            Self::U32(s) => s.len(),
            Self::U16(s) => s.len(),
            Self::Owned(v) => v.len(),
        }
    }

    /// Whether the ids view Python memory (then the GIL must stay held while they are used).
    pub fn is_borrowed(&self) -> bool {
        !matches!(self, Self::Owned(_))
    }

    /// The ids as an owned `u32` vector (from [`POOL`]); a value outside `0..2^32` is a
    /// `ValueError` naming `what`.
    pub fn into_vec(self, what: &str) -> PyResult<Vec<u32>> {
        fn conv<E: IdElem>(s: &[E], what: &str) -> PyResult<Vec<u32>> {
            let mut out = POOL.take_u32();
            E::extend_u32(s, &mut out).map_err(|i| out_of_range(what, i, s[i].value()))?;
            Ok(out)
        }
        match self {
            Self::I64(s) => conv(s, what),
            Self::I32(s) => conv(s, what),
            Self::U32(s) => conv(s, what),
            Self::U16(s) => conv(s, what),
            Self::Owned(v) => Ok(v),
        }
    }

    /// Returns an owned buffer to [`POOL`].
    pub fn recycle(self) {
        if let Self::Owned(v) = self {
            POOL.give_back_u32(v);
        }
    }
}

/// The `ValueError` for an id outside `0..2^32` at `position` of argument `what`.
pub fn out_of_range(what: &str, position: usize, value: i64) -> PyErr {
    PyValueError::new_err(format!(
        "{what}: value {value} at position {position} is out of range (ids must be in 0..2^32)"
    ))
}

/// Runs `$body` with `$s` bound to the ids of an [`IdsArg`] as a slice of their own type, so
/// that generic code reading [`sglrs_radix::IdElem`] slices is instantiated per type.
macro_rules! with_ids {
    ($ids:expr, $s:ident => $body:expr) => {
        match &$ids {
            $crate::buffers::IdsArg::I64(s) => {
                let $s: &[i64] = s;
                $body
            }
            $crate::buffers::IdsArg::I32(s) => {
                let $s: &[i32] = s;
                $body
            }
            $crate::buffers::IdsArg::U32(s) => {
                let $s: &[u32] = s;
                $body
            }
            $crate::buffers::IdsArg::U16(s) => {
                let $s: &[u16] = s;
                $body
            }
            $crate::buffers::IdsArg::Owned(v) => {
                let $s: &[u32] = v;
                $body
            }
        }
    };
}
pub(crate) use with_ids;

/// Makes `array` read-only (numpy's `PyArray_CLEARFLAGS(array, NPY_ARRAY_WRITEABLE)`), for
/// results that view storage the caller must not modify.
pub fn set_read_only<T: Element>(array: &Bound<'_, PyArray1<T>>) {
    // SAFETY: `as_array_ptr` points to a live array object; clearing a flag bit is what
    // numpy's own macro does.
    unsafe { (*array.as_array_ptr()).fields.flags &= !numpy::npyffi::flags::NPY_ARRAY_WRITEABLE };
}
