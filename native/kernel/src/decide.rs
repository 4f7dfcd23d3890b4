//! Decide a chunk of records against one dataset's contract: one output row per input line.
use std::borrow::Cow;

use crate::columns::{Bits, Column, ReasonColumn, StrColumn};
use crate::json::{self, Unknown, Val, Whole};
use crate::rules::{self, Field, Kind, Typed};

/// A record longer than this is handed to the reference (see `decide`).
pub const LONG_LINE: usize = 64 << 20;

/// The reader's verdicts on a line (`line_codes` of `decide`).
pub const LINE_INVALID_UTF8: u8 = 0;
pub const LINE_OK: u8 = 1;
pub const LINE_TOO_LARGE: u8 = 2;

/// The whole-record reason codes, in the contract's precedence.
pub struct WholeReasons {
    pub too_large: String,
    pub invalid_utf8: String,
    pub invalid_json: String,
    pub not_an_object: String,
    pub duplicate_key: String,
}

pub struct Spec {
    pub fields: Vec<Field>,
    pub whole: WholeReasons,
    /// the source's time zone is UTC, so a naive time is a UTC time
    pub naive_is_utc: bool,
}

/// The decided chunk. `keep` is false for blank lines, which are not records; rows the
/// kernel cannot decide exactly have `needs_reference` set and are decided by the reference.
pub struct Output {
    pub rows: usize,
    pub keep: Bits,
    pub needs_reference: Bits,
    pub reasons: ReasonColumn,
    pub columns: Vec<Column>,
    pub rescued: StrColumn,
}

impl Output {
    fn new(spec: &Spec, rows: usize, data_bytes: usize) -> Self {
        let columns = spec
            .fields
            .iter()
            .map(|f| match f.kind {
                Kind::Integer => Column::Int { values: Vec::with_capacity(rows), valid: Bits::with_capacity(rows) },
                Kind::Decimal => Column::Dec { values: Vec::with_capacity(rows), valid: Bits::with_capacity(rows) },
                Kind::EventTime => Column::Time {
                    values: Vec::with_capacity(rows),
                    valid: Bits::with_capacity(rows),
                    naive: Bits::with_capacity(rows),
                },
                // text fields take a share of the line; 1/8 of the input is a first guess
                _ => Column::Str(StrColumn::with_capacity(rows, (data_bytes / 8).min(LONG_LINE))),
            })
            .collect();
        Output {
            rows,
            keep: Bits::with_capacity(rows),
            needs_reference: Bits::with_capacity(rows),
            reasons: ReasonColumn::with_capacity(rows),
            columns,
            rescued: StrColumn::with_capacity(rows, 1024),
        }
    }

    fn push_null(column: &mut Column) {
        match column {
            Column::Int { values, valid } => {
                values.push(0);
                valid.push(false);
            }
            Column::Dec { values, valid } => {
                values.push(0);
                valid.push(false);
            }
            Column::Time { values, valid, naive } => {
                values.push(0);
                valid.push(false);
                naive.push(false);
            }
            Column::Str(s) => s.push(None),
        }
    }

    /// A row whose fields are all null: a blank line, a whole-record reason, or unsure.
    fn empty_row(&mut self, keep: bool, unsure: bool, reason: Option<&str>) {
        self.keep.push(keep);
        self.needs_reference.push(unsure);
        if let Some(r) = reason {
            self.reasons.push_item(r);
        }
        self.reasons.end_row();
        for c in &mut self.columns {
            Self::push_null(c);
        }
        self.rescued.push(None);
    }
}

#[inline]
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
}

fn push_typed(column: &mut Column, value: Typed) {
    match (column, value) {
        (Column::Int { values, valid }, Typed::Int(v)) => {
            values.push(v);
            valid.push(true);
        }
        (Column::Dec { values, valid }, Typed::Dec(v)) => {
            values.push(v);
            valid.push(true);
        }
        (Column::Time { values, valid, naive }, Typed::Time { us, naive: n }) => {
            values.push(us);
            valid.push(true);
            naive.push(n);
        }
        (Column::Str(s), Typed::Str(v)) => s.push(Some(v.as_bytes())),
        (c, _) => Output::push_null(c), // unreachable: a kind always yields its own type
    }
}

fn write_rescued(line: &str, unknown: &[Unknown], out: &mut Vec<u8>) {
    out.push(b'{');
    for (k, member) in unknown.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let (ks, ke, esc) = member.key;
        json::encode_string(&json::decode_string(&line[ks..ke], esc), out);
        out.push(b':');
        json::write_compact(&line[member.value.0..member.value.1], out);
    }
    out.push(b'}');
}

/// Decide every line of a chunk. `offsets` has one entry more than there are lines;
/// `line_codes`, when given, holds the reader's verdict, one byte per line: `LINE_OK`,
/// `LINE_INVALID_UTF8`, or `LINE_TOO_LARGE` (the text is then only the line's first bytes).
pub fn decide(spec: &Spec, offsets: &[i64], data: &[u8], line_codes: Option<&[u8]>) -> Output {
    let rows = offsets.len().saturating_sub(1);
    let span = match (offsets.first(), offsets.last()) {
        (Some(&a), Some(&b)) => (b - a) as usize,
        _ => 0,
    };
    let mut out = Output::new(spec, rows, span);
    let mut names = json::Keys::new(spec.fields.iter().map(|f| f.name.as_bytes()).collect());
    let mut vals: Vec<Val> = vec![Val::Absent; spec.fields.len()];
    let mut unknown: Vec<Unknown> = Vec::new();
    let mut rescued = Vec::new();
    for i in 0..rows {
        let line = &data[offsets[i] as usize..offsets[i + 1] as usize];
        let code = line_codes.map_or(LINE_OK, |c| c[i]);
        if code == LINE_TOO_LARGE {
            // decided by its size alone: even blank first bytes may hide a record
            out.empty_row(true, false, Some(&spec.whole.too_large));
            continue;
        }
        if is_blank(line) {
            out.empty_row(false, false, None);
            continue;
        }
        let text = match code {
            // most records are ASCII, which is UTF-8 at a word-wide check
            // SAFETY: ASCII is UTF-8
            LINE_OK if line.is_ascii() => Some(unsafe { std::str::from_utf8_unchecked(line) }),
            LINE_OK => std::str::from_utf8(line).ok(),
            _ => None,
        };
        let Some(text) = text else {
            out.empty_row(true, false, Some(&spec.whole.invalid_utf8));
            continue;
        };
        if text.len() > LONG_LINE {
            // the reference decides it: its fields could overflow the int32 offsets of a
            // slice's text columns, and such a record is no ordinary event anyway
            out.empty_row(true, true, None);
            continue;
        }
        vals.iter_mut().for_each(|v| *v = Val::Absent);
        unknown.clear();
        match json::parse_record(text, &mut names, &mut vals, &mut unknown) {
            Ok(()) => {}
            Err(Whole::InvalidJson) => {
                out.empty_row(true, false, Some(&spec.whole.invalid_json));
                continue;
            }
            Err(Whole::NotObject) => {
                out.empty_row(true, false, Some(&spec.whole.not_an_object));
                continue;
            }
            Err(Whole::Duplicate) => {
                out.empty_row(true, false, Some(&spec.whole.duplicate_key));
                continue;
            }
            Err(Whole::ForReference) => {
                out.empty_row(true, true, None);
                continue;
            }
        }
        let mut unsure = false;
        let mut rejected = false;
        for ((f, v), column) in spec.fields.iter().zip(vals.iter()).zip(out.columns.iter_mut()) {
            if matches!(v, Val::Absent | Val::Null) {
                if f.required {
                    out.reasons.push_item(&f.missing_reason);
                    rejected = true;
                }
                match &f.default {
                    Some(d) => push_typed(column, Typed::Str(Cow::Borrowed(d))),
                    None => Output::push_null(column),
                }
                continue;
            }
            match rules::convert(v, f, spec.naive_is_utc) {
                Ok(Some(t)) => push_typed(column, t),
                Ok(None) => {
                    out.reasons.push_item(&f.invalid_reason);
                    rejected = true;
                    Output::push_null(column);
                }
                Err(rules::Unsure) => {
                    unsure = true;
                    Output::push_null(column);
                }
            }
        }
        out.reasons.end_row();
        out.keep.push(true);
        out.needs_reference.push(unsure);
        if !rejected && !unsure && !unknown.is_empty() {
            rescued.clear();
            write_rescued(text, &unknown, &mut rescued);
            out.rescued.push(Some(&rescued));
        } else {
            out.rescued.push(None);
        }
    }
    out
}
