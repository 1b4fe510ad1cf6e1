//! Lenient accessors over simd-json's tape, the parse form that builds no value tree.
//!
//! Real logs put numbers where strings belong (account ids as floats), booleans as `"True"`, and
//! `null` where an object is usual. These accessors turn what is there into the column's type
//! when the meaning is unambiguous, and return `None` otherwise; they never fail. Decoders read
//! each record straight from the tape into Arrow builders. Parsing reuses
//! one set of simd-json buffers per thread, so a record costs no allocation for the parse itself;
//! the buffers of a document larger than [`RETAINED_INPUT_BYTES`] are freed after it instead
//! (they are several times its size, and a thread that met one large object would hold them
//! for good).

use std::borrow::Cow;
use std::cell::RefCell;

use simd_json::prelude::*;
use simd_json::tape::Value;
use simd_json::{Buffers, Tape, ValueType};

thread_local! {
    static PARSER: RefCell<Parser> = RefCell::new(Parser {
        buffers: Buffers::default(),
        tape: Some(Tape::null().reset()),
    });
}

/// The largest document whose parse buffers a thread keeps for the next parse.
pub const RETAINED_INPUT_BYTES: usize = 8 << 20;

struct Parser {
    buffers: Buffers,
    /// Kept between parses for its allocation; always empty here.
    tape: Option<Tape<'static>>,
}

/// Parses `input` (in place, as simd-json does) and calls `f` with the document's root.
pub fn with_parsed<R>(
    input: &mut [u8],
    f: impl FnOnce(Value<'_, '_>) -> R,
) -> Result<R, simd_json::Error> {
    PARSER.with(|cell| {
        let mut parser = cell.borrow_mut();
        let mut tape = parser.tape.take().unwrap_or_else(Tape::null).reset();
        let parsed = simd_json::fill_tape(input, &mut parser.buffers, &mut tape);
        // Release the borrow of the thread's parser while `f` runs: it may parse again.
        drop(parser);
        let result = parsed.map(|()| f(tape.as_value()));
        let emptied = tape.reset();
        let mut parser = cell.borrow_mut();
        if input.len() > RETAINED_INPUT_BYTES {
            parser.buffers = Buffers::default();
        } else {
            parser.tape = Some(emptied);
        }
        result
    })
}

/// `value[key]`, or `None` when `value` is not an object or lacks the key.
pub fn get<'t, 'i>(value: Option<Value<'t, 'i>>, key: &str) -> Option<Value<'t, 'i>> {
    value?.get(key)
}

/// The values of `keys` in `value`, found in one pass over its keys (a repeated key: the last
/// one wins, as in every JSON object reader); all `None` when `value` is not an object. Cheaper
/// than a [`get`] per key, each of which walks the keys from the start.
pub fn fields<'t, 'i, const N: usize>(
    value: Option<Value<'t, 'i>>,
    keys: [&str; N],
) -> [Option<Value<'t, 'i>>; N] {
    let mut found = [None; N];
    if let Some(object) = value.and_then(|v| v.as_object()) {
        for (key, field) in object.iter() {
            // Lengths and first bytes tell most keys apart without a call to compare them.
            let first = key.as_bytes().first();
            let wanted = keys
                .iter()
                .position(|k| k.len() == key.len() && k.as_bytes().first() == first && *k == key);
            if let Some(i) = wanted {
                found[i] = Some(field);
            }
        }
    }
    found
}

/// Follows a path of keys.
pub fn path<'t, 'i>(value: Value<'t, 'i>, keys: &[&str]) -> Option<Value<'t, 'i>> {
    keys.iter().try_fold(value, |v, key| v.get(*key))
}

/// An integer from a JSON integer, an integral float, or digits as text.
pub fn integer(value: Option<Value<'_, '_>>) -> Option<i64> {
    let value = value?;
    match value.value_type() {
        ValueType::I64 => value.as_i64(),
        ValueType::U64 => value.as_u64().and_then(|n| i64::try_from(n).ok()),
        ValueType::F64 => value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64),
        ValueType::String => value.as_str().and_then(|s| s.trim().parse().ok()),
        _ => None,
    }
}

/// A scalar as text: strings as they are, integral floats without `.0`, other numbers and
/// booleans in their JSON spelling. Null, objects and arrays give `None`.
pub fn text<'i>(value: Option<Value<'_, 'i>>) -> Option<Cow<'i, str>> {
    let value = value?;
    if let Some(s) = value.into_string() {
        return Some(Cow::Borrowed(s));
    }
    match value.value_type() {
        ValueType::I64 => value.as_i64().map(|n| Cow::Owned(n.to_string())),
        ValueType::U64 => value.as_u64().map(|n| Cow::Owned(n.to_string())),
        ValueType::F64 => value.as_f64().map(|f| {
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Cow::Owned(format!("{}", f as i64))
            } else {
                Cow::Owned(f.to_string())
            }
        }),
        ValueType::Bool => value
            .as_bool()
            .map(|b| Cow::Borrowed(if b { "true" } else { "false" })),
        _ => None,
    }
}

/// A boolean from `true`/`false` or their spelling as text in any case.
/// A boolean read from a JSON boolean, or from the text `true`/`false` in any case; with a
/// note naming `field` when it was text (coerced) or neither (left null).
pub fn boolean_noted(
    field: &str,
    value: Option<Value<'_, '_>>,
    notes: &mut Vec<String>,
) -> Option<bool> {
    let value = value?;
    if let Some(b) = value.as_bool() {
        return Some(b);
    }
    let read = boolean(Some(value));
    match (read, value.as_str()) {
        (Some(b), Some(s)) => notes.push(format!("{field} {s:?} is text; read as {b}")),
        (None, Some(s)) => notes.push(format!("{field} {s:?} is not a boolean; left null")),
        _ if value.is_null() => {}
        _ => notes.push(format!("{field} is not a boolean; left null")),
    }
    read
}

pub fn boolean(value: Option<Value<'_, '_>>) -> Option<bool> {
    let value = value?;
    if let Some(b) = value.as_bool() {
        return Some(b);
    }
    let s = value.as_str()?;
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Writes `value` as compact JSON into `out` (cleared first); `false` for a missing value or
/// JSON `null`, when nothing is written.
pub fn write_json(value: Option<Value<'_, '_>>, out: &mut Vec<u8>) -> bool {
    out.clear();
    match value {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => {
            write_value(v, out);
            true
        }
    }
}

/// Appends `value` as compact JSON: byte for byte what simd-json's writer produces, but a string
/// that needs no escaping (nearly all of them) is copied whole, where simd-json's writer looks
/// at a short string byte by byte; that writer was a tenth of an audit log's decoding time.
pub fn write_value(value: Value<'_, '_>, out: &mut Vec<u8>) {
    if let Some(text) = value.as_str() {
        write_string(text, out);
    } else if let Some(object) = value.as_object() {
        out.push(b'{');
        for (i, (key, item)) in object.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(key, out);
            write_value(item, out);
        }
        out.push(b'}');
    } else if let Some(array) = value.as_array() {
        out.push(b'[');
        for (i, item) in array.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_value(item, out);
        }
        out.push(b']');
    } else {
        // Numbers, booleans and null, as simd-json spells them. Writing into a Vec cannot fail.
        let _ = value.write(out);
    }
}

/// Writes a JSON object made of `entries` into `out` (cleared first); `false` when there are none.
pub fn write_object<'t, 'i>(
    entries: impl IntoIterator<Item = (&'i str, Value<'t, 'i>)>,
    out: &mut Vec<u8>,
) -> bool
where
    'i: 't,
{
    out.clear();
    out.push(b'{');
    let mut any = false;
    for (key, value) in entries {
        if any {
            out.push(b',');
        }
        any = true;
        write_key(key, out);
        write_value(value, out);
    }
    out.push(b'}');
    if !any {
        out.clear();
    }
    any
}

/// Appends the object `value` without the members at `drop` (each a path of keys from it;
/// an object left empty by that goes too); `false`, with nothing appended, when nothing is
/// left. A value that is not an object is appended whole.
pub fn write_pruned(value: Value<'_, '_>, drop: &[&[&str]], out: &mut Vec<u8>) -> bool {
    let Some(object) = value.as_object() else {
        write_value(value, out);
        return true;
    };
    let start = out.len();
    out.push(b'{');
    let mut any = false;
    let mut below: Vec<&[&str]> = Vec::new();
    for (key, member) in object.iter() {
        below.clear();
        let mut dropped = false;
        for path in drop {
            match path.split_first() {
                Some((first, [])) if *first == key => dropped = true,
                Some((first, rest)) if *first == key => below.push(rest),
                _ => {}
            }
        }
        if dropped {
            continue;
        }
        let mark = out.len();
        if any {
            out.push(b',');
        }
        write_key(key, out);
        let kept = if below.is_empty() {
            write_value(member, out);
            true
        } else {
            write_pruned(member, &below, out)
        };
        if kept {
            any = true;
        } else {
            out.truncate(mark);
        }
    }
    out.push(b'}');
    if !any {
        out.truncate(start);
    }
    any
}

/// Writes `"key":`, with JSON escaping.
pub fn write_key(key: &str, out: &mut Vec<u8>) {
    write_string(key, out);
    out.push(b':');
}

/// Writes `text` as a JSON string, escaped as serde_json and simd-json escape.
fn write_string(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    // No early exit: the loop is then vectorised, and strings are short.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// The bytes as text; JSON written by simd-json from parsed input is always UTF-8.
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes the calling thread's parser keeps room for.
    fn retained_tape_nodes() -> usize {
        PARSER.with(|cell| cell.borrow().tape.as_ref().map_or(0, |t| t.0.capacity()))
    }

    /// `{"Records":[{"n":0},{"n":1},...]}` of at least `bytes` bytes.
    fn records_document(bytes: usize) -> Vec<u8> {
        let mut doc = br#"{"Records":["#.to_vec();
        let mut n = 0;
        while doc.len() < bytes {
            doc.extend_from_slice(format!(r#"{{"n":{n}}},"#).as_bytes());
            n += 1;
        }
        doc.extend_from_slice(br#"{"n":-1}]}"#);
        doc
    }

    #[test]
    fn a_thread_keeps_the_tape_of_a_small_document_and_frees_that_of_a_large_one() {
        std::thread::spawn(|| {
            let mut small = records_document(64 << 10);
            with_parsed(&mut small, |_| ()).expect("parses");
            let kept = retained_tape_nodes();
            assert!(
                kept > 10_000,
                "the small document's tape is kept: {kept} nodes"
            );

            let mut large = records_document(RETAINED_INPUT_BYTES + 1);
            let records = with_parsed(&mut large, |root| {
                root.get("Records")
                    .and_then(|r| r.as_array())
                    .map(|a| a.len())
            })
            .expect("parses");
            assert!(records.is_some_and(|n| n > 500_000), "{records:?}");
            let kept = retained_tape_nodes();
            assert_eq!(kept, 0, "the large document's tape is freed");

            with_parsed(&mut small, |_| ()).expect("parses again");
            assert!(retained_tape_nodes() > 10_000);
        })
        .join()
        .expect("the test thread");
    }

    #[test]
    fn accessors_read_what_logs_write() {
        let mut input =
            br#"{"a":"x","n":12.0,"f":1.5,"b":"True","o":{"k":[1,null]},"z":null}"#.to_vec();
        with_parsed(&mut input, |root| {
            let r = Some(root);
            assert_eq!(text(get(r, "a")).as_deref(), Some("x"));
            assert_eq!(text(get(r, "n")).as_deref(), Some("12"));
            assert_eq!(text(get(r, "f")).as_deref(), Some("1.5"));
            assert_eq!(boolean(get(r, "b")), Some(true));
            assert_eq!(text(get(r, "o")), None);
            let mut out = Vec::new();
            assert!(write_json(get(r, "o"), &mut out));
            assert_eq!(utf8(&out), Some(r#"{"k":[1,null]}"#));
            assert!(!write_json(get(r, "z"), &mut out));
            assert!(!write_json(get(r, "missing"), &mut out));
            let entries = root
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| *k == "a" || *k == "o")
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            assert!(write_object(entries, &mut out));
            assert_eq!(utf8(&out), Some(r#"{"a":"x","o":{"k":[1,null]}}"#));
        })
        .expect("parse");
    }

    #[test]
    fn json_is_written_byte_for_byte_as_simd_json_writes_it() {
        let documents = [
            r#"{"plain":"abc","quote":"say \"hi\"","slash":"a\\b","controls":"\n\t\r\b\f\u0001\u001f","unicode":"é😀\u2028","del":"\u007f"}"#,
            r#"{"n":[0,-1,18446744073709551615,-9223372036854775808,1.5,-2.5e-8,1e300],"b":[true,false,null]}"#,
            r#"{"empty":{},"none":[],"deep":[[{"k\"ey":{"x":[1,{"y":"z"}]}}]],"":""}"#,
            r#""only a string""#,
            r#"[{"a":1},"b",2.0]"#,
        ];
        for document in documents {
            let mut input = document.as_bytes().to_vec();
            with_parsed(&mut input, |root| {
                let mut ours = Vec::new();
                assert!(write_json(Some(root), &mut ours));
                let mut theirs = Vec::new();
                root.write(&mut theirs).expect("simd-json writes");
                assert_eq!(utf8(&ours), utf8(&theirs), "{document}");
                let reread: serde_json::Value = serde_json::from_slice(&ours).expect("valid JSON");
                let original: serde_json::Value =
                    serde_json::from_str(document).expect("valid JSON");
                assert_eq!(reread, original, "{document}");
            })
            .expect("parse");
        }
    }

    #[test]
    fn a_nested_parse_inside_the_callback_works() {
        let mut outer = br#"{"a":1}"#.to_vec();
        let mut inner = br#"[2]"#.to_vec();
        let n = with_parsed(&mut outer, |_| {
            with_parsed(&mut inner, |v| v.get_idx(0).and_then(|x| x.as_i64())).expect("inner")
        })
        .expect("outer");
        assert_eq!(n, Some(2));
    }

    #[test]
    fn fields_are_found_in_one_pass_and_a_repeated_key_takes_its_last_value() {
        let mut input = br#"{"b":1,"a":"x","skip":{"a":"nested"},"b":2}"#.to_vec();
        with_parsed(&mut input, |v| {
            let [a, b, missing] = fields(Some(v), ["a", "b", "missing"]);
            assert_eq!(text(a).as_deref(), Some("x"));
            assert_eq!(integer(b), Some(2), "the last b");
            assert!(missing.is_none());
            let [inner] = fields(get(Some(v), "skip"), ["a"]);
            assert_eq!(text(inner).as_deref(), Some("nested"));
            assert!(
                fields(get(Some(v), "a"), ["a"])[0].is_none(),
                "not an object"
            );
            assert!(fields(None, ["a"])[0].is_none());
        })
        .expect("parse");
    }

    #[test]
    fn invalid_json_is_an_error() {
        let mut input = b"{\"a\":".to_vec();
        assert!(with_parsed(&mut input, |_| ()).is_err());
    }
}
