//! JSON documents damaged as documents: a value anywhere replaced by raw JSON text at an edge
//! (numbers past every integer and float type, wrong types, nesting past the parser's limit,
//! invalid escapes), or removed.
#![allow(dead_code)] // each binary uses a different subset

use proptest::prelude::*;
use proptest::sample::Index;

/// JSON text at an edge: numbers beyond every integer and float type, negative counts, wrong
/// types, empty and huge containers, nesting past the parser's depth limit, invalid escapes.
pub fn extreme_json() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("-0.0".to_string()),
        Just("0.5".to_string()),
        Just("1e308".to_string()),
        Just("-1e308".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("4294967296".to_string()),
        Just("\"\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"x\\u0000y\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[0,0,0,0,0,0,0,0]".to_string()),
        Just(format!("\"{}\"", "a".repeat(10_000))),
        Just(format!("{}0{}", "[".repeat(200), "]".repeat(200))),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
    ]
}

/// Every JSON pointer of `value` (the root included), in document order.
pub fn json_pointers(value: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    let key = k.replace('~', "~0").replace('/', "~1");
                    walk(child, format!("{at}/{key}"), out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

/// One change to a JSON document: a value replaced by raw JSON text (which may be invalid), or
/// removed.
#[derive(Clone, Debug)]
pub enum JsonEdit {
    Replace(Index, String),
    Remove(Index),
}

pub fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<Index>(), extreme_json()).prop_map(|(i, t)| JsonEdit::Replace(i, t)),
        1 => any::<Index>().prop_map(JsonEdit::Remove),
    ]
}

/// `text` (a JSON document) with `edits` applied, as text.
pub fn edit_json(text: &str, edits: &[JsonEdit]) -> String {
    edit_json_under(text, "", edits)
}

/// [`edit_json`] confined to the values at or below the JSON pointer `under` (e.g. `/state`).
pub fn edit_json_under(text: &str, under: &str, edits: &[JsonEdit]) -> String {
    const MARK: &str = "\u{1}sparsegrad-fuzz-mark\u{1}";
    let mut value: serde_json::Value = serde_json::from_str(text).expect("a valid seed");
    let mut raw = Vec::new();
    for e in edits {
        let pointers: Vec<String> = json_pointers(&value)
            .into_iter()
            .filter(|p| p.starts_with(under))
            .collect();
        if pointers.is_empty() {
            break;
        }
        match e {
            JsonEdit::Replace(i, t) => {
                let at = &pointers[i.index(pointers.len())];
                *value.pointer_mut(at).unwrap() = format!("{MARK}{}", raw.len()).into();
                raw.push(t.clone());
            }
            JsonEdit::Remove(i) if pointers.iter().any(|p| !p.is_empty()) => {
                let removable: Vec<&String> = pointers.iter().filter(|p| !p.is_empty()).collect();
                let at = removable[i.index(removable.len())];
                let (parent, key) = at.rsplit_once('/').unwrap();
                let key = key.replace("~1", "/").replace("~0", "~");
                match value.pointer_mut(parent).unwrap() {
                    serde_json::Value::Object(map) => {
                        map.remove(&key);
                    }
                    serde_json::Value::Array(items) => {
                        items.remove(key.parse::<usize>().unwrap());
                    }
                    _ => unreachable!("a pointer's parent is a container"),
                }
            }
            JsonEdit::Remove(_) => {}
        }
    }
    let mut out = serde_json::to_string(&value).unwrap();
    for (k, t) in raw.iter().enumerate().rev() {
        out = out.replace(&serde_json::to_string(&format!("{MARK}{k}")).unwrap(), t);
    }
    out
}
