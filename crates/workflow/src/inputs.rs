//! TEMPORARY: replaced by the typed-inputs module.
#![allow(missing_docs)]
use crate::expression::{Object, Scope, Template, Value};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(String);

pub fn resolve_call_inputs(
    declared: &Object,
    given: Vec<(String, Value)>,
) -> Result<Object, InputError> {
    let mut out = Object::new();
    let empty = Object::new();
    for (name, spec) in declared.iter() {
        let spec = spec.as_object().cloned().unwrap_or_default();
        let ty = spec
            .get("type")
            .map(Value::to_display_string)
            .unwrap_or_else(|| "string".into());
        let value = match given.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some((_, v)) => v.clone(),
            None => match spec.get("default") {
                Some(Value::String(t)) => Template::parse(t)
                    .and_then(|t| t.evaluate(&Scope::new(&empty)))
                    .map_err(|e| InputError(e.message))?,
                Some(v) => v.clone(),
                None => Value::Null,
            },
        };
        let value = match (ty.as_str(), value) {
            ("boolean", Value::String(s)) => Value::Bool(s.eq_ignore_ascii_case("true")),
            ("number", Value::String(s)) => Value::Number(s.parse().unwrap_or(0.0)),
            (_, v) => v,
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}
