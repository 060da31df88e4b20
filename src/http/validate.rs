//! Edge validation: every string a request carries is checked before anything reaches storage,
//! and a violation is a `400` that names the field. PostgreSQL cannot store a NUL byte in text
//! (and refuses it inside `jsonb`), and an over-long value can overflow an index entry; since
//! group commit puts several callers in one statement, either would otherwise fail innocent
//! callers too. docs/contract.md#limits lists the limits.

use serde_json::Value;

use super::error::ApiError;

/// Agent and instance ids (the reference's limit for agent ids).
pub const MAX_ID_BYTES: usize = 253;
/// Capabilities, function names, tags, versions, event types, submitters.
pub const MAX_NAME_BYTES: usize = 255;
/// Free text: progress messages, errors, reasons.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// `value` when it has no NUL byte and at most `max` bytes; else a 400 naming `field`.
pub fn bounded<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    if value.contains('\0') {
        return Err(nul_in(field));
    }
    if value.len() > max {
        return Err(ApiError::BadRequest(format!(
            "{field}: longer than {max} bytes ({} bytes)",
            value.len()
        )));
    }
    Ok(value)
}

/// Like [`bounded`], for an optional field.
pub fn bounded_opt<'a>(
    field: &str,
    value: Option<&'a str>,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    value.map(|v| bounded(field, v, max)).transpose()
}

fn nul_in(field: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: NUL bytes are not allowed"))
}

/// Refuses a JSON body that holds a NUL anywhere (in a key or a string, at any depth). JSON can
/// only carry one escaped, so the bytes are scanned for `\u0000` first and the document is
/// walked (to name the field) only when one is there: the hot paths pay one scan.
pub fn no_nul_in_json(body: &[u8]) -> Result<(), ApiError> {
    if !has_escaped_nul(body) {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    match nul_path(&value, String::new()) {
        Some(path) => Err(nul_in(if path.is_empty() { "body" } else { &path })),
        None => Ok(()),
    }
}

/// Whether the text holds `\u0000` as an escape (not as `\\u0000`, an escaped backslash
/// followed by the letters).
fn has_escaped_nul(body: &[u8]) -> bool {
    body.windows(6).enumerate().any(|(at, window)| {
        window.eq_ignore_ascii_case(b"\\u0000")
            && body[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

/// The path (`a.b[2]`) of the first key or string that holds a NUL.
fn nul_path(value: &Value, path: String) -> Option<String> {
    let join = |key: &str| match path.is_empty() {
        true => key.to_owned(),
        false => format!("{path}.{key}"),
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| match key.contains('\0') {
            true => Some(join(&key.replace('\0', "\\u0000"))),
            false => nul_path(item, join(key)),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> Option<String> {
        no_nul_in_json(body.as_bytes()).err().map(|e| e.to_string())
    }

    #[test]
    fn a_nul_anywhere_in_a_body_is_named() {
        assert_eq!(refused(r#"{"a": "x"}"#), None);
        assert_eq!(
            refused(r#"{"a": "x\\u0000"}"#),
            None,
            "an escaped backslash"
        );
        assert_eq!(
            refused(r#"{"instance_id": "evil\u0000"}"#).as_deref(),
            Some("instance_id: NUL bytes are not allowed")
        );
        assert_eq!(
            refused(r#"{"p": {"deep": [1, "\u0000"]}}"#).as_deref(),
            Some("p.deep[1]: NUL bytes are not allowed")
        );
        assert_eq!(
            refused(r#"{"recv_cursor": {"k\u0000": 1}}"#).as_deref(),
            Some("recv_cursor.k\\u0000: NUL bytes are not allowed")
        );
        assert_eq!(
            refused(r#"{"a": "\\\u0000"}"#).as_deref(),
            Some("a: NUL bytes are not allowed"),
            "a backslash, then a NUL"
        );
    }

    #[test]
    fn strings_are_bounded() {
        assert!(bounded("capability", "c", MAX_NAME_BYTES).is_ok());
        let long = "c".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            bounded("capability", &long, MAX_NAME_BYTES)
                .unwrap_err()
                .to_string(),
            "capability: longer than 255 bytes (256 bytes)"
        );
        assert!(bounded("capability", "a\0b", MAX_NAME_BYTES).is_err());
    }
}
