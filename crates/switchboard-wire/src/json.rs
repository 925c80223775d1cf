//! Typed reads from a request's JSON, failing with the API's kind of message.

use serde_json::{Map, Value};

use crate::WireError;

pub(crate) type Object = Map<String, Value>;

pub(crate) fn object(bytes: &[u8]) -> Result<Object, WireError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(WireError::invalid(
            "The request body must be a JSON object.",
            None,
        )),
        Err(e) => Err(WireError::invalid(
            format!(
                "We could not parse the JSON body of your request. ({e}) The body must be valid JSON."
            ),
            None,
        )),
    }
}

pub(crate) fn type_error(param: &str, expected: &str) -> WireError {
    WireError::invalid(
        format!("Invalid type for '{param}': expected {expected}."),
        Some(param.to_owned()),
    )
}

pub(crate) fn required_str(obj: &Object, key: &str, param: &str) -> Result<String, WireError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(type_error(param, "a string")),
        None => Err(WireError::invalid(
            format!("Missing required parameter: '{param}'."),
            Some(param.to_owned()),
        )),
    }
}

/// [`required_str`], moving the string out of the object (it is left empty).
pub(crate) fn take_required_str(
    obj: &mut Object,
    key: &str,
    param: &str,
) -> Result<String, WireError> {
    match obj.get_mut(key) {
        Some(Value::String(s)) => Ok(std::mem::take(s)),
        Some(_) => Err(type_error(param, "a string")),
        None => Err(WireError::invalid(
            format!("Missing required parameter: '{param}'."),
            Some(param.to_owned()),
        )),
    }
}

/// [`opt_str`], moving the string out of the object (it is left empty).
pub(crate) fn take_opt_str(
    obj: &mut Object,
    key: &str,
    param: &str,
) -> Result<Option<String>, WireError> {
    match obj.get_mut(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(std::mem::take(s))),
        Some(_) => Err(type_error(param, "a string")),
    }
}

pub(crate) fn opt_str(obj: &Object, key: &str, param: &str) -> Result<Option<String>, WireError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(type_error(param, "a string")),
    }
}

pub(crate) fn opt_bool(obj: &Object, key: &str) -> Result<Option<bool>, WireError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(type_error(key, "a boolean")),
    }
}

pub(crate) fn opt_u32(obj: &Object, key: &str) -> Result<Option<u32>, WireError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| type_error(key, "a non-negative integer")),
    }
}

/// A number within `range`, as the API checks it.
pub(crate) fn opt_f32_in(
    obj: &Object,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f32>, WireError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v.as_f64().ok_or_else(|| type_error(key, "a number"))?;
            if !(min..=max).contains(&n) {
                return Err(WireError::invalid(
                    format!("Invalid '{key}': {n} is not between {min} and {max}."),
                    Some(key.to_owned()),
                ));
            }
            Ok(Some(n as f32))
        }
    }
}

/// `stop`: a string or an array of strings.
pub(crate) fn stop_list(value: Option<&Value>, param: &str) -> Result<Vec<String>, WireError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| type_error(param, "a string or an array of strings"))
            })
            .collect(),
        Some(_) => Err(type_error(param, "a string or an array of strings")),
    }
}
