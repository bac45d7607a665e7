//! Python bindings of `sglrs_grammar`: `TokenizerInfo`, `Grammar`, `Matcher`, `fill_bitmasks`.
//!
//! Compilation and batched mask filling release the GIL. Bitmasks are numpy int32 arrays of
//! `ceil(vocab_size / 32)` words per row (bit `i` of word `w` = token `32 w + i`).

use crate::buffers::to_u32_vec;
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use sglrs_grammar::{
    Grammar, GrammarError, GrammarKind, JsonOptions, Matcher, Vocabulary, Whitespace,
};
use std::sync::Arc;

fn to_py(e: GrammarError) -> PyErr {
    match e {
        GrammarError::TooLarge(_) => PyRuntimeError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A tokenizer's vocabulary prepared for masking (build once per tokenizer, share).
#[pyclass(name = "TokenizerInfo", module = "sglrs._core", frozen)]
pub struct PyTokenizerInfo {
    inner: Arc<Vocabulary>,
}

fn eos_list(eos: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<u32>> {
    match eos {
        None => Ok(Vec::new()),
        Some(e) if e.is_none() => Ok(Vec::new()),
        Some(e) => match e.extract::<u32>() {
            Ok(one) => Ok(vec![one]),
            Err(_) => to_u32_vec(e, "eos_token_ids"),
        },
    }
}

#[pymethods]
impl PyTokenizerInfo {
    /// From a `tokenizer.json` path or its JSON text; `vocab_size` (the logit width) may
    /// exceed the tokenizer's ids.
    #[staticmethod]
    #[pyo3(signature = (path_or_str, eos_token_ids=None, vocab_size=None))]
    fn from_tokenizer_json(
        py: Python<'_>,
        path_or_str: &str,
        eos_token_ids: Option<&Bound<'_, PyAny>>,
        vocab_size: Option<usize>,
    ) -> PyResult<Self> {
        let eos = eos_list(eos_token_ids)?;
        let text = if path_or_str.trim_start().starts_with('{') {
            path_or_str.to_string()
        } else {
            std::fs::read_to_string(path_or_str).map_err(|e| {
                PyValueError::new_err(format!("cannot read tokenizer file {path_or_str:?}: {e}"))
            })?
        };
        let vocab = py
            .detach(|| Vocabulary::from_tokenizer_json(&text, &eos, vocab_size))
            .map_err(to_py)?;
        Ok(PyTokenizerInfo {
            inner: Arc::new(vocab),
        })
    }

    /// From a `transformers` fast tokenizer (or a `tokenizers.Tokenizer`); the EOS ids default
    /// to `tokenizer.eos_token_id`.
    #[staticmethod]
    #[pyo3(signature = (tokenizer, eos_token_ids=None, vocab_size=None))]
    fn from_huggingface(
        py: Python<'_>,
        tokenizer: &Bound<'_, PyAny>,
        eos_token_ids: Option<&Bound<'_, PyAny>>,
        vocab_size: Option<usize>,
    ) -> PyResult<Self> {
        let backend = if tokenizer.hasattr("backend_tokenizer")? {
            tokenizer.getattr("backend_tokenizer")?
        } else if tokenizer.hasattr("to_str")? {
            tokenizer.clone()
        } else {
            return Err(PyTypeError::new_err(
                "from_huggingface needs a fast tokenizer (with .backend_tokenizer) or a \
                 tokenizers.Tokenizer",
            ));
        };
        let text: String = backend.call_method0("to_str")?.extract()?;
        let eos = match eos_token_ids {
            Some(e) if !e.is_none() => eos_list(Some(e))?,
            _ => match tokenizer.getattr("eos_token_id") {
                Ok(e) => eos_list(Some(&e))?,
                Err(_) => Vec::new(),
            },
        };
        let vocab = py
            .detach(|| Vocabulary::from_tokenizer_json(&text, &eos, vocab_size))
            .map_err(to_py)?;
        Ok(PyTokenizerInfo {
            inner: Arc::new(vocab),
        })
    }

    /// Number of token ids (the logit width).
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// int32 words per bitmask row: `ceil(vocab_size / 32)`.
    #[getter]
    fn mask_words(&self) -> usize {
        self.inner.mask_words()
    }

    #[getter]
    fn eos_token_ids(&self) -> Vec<u32> {
        self.inner.eos_token_ids().to_vec()
    }

    /// The bytes token `id` stands for (empty for special, added, EOS and padding ids).
    fn token_bytes<'py>(&self, py: Python<'py>, id: u32) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.token_bytes(id))
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenizerInfo(vocab_size={}, eos_token_ids={:?})",
            self.inner.vocab_size(),
            self.inner.eos_token_ids()
        )
    }
}

/// A compiled grammar: immutable, thread-safe, shared by any number of matchers.
#[pyclass(name = "Grammar", module = "sglrs._core", frozen)]
pub struct PyGrammar {
    inner: Arc<Grammar>,
}

fn json_options(whitespace: &str, max_whitespace: u32, max_depth: u32) -> PyResult<JsonOptions> {
    let whitespace = match whitespace {
        "compact" => Whitespace::Compact,
        "flexible" => Whitespace::Flexible {
            max: max_whitespace,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "whitespace must be 'compact' or 'flexible', got {other:?}"
            )))
        }
    };
    Ok(JsonOptions {
        whitespace,
        max_depth,
    })
}

#[pymethods]
impl PyGrammar {
    /// An anchored regex: the whole output must match it.
    #[staticmethod]
    fn from_regex(
        py: Python<'_>,
        pattern: &str,
        info: &Bound<'_, PyTokenizerInfo>,
    ) -> PyResult<Self> {
        let vocab = info.get().inner.clone();
        let g = py
            .detach(|| Grammar::from_regex(pattern, vocab))
            .map_err(to_py)?;
        Ok(PyGrammar { inner: Arc::new(g) })
    }

    /// A JSON schema given as JSON text or a dict.
    #[staticmethod]
    #[pyo3(signature = (schema, info, whitespace="compact", max_whitespace=16, max_depth=3))]
    fn from_json_schema(
        py: Python<'_>,
        schema: &Bound<'_, PyAny>,
        info: &Bound<'_, PyTokenizerInfo>,
        whitespace: &str,
        max_whitespace: u32,
        max_depth: u32,
    ) -> PyResult<Self> {
        let text: String = if schema.is_instance_of::<PyString>() {
            schema.extract()?
        } else {
            let json = PyModule::import(py, "json")?;
            json.getattr("dumps")?.call1((schema,))?.extract()?
        };
        let options = json_options(whitespace, max_whitespace, max_depth)?;
        let vocab = info.get().inner.clone();
        let g = py
            .detach(|| Grammar::from_json_schema(&text, &options, vocab))
            .map_err(to_py)?;
        Ok(PyGrammar { inner: Arc::new(g) })
    }

    /// Any JSON value, containers nested at most `max_depth` deep.
    #[staticmethod]
    #[pyo3(signature = (info, whitespace="compact", max_whitespace=16, max_depth=3))]
    fn json_object(
        py: Python<'_>,
        info: &Bound<'_, PyTokenizerInfo>,
        whitespace: &str,
        max_whitespace: u32,
        max_depth: u32,
    ) -> PyResult<Self> {
        let options = json_options(whitespace, max_whitespace, max_depth)?;
        let vocab = info.get().inner.clone();
        let g = py
            .detach(|| Grammar::json_object(&options, vocab))
            .map_err(to_py)?;
        Ok(PyGrammar { inner: Arc::new(g) })
    }

    /// `"regex"`, `"json_schema"` or `"json_object"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.kind() {
            GrammarKind::Regex => "regex",
            GrammarKind::JsonSchema => "json_schema",
            GrammarKind::JsonObject => "json_object",
        }
    }

    /// The regex the grammar was compiled from (generated for JSON schemas).
    #[getter]
    fn regex(&self) -> &str {
        self.inner.regex()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab().vocab_size()
    }

    /// DFA states whose token mask has been computed (and cached) so far.
    #[getter]
    fn num_cached_states(&self) -> usize {
        self.inner.num_cached_states()
    }

    fn __repr__(&self) -> String {
        format!(
            "Grammar(kind={:?}, regex_len={})",
            self.kind(),
            self.inner.regex().len()
        )
    }
}

/// One request's position in a grammar.
#[pyclass(name = "Matcher", module = "sglrs._core")]
pub struct PyMatcher {
    inner: Matcher,
}

/// The mutable int32 row `index` of a 1-D or 2-D C-contiguous numpy array.
fn with_row<R>(
    bitmask: &Bound<'_, PyAny>,
    index: usize,
    f: impl FnOnce(&mut [i32]) -> PyResult<R>,
) -> PyResult<R> {
    let arr = bitmask.cast::<PyArrayDyn<i32>>().map_err(|_| {
        PyTypeError::new_err("bitmask: expected a numpy int32 array (1-D row or 2-D batch)")
    })?;
    let shape = arr.shape().to_vec();
    let mut rw = arr
        .try_readwrite()
        .map_err(|e| PyValueError::new_err(format!("bitmask: {e}")))?;
    let data = rw
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("bitmask: the array must be C-contiguous"))?;
    match shape.as_slice() {
        [_] if index == 0 => f(data),
        [rows, cols] if index < *rows => f(&mut data[index * cols..(index + 1) * cols]),
        _ => Err(PyValueError::new_err(format!(
            "bitmask: row {index} does not exist in an array of shape {shape:?}"
        ))),
    }
}

#[pymethods]
impl PyMatcher {
    #[new]
    fn new(grammar: &Bound<'_, PyGrammar>) -> Self {
        PyMatcher {
            inner: Matcher::new(grammar.get().inner.clone()),
        }
    }

    /// Write the allowed tokens into `bitmask` (a row, or row `index` of a 2-D batch).
    #[pyo3(signature = (bitmask, index=0))]
    fn fill_next_token_bitmask(
        &mut self,
        bitmask: &Bound<'_, PyAny>,
        index: usize,
    ) -> PyResult<()> {
        let inner = &mut self.inner;
        with_row(bitmask, index, |row| {
            inner.fill_next_token_bitmask(row).map_err(to_py)
        })
    }

    /// Advance by one token; False (and no change) if the grammar does not allow it.
    fn accept_token(&mut self, token_id: i64) -> PyResult<bool> {
        let Ok(id) = u32::try_from(token_id) else {
            return Ok(false);
        };
        self.inner.accept_token(id).map_err(to_py)
    }

    /// EOS was accepted, or the output is complete and nothing else can follow.
    fn is_terminated(&mut self) -> PyResult<bool> {
        self.inner.is_terminated().map_err(to_py)
    }

    /// The output so far is complete (EOS is allowed now).
    fn can_end(&mut self) -> PyResult<bool> {
        self.inner.can_end().map_err(to_py)
    }

    /// Undo the last `num_tokens` accepted tokens.
    #[pyo3(signature = (num_tokens=1))]
    fn rollback(&mut self, num_tokens: usize) -> PyResult<()> {
        self.inner.rollback(num_tokens).map_err(to_py)
    }

    /// Back to the grammar's start.
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// The bytes the grammar forces next (jump-forward decoding); the state does not change.
    fn forced_continuation<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.inner.forced_continuation().map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Tokens that `rollback` can undo.
    #[getter]
    fn num_accepted(&self) -> usize {
        self.inner.num_accepted()
    }
}

/// Fill row `i` of `out` (int32 `[len(matchers), words]` or more rows) from `matchers[i]` in
/// one call with the GIL released; `None` entries leave their row untouched.
#[pyfunction]
fn fill_bitmasks(
    py: Python<'_>,
    matchers: &Bound<'_, PyList>,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let arr = out
        .cast::<PyArrayDyn<i32>>()
        .map_err(|_| PyTypeError::new_err("out: expected a 2-D numpy int32 array"))?;
    let shape = arr.shape().to_vec();
    let [rows, cols] = shape[..] else {
        return Err(PyValueError::new_err(format!(
            "out: expected 2 dimensions, got {shape:?}"
        )));
    };
    if matchers.len() > rows {
        return Err(PyValueError::new_err(format!(
            "out has {rows} rows for {} matchers",
            matchers.len()
        )));
    }
    let mut guards = Vec::with_capacity(matchers.len());
    for item in matchers.iter() {
        if item.is_none() {
            guards.push(None);
            continue;
        }
        let m = item
            .cast::<PyMatcher>()
            .map_err(|_| PyTypeError::new_err("matchers: expected a list of Matcher (or None)"))?;
        let guard = m.try_borrow_mut().map_err(|_| {
            PyValueError::new_err("matchers: the same Matcher appears twice or is in use")
        })?;
        guards.push(Some(guard));
    }
    let mut rw = arr
        .try_readwrite()
        .map_err(|e| PyValueError::new_err(format!("out: {e}")))?;
    let data = rw
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("out: the array must be C-contiguous"))?;
    let mut work: Vec<(&mut Matcher, &mut [i32])> = Vec::with_capacity(guards.len());
    for (guard, row) in guards.iter_mut().zip(data.chunks_mut(cols.max(1))) {
        if let Some(g) = guard {
            work.push((&mut g.inner, row));
        }
    }
    py.detach(|| {
        for (m, row) in work {
            m.fill_next_token_bitmask(row)?;
        }
        Ok(())
    })
    .map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizerInfo>()?;
    m.add_class::<PyGrammar>()?;
    m.add_class::<PyMatcher>()?;
    m.add_function(wrap_pyfunction!(fill_bitmasks, m)?)?;
    Ok(())
}
