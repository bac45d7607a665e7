//! Python bindings of `sglrs_sched`: `Scheduler` and its per-step `StepPlan`.
//!
//! One crossing per step each way: `schedule()` returns a `StepPlan` whose arrays are numpy
//! arrays owning the Rust vectors (no copy); `update(token_ids, finished_mask)` takes one buffer
//! of sampled tokens and returns the finished requests as three numpy arrays;
//! `schedule_ahead()` plans the next step before the update of the one in flight. The Rust
//! work runs with the GIL released.

use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods, PyUntypedArray};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use sglrs_sched::{
    FinishedBatch, RequestOptions, SchedError, SchedStats, SchedulePolicy, Scheduler,
    SchedulerConfig, StepPlan,
};

use crate::buffers::{self, BufferPool, POOL};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyScheduler>()?;
    m.add_class::<PyStepPlan>()?;
    Ok(())
}

fn to_py_err(e: SchedError) -> PyErr {
    match e {
        SchedError::InvalidConfig(_)
        | SchedError::DuplicateId(_)
        | SchedError::EmptyPrompt(_)
        | SchedError::InvalidRequest(_)
        | SchedError::SampleCountMismatch { .. } => PyValueError::new_err(e.to_string()),
        SchedError::StepInFlight
        | SchedError::NoStepInFlight
        | SchedError::Radix(_)
        | SchedError::Integrity(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// A non-negative Python integer (ValueError naming `what` otherwise).
fn non_negative(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(v);
    }
    match obj.extract::<i64>() {
        Ok(v) => Err(PyValueError::new_err(format!(
            "{what} must be >= 0, got {v}"
        ))),
        Err(_) => Err(PyTypeError::new_err(format!("{what} must be an integer"))),
    }
}

fn usize_field(v: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    Ok(non_negative(v, name)? as usize)
}

fn set_field(cfg: &mut SchedulerConfig, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
    match name {
        "capacity_tokens" => cfg.capacity_tokens = usize_field(v, name)?,
        "page_size" => cfg.page_size = usize_field(v, name)?,
        "max_running_requests" => cfg.max_running_requests = usize_field(v, name)?,
        "max_prefill_tokens" => cfg.max_prefill_tokens = usize_field(v, name)?,
        "chunked_prefill_size" => {
            cfg.chunked_prefill_size = if v.is_none() {
                None
            } else {
                let c: i64 = v.extract().map_err(|_| {
                    PyTypeError::new_err("chunked_prefill_size must be an integer or None")
                })?;
                (c > 0).then_some(c as usize)
            }
        }
        "schedule_policy" => {
            let s: String = v
                .extract()
                .map_err(|_| PyTypeError::new_err("schedule_policy must be a string"))?;
            cfg.schedule_policy = s.parse::<SchedulePolicy>().map_err(to_py_err)?;
        }
        "schedule_conservativeness" => cfg.schedule_conservativeness = v.extract()?,
        "context_length" => cfg.context_length = usize_field(v, name)?,
        "enable_mixed_chunk" => cfg.enable_mixed_chunk = v.extract()?,
        "disable_radix_cache" => cfg.disable_radix_cache = v.extract()?,
        "emit_kv_indices" => cfg.emit_kv_indices = v.extract()?,
        "init_new_token_ratio" => cfg.init_new_token_ratio = v.extract()?,
        "min_new_token_ratio_factor" => cfg.min_new_token_ratio_factor = v.extract()?,
        "new_token_ratio_decay_steps" => {
            cfg.new_token_ratio_decay_steps = u32::try_from(non_negative(v, name)?)
                .map_err(|_| PyValueError::new_err(format!("{name} is too large")))?
        }
        "clip_max_new_tokens" => cfg.clip_max_new_tokens = usize_field(v, name)?,
        "retract_decode_steps" => cfg.retract_decode_steps = usize_field(v, name)?,
        "lpm_fallback_queue_len" => cfg.lpm_fallback_queue_len = usize_field(v, name)?,
        "starvation_steps" => cfg.starvation_steps = non_negative(v, name)?,
        "starvation_overtakes" => {
            cfg.starvation_overtakes = u32::try_from(non_negative(v, name)?).unwrap_or(u32::MAX)
        }
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown scheduler config field {name:?}"
            )))
        }
    }
    Ok(())
}

fn config_dict<'py>(py: Python<'py>, c: &SchedulerConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("capacity_tokens", c.capacity_tokens)?;
    d.set_item("page_size", c.page_size)?;
    d.set_item("max_running_requests", c.max_running_requests)?;
    d.set_item("max_prefill_tokens", c.max_prefill_tokens)?;
    d.set_item(
        "chunked_prefill_size",
        c.chunked_prefill_size.map_or(-1, |v| v as i64),
    )?;
    d.set_item("schedule_policy", c.schedule_policy.as_str())?;
    d.set_item("schedule_conservativeness", c.schedule_conservativeness)?;
    d.set_item("context_length", c.context_length)?;
    d.set_item("enable_mixed_chunk", c.enable_mixed_chunk)?;
    d.set_item("disable_radix_cache", c.disable_radix_cache)?;
    d.set_item("emit_kv_indices", c.emit_kv_indices)?;
    d.set_item("init_new_token_ratio", c.init_new_token_ratio)?;
    d.set_item("min_new_token_ratio_factor", c.min_new_token_ratio_factor)?;
    d.set_item("new_token_ratio_decay_steps", c.new_token_ratio_decay_steps)?;
    d.set_item("clip_max_new_tokens", c.clip_max_new_tokens)?;
    d.set_item("retract_decode_steps", c.retract_decode_steps)?;
    d.set_item("lpm_fallback_queue_len", c.lpm_fallback_queue_len)?;
    d.set_item("starvation_steps", c.starvation_steps)?;
    d.set_item("starvation_overtakes", c.starvation_overtakes)?;
    Ok(d)
}

fn stats_dict<'py>(py: Python<'py>, s: &SchedStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("running", s.running)?;
    d.set_item("waiting", s.waiting)?;
    d.set_item("prefilling", s.prefilling)?;
    d.set_item("capacity_tokens", s.capacity_tokens)?;
    d.set_item("free_tokens", s.free_tokens)?;
    d.set_item("cached_tokens", s.cached_tokens)?;
    d.set_item("evictable_tokens", s.evictable_tokens)?;
    d.set_item("held_tokens", s.held_tokens)?;
    d.set_item("used_tokens", s.used_tokens)?;
    d.set_item("token_usage", s.token_usage)?;
    d.set_item("hit_tokens", s.hit_tokens)?;
    d.set_item("queried_tokens", s.queried_tokens)?;
    d.set_item("cache_hit_rate", s.cache_hit_rate)?;
    d.set_item("num_retractions", s.num_retractions)?;
    d.set_item("num_finished", s.num_finished)?;
    d.set_item("num_aborted", s.num_aborted)?;
    d.set_item("num_steps", s.num_steps)?;
    d.set_item("new_token_ratio", s.new_token_ratio)?;
    Ok(d)
}

/// Appends a boolean buffer (numpy bool array, or anything `numpy.asarray(x, bool)` accepts).
fn extend_bool(obj: &Bound<'_, PyAny>, what: &str, out: &mut Vec<bool>) -> PyResult<()> {
    let owned;
    let arr = match obj.cast::<PyArray1<bool>>() {
        Ok(a) => a,
        Err(_) => {
            let np = PyModule::import(obj.py(), "numpy")?;
            let converted = np
                .getattr("asarray")?
                .call1((obj, np.getattr("bool_")?))
                .map_err(|e| PyTypeError::new_err(format!("{what}: expected booleans ({e})")))?;
            if converted
                .cast::<PyUntypedArray>()
                .is_ok_and(|a| numpy::PyUntypedArrayMethods::ndim(a) != 1)
            {
                return Err(PyValueError::new_err(format!(
                    "{what}: expected a 1-D buffer"
                )));
            }
            owned = converted
                .cast_into::<PyArray1<bool>>()
                .map_err(|_| PyTypeError::new_err(format!("{what}: expected a 1-D bool buffer")))?;
            &owned
        }
    };
    let ro = arr.readonly();
    match ro.as_slice() {
        Ok(s) => out.extend_from_slice(s),
        Err(_) => out.extend(ro.as_array().iter().copied()),
    }
    Ok(())
}

/// One scheduling step, as numpy arrays (see `docs/design.md`, "StepPlan"). int32 unless
/// noted; `req_ids` and the `*_ids` lists are uint64, `sample_mask` is bool. `kv_indptr` and
/// `kv_indices` are None unless the scheduler was built with `emit_kv_indices=True`.
/// Arrays with equal contents are one array: `table_slots` is `out_cache_loc` when every table
/// write is exactly the new tokens' slots (decode steps, prefill without a cached prefix), and
/// `table_rows` / `table_starts` / `table_indptr` are `req_pool_indices` / `prefix_lens` /
/// `qo_indptr` when equal. Treat the plan's arrays as read-only.
#[pyclass(frozen, module = "sglrs._core", name = "StepPlan")]
pub struct PyStepPlan {
    #[pyo3(get)]
    kind: Py<PyString>,
    #[pyo3(get)]
    req_ids: Py<PyArray1<u64>>,
    #[pyo3(get)]
    req_pool_indices: Py<PyArray1<i32>>,
    #[pyo3(get)]
    prefix_lens: Py<PyArray1<i32>>,
    #[pyo3(get)]
    extend_lens: Py<PyArray1<i32>>,
    #[pyo3(get)]
    seq_lens: Py<PyArray1<i32>>,
    #[pyo3(get)]
    qo_indptr: Py<PyArray1<i32>>,
    #[pyo3(get)]
    input_ids: Py<PyArray1<i32>>,
    #[pyo3(get)]
    positions: Py<PyArray1<i32>>,
    #[pyo3(get)]
    out_cache_loc: Py<PyArray1<i32>>,
    #[pyo3(get)]
    table_rows: Py<PyArray1<i32>>,
    #[pyo3(get)]
    table_starts: Py<PyArray1<i32>>,
    #[pyo3(get)]
    table_indptr: Py<PyArray1<i32>>,
    #[pyo3(get)]
    table_slots: Py<PyArray1<i32>>,
    #[pyo3(get)]
    sample_mask: Py<PyArray1<bool>>,
    #[pyo3(get)]
    finished_ids: Py<PyArray1<u64>>,
    #[pyo3(get)]
    aborted_ids: Py<PyArray1<u64>>,
    #[pyo3(get)]
    retracted_ids: Py<PyArray1<u64>>,
    #[pyo3(get)]
    kv_indptr: Option<Py<PyArray1<i32>>>,
    #[pyo3(get)]
    kv_indices: Option<Py<PyArray1<i32>>>,
    #[pyo3(get)]
    batch_size: usize,
    #[pyo3(get)]
    num_tokens: usize,
    #[pyo3(get)]
    num_sampled: usize,
    /// Negative entries of `input_ids` (a plan from `schedule_ahead`): `-(j + 1)` stands for
    /// token `j` of the `token_ids` the previous plan's `update` receives.
    #[pyo3(get)]
    num_placeholders: usize,
}

impl PyStepPlan {
    /// The plan's arrays as numpy arrays: short ones copied (`p` keeps their buffers for the
    /// next step), long ones handed over without a copy. A table-write array equal to a
    /// per-request one (rows, starts, indptr) or to `out_cache_loc` (slots) is that same array.
    fn from_plan(
        py: Python<'_>,
        p: &mut StepPlan,
        emit_kv: bool,
        pool: &Arc<BufferPool>,
    ) -> PyResult<Self> {
        fn arr<T: numpy::Element>(py: Python<'_>, v: &mut Vec<T>) -> Py<PyArray1<T>> {
            buffers::take_to_numpy(py, v).unbind()
        }
        // `same` as an array, and `v` as another unless equal (None: reuse the first). Compared
        // before converting, which may take the vectors.
        fn arr_or(
            py: Python<'_>,
            v: &mut Vec<i32>,
            same: &mut Vec<i32>,
        ) -> (Py<PyArray1<i32>>, Option<Py<PyArray1<i32>>>) {
            let equal = *v == *same;
            let first = arr(py, same);
            let second = (!equal).then(|| arr(py, v));
            (first, second)
        }
        // The per-token arrays: large in a prefill step, so their buffers are recycled.
        let big = |v: &mut Vec<i32>| buffers::pooled_to_numpy(py, v, pool).map(Bound::unbind);
        let (batch_size, num_tokens, num_sampled, num_placeholders) = (
            p.batch_size(),
            p.num_tokens(),
            p.num_sampled(),
            p.num_placeholders,
        );
        let out_cache_loc = big(&mut p.out_cache_loc)?;
        let table_slots = if p.table_slots_shared {
            out_cache_loc.clone_ref(py)
        } else {
            big(&mut p.table_slots)?
        };
        let (req_pool_indices, table_rows) = arr_or(py, &mut p.table_rows, &mut p.req_pool_indices);
        let (prefix_lens, table_starts) = arr_or(py, &mut p.table_starts, &mut p.prefix_lens);
        let (qo_indptr, table_indptr) = arr_or(py, &mut p.table_indptr, &mut p.qo_indptr);
        Ok(PyStepPlan {
            kind: PyString::intern(py, p.kind.as_str()).unbind(),
            req_ids: arr(py, &mut p.req_ids),
            table_rows: table_rows.unwrap_or_else(|| req_pool_indices.clone_ref(py)),
            table_starts: table_starts.unwrap_or_else(|| prefix_lens.clone_ref(py)),
            table_indptr: table_indptr.unwrap_or_else(|| qo_indptr.clone_ref(py)),
            req_pool_indices,
            prefix_lens,
            extend_lens: arr(py, &mut p.extend_lens),
            seq_lens: arr(py, &mut p.seq_lens),
            qo_indptr,
            input_ids: big(&mut p.input_ids)?,
            positions: big(&mut p.positions)?,
            out_cache_loc,
            table_slots,
            sample_mask: arr(py, &mut p.sample_mask),
            finished_ids: arr(py, &mut p.finished_ids),
            aborted_ids: arr(py, &mut p.aborted_ids),
            retracted_ids: arr(py, &mut p.retracted_ids),
            kv_indptr: emit_kv.then(|| arr(py, &mut p.kv_indptr)),
            kv_indices: emit_kv.then(|| big(&mut p.kv_indices)).transpose()?,
            batch_size,
            num_tokens,
            num_sampled,
            num_placeholders,
        })
    }
}

#[pymethods]
impl PyStepPlan {
    fn __len__(&self) -> usize {
        self.batch_size
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "StepPlan(kind={:?}, batch_size={}, num_tokens={}, num_sampled={}, num_placeholders={})",
            self.kind.bind(py).to_string(),
            self.batch_size,
            self.num_tokens,
            self.num_sampled,
            self.num_placeholders
        )
    }
}

/// Continuous-batching scheduler over a radix KV cache (see `sglrs.sched`).
///
/// `Scheduler(config=None, **kwargs)`: `config` is a `sglrs.sched.SchedulerConfig`, a dict or
/// None; keyword arguments override it. `capacity_tokens` is required.
#[pyclass(module = "sglrs._core", name = "Scheduler")]
pub struct PyScheduler {
    inner: Scheduler,
    /// Reused across steps (see `PyStepPlan::from_plan`).
    plan: StepPlan,
    done: FinishedBatch,
    tokens: Vec<u32>,
    finished: Vec<bool>,
}

impl PyScheduler {
    /// Runs `plan` (GIL released) into the reused plan buffers; the plan as numpy arrays if
    /// it planned a step.
    fn plan_with(
        &mut self,
        py: Python<'_>,
        plan: impl FnOnce(&mut Scheduler, &mut StepPlan) -> Result<bool, SchedError> + Send,
    ) -> PyResult<Option<PyStepPlan>> {
        let emit_kv = self.inner.config().emit_kv_indices;
        let p = &mut self.plan;
        for v in [
            &mut p.input_ids,
            &mut p.positions,
            &mut p.out_cache_loc,
            &mut p.table_slots,
        ]
        .into_iter()
        .chain(emit_kv.then_some(&mut p.kv_indices))
        {
            if v.capacity() == 0 {
                *v = POOL.take();
            }
        }
        let (inner, buf) = (&mut self.inner, &mut self.plan);
        if !py.detach(|| plan(inner, buf)).map_err(to_py_err)? {
            return Ok(None);
        }
        PyStepPlan::from_plan(py, &mut self.plan, emit_kv, &POOL).map(Some)
    }
}

#[pymethods]
impl PyScheduler {
    #[new]
    #[pyo3(signature = (config=None, **kwargs))]
    fn new(
        config: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut cfg = SchedulerConfig::new(0);
        let mut have_capacity = false;
        let mut apply = |items: &Bound<'_, PyDict>| -> PyResult<()> {
            for (k, v) in items.iter() {
                let name: String = k
                    .extract()
                    .map_err(|_| PyTypeError::new_err("config keys must be strings"))?;
                have_capacity |= name == "capacity_tokens";
                set_field(&mut cfg, &name, &v)?;
            }
            Ok(())
        };
        if let Some(c) = config.filter(|c| !c.is_none()) {
            if let Ok(d) = c.cast::<PyDict>() {
                apply(d)?;
            } else if c.hasattr("__dataclass_fields__")? {
                let dataclasses = PyModule::import(c.py(), "dataclasses")?;
                let d = dataclasses.getattr("asdict")?.call1((c,))?;
                apply(d.cast::<PyDict>()?)?;
            } else {
                return Err(PyTypeError::new_err(
                    "config must be a SchedulerConfig dataclass, a dict or None",
                ));
            }
        }
        if let Some(kw) = kwargs {
            apply(kw)?;
        }
        if !have_capacity {
            return Err(PyValueError::new_err("capacity_tokens is required"));
        }
        let inner = Scheduler::new(cfg).map_err(to_py_err)?;
        Ok(PyScheduler {
            inner,
            plan: StepPlan::default(),
            done: FinishedBatch::default(),
            tokens: Vec::new(),
            finished: Vec::new(),
        })
    }

    /// The defaults, with `capacity_tokens` set (what `SchedulerConfig` must mirror).
    #[staticmethod]
    fn default_config(py: Python<'_>, capacity_tokens: usize) -> PyResult<Bound<'_, PyDict>> {
        config_dict(py, &SchedulerConfig::new(capacity_tokens))
    }

    /// The configuration in effect, as a dict (`chunked_prefill_size` -1 when disabled).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, self.inner.config())
    }

    /// Queues a request. ValueError on a duplicate id, an empty prompt, a negative value,
    /// `max_new_tokens == 0`, prompt + max_new_tokens beyond `context_length`, or a prompt
    /// larger than the KV pool.
    #[pyo3(signature = (id, prompt_tokens, max_new_tokens, *, ignore_eos=false, stop_token_ids=None, eos_token_ids=None, priority=0, max_cached_prefix=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_request(
        &mut self,
        id: &Bound<'_, PyAny>,
        prompt_tokens: &Bound<'_, PyAny>,
        max_new_tokens: &Bound<'_, PyAny>,
        ignore_eos: bool,
        stop_token_ids: Option<&Bound<'_, PyAny>>,
        eos_token_ids: Option<&Bound<'_, PyAny>>,
        priority: i64,
        max_cached_prefix: Option<usize>,
    ) -> PyResult<()> {
        let id = non_negative(id, "id")?;
        let max_new = non_negative(max_new_tokens, "max_new_tokens")? as usize;
        // Sized for the request's first outputs too, so the scheduler keeps it without a copy.
        let len = prompt_tokens.len().unwrap_or(0);
        let mut prompt = Vec::with_capacity(sglrs_sched::prompt_capacity(len, max_new));
        buffers::extend_u32(prompt_tokens, "prompt_tokens", &mut prompt)?;
        let ids = |o: Option<&Bound<'_, PyAny>>, what| match o {
            Some(o) if !o.is_none() => buffers::to_u32_vec(o, what),
            _ => Ok(Vec::new()),
        };
        let opts = RequestOptions {
            ignore_eos,
            stop_token_ids: ids(stop_token_ids, "stop_token_ids")?,
            eos_token_ids: ids(eos_token_ids, "eos_token_ids")?,
            priority,
            max_cached_prefix,
        };
        self.inner
            .add_request(id, prompt, max_new, opts)
            .map_err(to_py_err)
    }

    /// Aborts a request in any state; False for an unknown id. It is reported (reason ABORT)
    /// by the next `update`.
    fn abort(&mut self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(id) = id.extract::<u64>() else {
            // A negative id was never added; anything else is a type error.
            return id.extract::<i64>().map(|_| false);
        };
        self.inner.abort(id).map_err(to_py_err)
    }

    /// Plans the next step. Every plan (idle ones too) must be answered by `update`.
    fn schedule(&mut self, py: Python<'_>) -> PyResult<PyStepPlan> {
        self.plan_with(py, |s, p| s.schedule_into_shared(p).map(|()| true))?
            .ok_or_else(|| PyRuntimeError::new_err("schedule() planned no step"))
    }

    /// Plans the next step while exactly one plan awaits its `update`, as if it had completed
    /// (overlap scheduling). Its sampled tokens appear in `input_ids` as placeholders
    /// `-(j + 1)` (`j`: the index in that plan's `token_ids`). None when it cannot plan ahead
    /// (the plan would be idle, or decode would need to retract): nothing changed; `update`
    /// the plan in flight and `schedule` as usual. Updates then commit the plans oldest first.
    fn schedule_ahead(&mut self, py: Python<'_>) -> PyResult<Option<PyStepPlan>> {
        self.plan_with(py, Scheduler::schedule_ahead_into_shared)
    }

    /// Commits the oldest plan in flight: one sampled token per request whose `sample_mask`
    /// was set (plan order), and optionally a bool per such request that Python finished it.
    /// Returns `(ids uint64, reasons uint8, matched_token_ids int32)` of the requests that
    /// finished now or were aborted since the last update. A row of a later plan (from
    /// `schedule_ahead`) whose request finished here still takes a token, which is ignored.
    #[pyo3(signature = (token_ids, finished_mask=None))]
    fn update<'py>(
        &mut self,
        py: Python<'py>,
        token_ids: &Bound<'py, PyAny>,
        finished_mask: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        self.tokens.clear();
        buffers::extend_u32(token_ids, "token_ids", &mut self.tokens)?;
        self.finished.clear();
        if let Some(m) = finished_mask.filter(|m| !m.is_none()) {
            extend_bool(m, "finished_mask", &mut self.finished)?;
        }
        let (inner, tokens, finished) = (&mut self.inner, &self.tokens, &self.finished);
        let done = &mut self.done;
        py.detach(|| inner.update_into(tokens, finished, done))
            .map_err(to_py_err)?;
        let ids = buffers::take_to_numpy(py, &mut self.done.ids);
        let reasons = buffers::take_to_numpy(py, &mut self.done.reasons);
        let matched = buffers::take_to_numpy(py, &mut self.done.matched_tokens);
        PyTuple::new(py, [ids.into_any(), reasons.into_any(), matched.into_any()])
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.inner.stats())
    }

    /// RuntimeError naming the first broken invariant.
    fn check_integrity(&self) -> PyResult<()> {
        self.inner.check_integrity().map_err(to_py_err)
    }

    /// Empties the radix cache; False (nothing done) while any request is admitted.
    fn flush_cache(&mut self) -> PyResult<bool> {
        self.inner.flush_cache().map_err(to_py_err)
    }

    /// Requests in the scheduler (waiting or admitted).
    fn __len__(&self) -> usize {
        self.inner.num_requests()
    }
}
