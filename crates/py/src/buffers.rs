//! Integer buffers in and out of Python without per-element Python work.
//!
//! Inputs may be numpy arrays of any integer dtype, `array.array`, typed
//! memoryviews, bytes-like objects (one id per byte) or lists; anything that is
//! not already a numpy integer array goes through `numpy.asarray` once. Values
//! must fit `u32` (token ids, slot ids); a negative or too large value is a
//! `ValueError` naming the argument.

use numpy::{PyArray1, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyAnyMethods;

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
    copy_as!(i64);
    copy_as!(i32);
    copy_as!(u32);
    copy_as!(u64);
    copy_as!(i16);
    copy_as!(u16);
    copy_as!(i8);
    copy_as!(u8);
    Err(PyTypeError::new_err(format!(
        "{what}: expected integers, got dtype {}",
        arr.dtype()
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
