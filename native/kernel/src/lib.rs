//! Python binding of the native contract kernel (`digital_finance_kernel._native`).
//!
//! The package's embedded engine hands this kernel the lines its reader split, with the
//! dataset's fields as `contract.schemas` declares them; the kernel returns Arrow buffers,
//! which Python wraps with `pyarrow.Array.from_buffers`. The work runs without the GIL.
pub mod columns;
pub mod decide;
pub mod json;
pub mod lines;
pub mod rules;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use columns::{as_bytes, Column};
use rules::{Field, Kind};

/// (name, kind, required, default, missing_reason, invalid_reason, (int_min, int_max),
/// (precision, scale, exclusive_min, min, max)); decimal bounds are value * 10^scale.
type FieldTuple = (
    String,
    String,
    bool,
    Option<String>,
    String,
    String,
    (i64, i64),
    (u32, u32, Option<i128>, Option<i128>, Option<i128>),
);

/// The contract of one dataset, compiled once per batch.
#[pyclass(frozen)]
struct Kernel {
    spec: decide::Spec,
}

/// A read-only view of a Python buffer (bytes, numpy array, pyarrow Buffer) of `T`.
fn view<'a, T: pyo3::buffer::Element>(buffer: &'a PyBuffer<T>) -> PyResult<&'a [T]> {
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err("the kernel needs contiguous buffers"));
    }
    // SAFETY: the buffer is contiguous, holds item_count() items of T, and stays alive (and,
    // by the caller's contract, unchanged) while the returned slice is used
    Ok(unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<T>(), buffer.item_count()) })
}

fn bytes<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, data)
}

#[pymethods]
impl Kernel {
    #[new]
    #[pyo3(signature = (fields, whole_reasons, naive_is_utc))]
    fn new(fields: Vec<FieldTuple>, whole_reasons: (String, String, String, String), naive_is_utc: bool) -> PyResult<Self> {
        if fields.len() > 64 {
            return Err(PyValueError::new_err("the kernel takes at most 64 fields"));
        }
        let mut out = Vec::with_capacity(fields.len());
        for (name, kind, required, default, missing, invalid, (int_min, int_max), decimal) in fields {
            let (precision, scale, exclusive_min, min, max) = decimal;
            let kind = Kind::from_name(&kind)
                .ok_or_else(|| PyValueError::new_err(format!("unknown field kind {kind:?}")))?;
            if kind == Kind::Decimal && (precision > 38 || scale > precision) {
                return Err(PyValueError::new_err(format!("{name}: decimal({precision},{scale}) is out of range")));
            }
            out.push(Field {
                name,
                kind,
                required,
                int_min,
                int_max,
                precision,
                scale,
                dec_exclusive_min: exclusive_min,
                dec_min: min,
                dec_max: max,
                default,
                missing_reason: missing,
                invalid_reason: invalid,
            });
        }
        let (invalid_utf8, invalid_json, not_an_object, duplicate_key) = whole_reasons;
        Ok(Kernel {
            spec: decide::Spec {
                fields: out,
                whole: decide::WholeReasons { invalid_utf8, invalid_json, not_an_object, duplicate_key },
                naive_is_utc,
            },
        })
    }

    /// Decide `len(offsets) - 1` lines: line i is `data[offsets[i]:offsets[i+1]]`.
    ///
    /// Returns a dict of Arrow buffers: `rows`, `keep` and `needs_reference` (bitmaps),
    /// `reasons` (list offsets, item offsets, item bytes), `fields` (one tuple per field:
    /// validity bitmap, values, and string data / a naive-time bitmap) and `rescued`.
    #[pyo3(signature = (offsets, data, utf8_ok=None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        offsets: PyBuffer<i64>,
        data: PyBuffer<u8>,
        utf8_ok: Option<PyBuffer<u8>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let offs = view(&offsets)?;
        let text = view(&data)?;
        let ok = utf8_ok.as_ref().map(view).transpose()?;
        let rows = offs.len().saturating_sub(1);
        if let Some(ok) = ok {
            if ok.len() < rows {
                return Err(PyValueError::new_err("utf8_ok must hold one byte per line"));
            }
        }
        let last = offs.last().copied().unwrap_or(0);
        let first = offs.first().copied().unwrap_or(0);
        if first < 0 || last as usize > text.len() || offs.windows(2).any(|w| w[0] > w[1]) {
            return Err(PyValueError::new_err("offsets must rise within the data"));
        }
        let spec = &self.spec;
        let out = py.detach(|| decide::decide(spec, offs, text, ok));
        let result = PyDict::new(py);
        result.set_item("rows", out.rows)?;
        result.set_item("keep", bytes(py, &out.keep.bytes))?;
        result.set_item("needs_reference", bytes(py, &out.needs_reference.bytes))?;
        let items = &out.reasons.items;
        result.set_item(
            "reasons",
            (
                bytes(py, as_bytes(&out.reasons.offsets)),
                bytes(py, as_bytes(&items.offsets)),
                bytes(py, &items.data),
            ),
        )?;
        let fields = PyList::empty(py);
        for column in &out.columns {
            let t: Bound<'py, PyTuple> = match column {
                Column::Int { values, valid } => {
                    PyTuple::new(py, [bytes(py, &valid.bytes), bytes(py, as_bytes(values))])?
                }
                Column::Dec { values, valid } => {
                    PyTuple::new(py, [bytes(py, &valid.bytes), bytes(py, as_bytes(values))])?
                }
                Column::Time { values, valid, naive } => PyTuple::new(
                    py,
                    [bytes(py, &valid.bytes), bytes(py, as_bytes(values)), bytes(py, &naive.bytes)],
                )?,
                Column::Str(s) => PyTuple::new(
                    py,
                    [bytes(py, &s.valid.bytes), bytes(py, as_bytes(&s.offsets)), bytes(py, &s.data)],
                )?,
            };
            fields.append(t)?;
        }
        result.set_item("fields", fields)?;
        let r = &out.rescued;
        result.set_item(
            "rescued",
            (bytes(py, &r.valid.bytes), bytes(py, as_bytes(&r.offsets)), bytes(py, &r.data)),
        )?;
        Ok(result)
    }
}

/// Split a block that ends with a newline into lines: (offsets as int64 bytes, text bytes,
/// indices of the lines that were not UTF-8 and now carry backslash escapes).
#[pyfunction]
fn split_lines<'py>(py: Python<'py>, block: PyBuffer<u8>) -> PyResult<Bound<'py, PyTuple>> {
    let data = view(&block)?;
    let lines = py.detach(|| lines::split(data));
    let offsets = bytes(py, as_bytes(&lines.offsets));
    let text = bytes(py, &lines.data);
    let bad = PyList::new(py, lines.bad_utf8)?;
    PyTuple::new(py, [offsets.into_any(), text.into_any(), bad.into_any()])
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Kernel>()?;
    m.add_function(wrap_pyfunction!(split_lines, m)?)?;
    m.add("MAX_DEPTH", json::MAX_DEPTH)?;
    Ok(())
}
