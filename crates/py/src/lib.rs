//! `sglrs._core`: the one Python extension module binding the sglrs crates.
//!
//! Each concept has its own file with a `register` function; Python re-exports
//! the classes from `sglrs` (radix), `sglrs.grammar` and `sglrs.sched`.

use pyo3::prelude::*;

mod buffers;
mod cpu_attn;
mod grammar;
mod radix;
mod sched;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    radix::register(m)?;
    grammar::register(m)?;
    sched::register(m)?;
    cpu_attn::register(m)?;
    Ok(())
}
