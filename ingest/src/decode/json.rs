//! Lenient accessors over simd-json borrowed values.
//!
//! Real logs put numbers where strings belong (account ids as floats), booleans as `"True"`, and
//! `null` where an object is usual. These accessors turn what is there into the column's type
//! when the meaning is unambiguous, and return `None` otherwise; they never fail.

use std::borrow::Cow;

use simd_json::prelude::*;
use simd_json::{BorrowedValue, StaticNode};

/// `value[key]`, or `None` when `value` is not an object or lacks the key.
pub fn get<'v, 'a>(
    value: Option<&'v BorrowedValue<'a>>,
    key: &str,
) -> Option<&'v BorrowedValue<'a>> {
    value?.as_object()?.get(key)
}

/// Follows a path of keys.
pub fn path<'v, 'a>(value: &'v BorrowedValue<'a>, keys: &[&str]) -> Option<&'v BorrowedValue<'a>> {
    keys.iter()
        .try_fold(value, |v, key| v.as_object()?.get(*key))
}

/// A scalar as text: strings as they are, integral floats without `.0`, other numbers and
/// booleans in their JSON spelling. Null, objects and arrays give `None`.
pub fn text<'v>(value: Option<&'v BorrowedValue<'_>>) -> Option<Cow<'v, str>> {
    match value? {
        BorrowedValue::String(s) => Some(Cow::Borrowed(s.as_ref())),
        BorrowedValue::Static(StaticNode::I64(n)) => Some(Cow::Owned(n.to_string())),
        BorrowedValue::Static(StaticNode::U64(n)) => Some(Cow::Owned(n.to_string())),
        BorrowedValue::Static(StaticNode::F64(f)) => {
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Some(Cow::Owned(format!("{}", *f as i64)))
            } else {
                Some(Cow::Owned(f.to_string()))
            }
        }
        BorrowedValue::Static(StaticNode::Bool(b)) => {
            Some(Cow::Borrowed(if *b { "true" } else { "false" }))
        }
        _ => None,
    }
}

/// A boolean from `true`/`false` or their spelling as text in any case.
pub fn boolean(value: Option<&BorrowedValue<'_>>) -> Option<bool> {
    match value? {
        BorrowedValue::Static(StaticNode::Bool(b)) => Some(*b),
        BorrowedValue::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        BorrowedValue::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// An integer from a JSON integer, an integral float, or digits as text.
pub fn integer(value: Option<&BorrowedValue<'_>>) -> Option<i64> {
    match value? {
        BorrowedValue::Static(StaticNode::I64(n)) => Some(*n),
        BorrowedValue::Static(StaticNode::U64(n)) => i64::try_from(*n).ok(),
        BorrowedValue::Static(StaticNode::F64(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
            Some(*f as i64)
        }
        BorrowedValue::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The value as compact JSON text; `None` for a missing value or JSON `null`.
pub fn json_text(value: Option<&BorrowedValue<'_>>) -> Option<String> {
    match value? {
        BorrowedValue::Static(StaticNode::Null) => None,
        v => Some(v.encode()),
    }
}
