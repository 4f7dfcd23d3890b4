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
pub mod scan;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

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

/// Memory the kernel filled, handed to Python without a copy: it exports itself through the
/// buffer protocol (read-only), and `pyarrow.py_buffer` wraps it as it is.
#[pyclass(frozen)]
struct Owned {
    data: Data,
}

enum Data {
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    I128(Vec<i128>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::U8(v) => v,
            Data::I32(v) => as_bytes(v),
            Data::I64(v) => as_bytes(v),
            Data::I128(v) => as_bytes(v),
        }
    }
}

#[pymethods]
impl Owned {
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::os::raw::c_int,
    ) -> PyResult<()> {
        let data = slf.get().data.bytes();
        // SAFETY: the memory lives as long as `slf`, which the view holds a reference to,
        // and is never written again; the view is read-only
        let status = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut std::os::raw::c_void,
                data.len() as pyo3::ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.data.bytes().len()
    }
}

fn owned<'py>(py: Python<'py>, data: Data) -> PyResult<Bound<'py, Owned>> {
    Bound::new(py, Owned { data })
}

#[pymethods]
impl Kernel {
    #[new]
    #[pyo3(signature = (fields, whole_reasons, naive_is_utc))]
    fn new(fields: Vec<FieldTuple>, whole_reasons: (String, String, String, String, String), naive_is_utc: bool) -> PyResult<Self> {
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
        let (too_large, invalid_utf8, invalid_json, not_an_object, duplicate_key) = whole_reasons;
        Ok(Kernel {
            spec: decide::Spec {
                fields: out,
                whole: decide::WholeReasons { too_large, invalid_utf8, invalid_json, not_an_object, duplicate_key },
                naive_is_utc,
            },
        })
    }

    /// Decide one record (UTF-8 JSON text within the record limit): its reasons, in
    /// contract order, and whether the reference must decide it instead. For a service
    /// checking a request of a few records: no buffers, no Arrow.
    /// The interpreter lock is kept: a record takes microseconds, and letting go of the
    /// lock could hand the service's event loop to another thread for a switch interval.
    fn check_one(&self, record: &[u8]) -> (Vec<String>, bool) {
        let offsets = [0i64, record.len() as i64];
        let out = decide::decide(&self.spec, &offsets, record, None);
        let (first, last) = (out.reasons.offsets[0] as usize, out.reasons.offsets[1] as usize);
        let items = &out.reasons.items;
        let reasons = (first..last)
            .map(|i| {
                let (a, b) = (items.offsets[i] as usize, items.offsets[i + 1] as usize);
                String::from_utf8_lossy(&items.data[a..b]).into_owned()
            })
            .collect();
        let unsure = out.needs_reference.bytes.first().is_some_and(|b| b & 1 == 1);
        (reasons, unsure)
    }

    /// Decide `len(offsets) - 1` lines: line i is `data[offsets[i]:offsets[i+1]]`.
    ///
    /// Returns a dict of Arrow buffers: `rows`, `keep` and `needs_reference` (bitmaps),
    /// `reasons` (list offsets, item offsets, item bytes), `fields` (one tuple per field:
    /// validity bitmap, values, and string data / a naive-time bitmap) and `rescued`.
    #[pyo3(signature = (offsets, data, line_codes=None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        offsets: PyBuffer<i64>,
        data: PyBuffer<u8>,
        line_codes: Option<PyBuffer<u8>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let offs = view(&offsets)?;
        let text = view(&data)?;
        let ok = line_codes.as_ref().map(view).transpose()?;
        let rows = offs.len().saturating_sub(1);
        if let Some(ok) = ok {
            if ok.len() < rows {
                return Err(PyValueError::new_err("line_codes must hold one byte per line"));
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
        result.set_item("keep", owned(py, Data::U8(out.keep.bytes))?)?;
        result.set_item("needs_reference", owned(py, Data::U8(out.needs_reference.bytes))?)?;
        let items = out.reasons.items;
        result.set_item(
            "reasons",
            (
                owned(py, Data::I32(out.reasons.offsets))?,
                owned(py, Data::I32(items.offsets))?,
                owned(py, Data::U8(items.data))?,
            ),
        )?;
        let fields = PyList::empty(py);
        for column in out.columns {
            let parts: Vec<Data> = match column {
                Column::Int { values, valid } => vec![Data::U8(valid.bytes), Data::I64(values)],
                Column::Dec { values, valid } => vec![Data::U8(valid.bytes), Data::I128(values)],
                Column::Time { values, valid, naive } => {
                    vec![Data::U8(valid.bytes), Data::I64(values), Data::U8(naive.bytes)]
                }
                Column::Str(s) => vec![Data::U8(s.valid.bytes), Data::I32(s.offsets), Data::U8(s.data)],
            };
            let parts = parts.into_iter().map(|d| owned(py, d)).collect::<PyResult<Vec<_>>>()?;
            fields.append(PyTuple::new(py, parts)?)?;
        }
        result.set_item("fields", fields)?;
        let r = out.rescued;
        result.set_item(
            "rescued",
            (owned(py, Data::U8(r.valid.bytes))?, owned(py, Data::I32(r.offsets))?, owned(py, Data::U8(r.data))?),
        )?;
        Ok(result)
    }
}

/// Split a block that ends with a newline into its non-empty lines: (int64 offsets, text
/// bytes, indices of the lines that were not UTF-8 and now carry backslash escapes, and
/// int64 indices of the kept lines in the block, or None when no line was empty, the
/// number of lines in the block, and the indices of the lines over `max_record` bytes,
/// which keep only their first `prefix` bytes).
#[pyfunction]
#[pyo3(signature = (block, max_record=usize::MAX, prefix=4096))]
fn split_lines<'py>(
    py: Python<'py>,
    block: PyBuffer<u8>,
    max_record: usize,
    prefix: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let data = view(&block)?;
    let lines = py.detach(|| lines::split(data, max_record, prefix));
    let offsets = owned(py, Data::I64(lines.offsets))?;
    let text = owned(py, Data::U8(lines.data))?;
    let bad = PyList::new(py, lines.bad_utf8)?;
    let index = match lines.line_index {
        Some(index) => owned(py, Data::I64(index))?.into_any(),
        None => py.None().into_bound(py),
    };
    let count = lines.count.into_pyobject(py)?.into_any();
    let big = PyList::new(py, lines.too_large)?.into_any();
    PyTuple::new(py, [offsets.into_any(), text.into_any(), bad.into_any(), index, count, big])
}

/// The elements of a file that is one JSON array: (int64 offsets, text bytes, int64 start
/// lines), or None when the text is not one strict JSON array (the caller decides then).
#[pyfunction]
fn split_array<'py>(py: Python<'py>, data: PyBuffer<u8>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let bytes = view(&data)?;
    let Some(found) = py.detach(|| lines::split_array(bytes)) else { return Ok(None) };
    let parts = [
        owned(py, Data::I64(found.offsets))?,
        owned(py, Data::U8(found.data))?,
        owned(py, Data::I64(found.lines))?,
    ];
    Ok(Some(PyTuple::new(py, parts)?))
}

/// One pass over bytes [0, size) of a local file, without the interpreter lock: (None or
/// the byte the file ended at before `size`, SHA-256 hex of [0, size), SHA-256 hex of
/// [0, at) or None, line ends in [0, at), whether the byte before `at` (or `size`) is a
/// line end, the first two bytes, the first byte that is neither blank nor a byte-order
/// mark's). `sources/file_scan.py` says what each is for.
#[pyfunction]
#[pyo3(signature = (path, size, at=None))]
fn scan_file<'py>(
    py: Python<'py>,
    path: String,
    size: u64,
    at: Option<u64>,
) -> PyResult<Bound<'py, PyTuple>> {
    let s = py.detach(|| scan::scan(&path, size, at))?;
    let head = pyo3::types::PyBytes::new(py, &s.head);
    let first = pyo3::types::PyBytes::new(py, s.first.as_slice());
    (s.ended_at, s.sha256, s.prefix_sha256, s.lines_before, s.line_end_at, head, first).into_pyobject(py)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Kernel>()?;
    m.add_function(wrap_pyfunction!(split_lines, m)?)?;
    m.add_function(wrap_pyfunction!(split_array, m)?)?;
    m.add_function(wrap_pyfunction!(scan_file, m)?)?;
    m.add("MAX_DEPTH", json::MAX_DEPTH)?;
    Ok(())
}
