//! serde_json path: top-level map visited with borrowed keys and &RawValue values.
use crate::rules::{self, Val};
use crate::scan::Whole;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

struct Key<'de>(Cow<'de, str>);
impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result { f.write_str("key") }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> { Ok(Key(Cow::Borrowed(v))) }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> { Ok(Key(Cow::Owned(v.to_owned()))) }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> { Ok(Key(Cow::Owned(v))) }
        }
        d.deserialize_str(V)
    }
}

const DUP: &str = "__duplicate_key__";

/// Walks a nested value; false when some object names a key twice.
struct NoDup(bool);
impl<'de> de::Deserialize<'de> for NoDup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoDup;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result { f.write_str("any") }
            fn visit_bool<E>(self, _: bool) -> Result<NoDup, E> { Ok(NoDup(true)) }
            fn visit_i64<E>(self, _: i64) -> Result<NoDup, E> { Ok(NoDup(true)) }
            fn visit_u64<E>(self, _: u64) -> Result<NoDup, E> { Ok(NoDup(true)) }
            fn visit_f64<E>(self, _: f64) -> Result<NoDup, E> { Ok(NoDup(true)) }
            fn visit_str<E>(self, _: &str) -> Result<NoDup, E> { Ok(NoDup(true)) }
            fn visit_unit<E>(self) -> Result<NoDup, E> { Ok(NoDup(true)) }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<NoDup, A::Error> {
                let mut ok = true;
                while let Some(NoDup(x)) = s.next_element()? { ok &= x; }
                Ok(NoDup(ok))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<NoDup, A::Error> {
                let mut ok = true;
                let mut keys: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Key(k)) = m.next_key::<Key<'de>>()? {
                    if keys.contains(&k) { ok = false; } else { keys.push(k); }
                    let NoDup(x) = m.next_value()?;
                    ok &= x;
                }
                Ok(NoDup(ok))
            }
        }
        d.deserialize_any(V)
    }
}

struct Top<'de> { vals: [Val<'de>; 8], unknown: u32, dup: bool }

#[inline]
fn has_surrogate_escape(t: &str) -> bool {
    let b = t.as_bytes();
    memchr::memmem::find_iter(b, b"\\u").any(|p| {
        matches!(b.get(p + 2), Some(b'd' | b'D')) && matches!(b.get(p + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
    })
}

fn classify<'de, E: de::Error>(raw: &'de RawValue) -> Result<Val<'de>, E> {
    let t = raw.get();
    Ok(match t.as_bytes()[0] {
        b'"' => {
            if memchr::memchr(b'\\', t.as_bytes()).is_none() { Val::Str(Cow::Borrowed(&t[1..t.len() - 1])) }
            else { Val::Str(Cow::Owned(serde_json::from_str::<String>(t).map_err(E::custom)?)) }
        }
        b't' | b'f' => Val::Bool,
        b'n' => Val::Null,
        b'{' | b'[' => {
            if has_surrogate_escape(t) { serde_json::from_str::<serde_json::Value>(t).map_err(E::custom)?; }
            if memchr::memchr(b'{', t.as_bytes()).is_some() {
                let mut de = serde_json::Deserializer::from_str(t);
                match de::Deserialize::deserialize(&mut de) {
                    Ok(NoDup(true)) => Ok::<(), E>(()),
                    Ok(NoDup(false)) => return Err(E::custom(DUP)),
                    Err(e) => return Err(E::custom(e)),
                }?;
            }
            Val::Compound
        }
        _ => Val::Num(t),
    })
}

impl<'de> de::Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result { f.write_str("object") }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Top<'de>, A::Error> {
                let mut top = Top { vals: Default::default(), unknown: 0, dup: false };
                let mut seen = 0u32;
                let mut unknown: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Key(k)) = m.next_key::<Key<'de>>()? {
                    let raw: &'de RawValue = m.next_value()?;
                    let v = classify::<A::Error>(raw)?;
                    match rules::field_index(k.as_bytes()) {
                        Some(f) => { if seen & (1 << f) != 0 { top.dup = true; } seen |= 1 << f; top.vals[f] = v; }
                        None => { if unknown.contains(&k) { top.dup = true; } else { unknown.push(k); } }
                    }
                }
                top.unknown = unknown.len() as u32;
                Ok(top)
            }
        }
        d.deserialize_map(V)
    }
}

pub fn parse_line<'a>(line: &'a str, vals: &mut [Val<'a>; 8]) -> Result<u32, Whole> {
    let first = line.bytes().find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        let r: Result<&RawValue, _> = serde_json::from_str(line);
        return match r {
            Ok(raw) if !has_surrogate_escape(raw.get()) || serde_json::from_str::<serde_json::Value>(line).is_ok() => Err(Whole::NotObject),
            _ => Err(Whole::InvalidJson),
        };
    }
    match serde_json::from_str::<Top<'a>>(line) {
        Ok(top) => {
            if top.dup { return Err(Whole::Duplicate); }
            *vals = top.vals;
            Ok(top.unknown)
        }
        Err(e) if e.to_string().starts_with(DUP) => {
            // invalid_json takes precedence: make sure the rest of the line is valid JSON
            match serde_json::from_str::<&RawValue>(line) {
                Ok(_) if !has_surrogate_escape(line) || serde_json::from_str::<serde_json::Value>(line).is_ok() => Err(Whole::Duplicate),
                _ => Err(Whole::InvalidJson),
            }
        }
        Err(_) => Err(Whole::InvalidJson),
    }
}
