//! Python bindings of `sglrs_radix` (filled in by the radix work).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
