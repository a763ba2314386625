//! Workflow inputs: the values a `workflow_dispatch` run (`--input`, the event payload) or a
//! reusable-workflow call gives, checked against the inputs the workflow declares and typed by
//! their declaration (`boolean`, `number`, `choice`, `string`), with declared defaults.

use crate::expression::{Object, Scope, Template, Value, parse_number};
use crate::model::Workflow;
use std::collections::BTreeMap;

/// Inputs that do not fit the workflow's declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A value for an input the workflow does not declare.
    #[error("the workflow declares no input '{name}' ({})", declared_list(.declared))]
    Undeclared {
        /// The input given.
        name: String,
        /// The inputs the workflow declares.
        declared: Vec<String>,
    },
    /// A required input without a value or a default.
    #[error("input '{name}' is required: give it a value")]
    Missing {
        /// The input.
        name: String,
    },
    /// A value that is not of the input's type.
    #[error("input '{name}' is a {kind}: '{value}' is not one")]
    WrongType {
        /// The input.
        name: String,
        /// Its declared type.
        kind: &'static str,
        /// The value given.
        value: String,
    },
    /// A `choice` value that is not one of the options.
    #[error("input '{name}' must be one of {}: not '{value}'", options.join(", "))]
    NotAnOption {
        /// The input.
        name: String,
        /// The value given.
        value: String,
        /// The declared options.
        options: Vec<String>,
    },
    /// A declared type GitHub does not have.
    #[error(
        "input '{name}' has unknown type '{kind}' (known: string, boolean, number, choice, environment)"
    )]
    UnknownType {
        /// The input.
        name: String,
        /// The type declared.
        kind: String,
    },
    /// A default whose expression cannot be evaluated.
    #[error("the default of input '{name}': {message}")]
    Default {
        /// The input.
        name: String,
        /// Why it cannot be evaluated.
        message: String,
    },
}

fn declared_list(declared: &[String]) -> String {
    if declared.is_empty() {
        "it declares no inputs".to_string()
    } else {
        format!("declared: {}", declared.join(", "))
    }
}

/// The inputs of one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunInputs {
    /// The `inputs` context.
    pub context: Object,
    /// For `workflow_dispatch`, the payload's `inputs` (`github.event.inputs`): every value
    /// as a string, as GitHub sends them.
    pub event_inputs: Option<Object>,
}

/// The inputs of a run of `workflow` triggered by `event` with `payload` (`github.event`) and
/// the `--input` values `flags` (which win over the payload's `inputs`).
///
/// For `workflow_dispatch` and `workflow_call`, that event's declaration applies: every value
/// must be declared and of its type, and required inputs need a value. For other events the
/// defaults of both declarations apply, the payload's `inputs` are taken as they are, and
/// `flags` must still name declared inputs.
pub fn resolve_run_inputs(
    workflow: &Workflow,
    event: &str,
    flags: &BTreeMap<String, String>,
    payload: &Value,
) -> Result<RunInputs, InputError> {
    let payload_inputs: Vec<(String, Value)> = payload
        .as_object()
        .and_then(|p| p.get("inputs"))
        .and_then(Value::as_object)
        .map(|given| given.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let flags = flags.iter().map(|(k, v)| (k.clone(), Value::string(v)));
    if matches!(event, "workflow_dispatch" | "workflow_call") {
        let declared = workflow
            .event_setting(event, "inputs")
            .cloned()
            .unwrap_or_default();
        let mut given = payload_inputs;
        given.extend(flags);
        let context = resolve_call_inputs(&declared, given)?;
        let event_inputs = (event == "workflow_dispatch").then(|| {
            context
                .iter()
                .map(|(k, v)| (k.clone(), Value::string(v.to_display_string())))
                .collect()
        });
        return Ok(RunInputs {
            context,
            event_inputs,
        });
    }
    let mut declared = Object::new();
    for event in ["workflow_dispatch", "workflow_call"] {
        for (name, spec) in workflow
            .event_setting(event, "inputs")
            .into_iter()
            .flat_map(Object::iter)
        {
            if !declared.contains_key(name) {
                declared.insert(name.clone(), spec.clone());
            }
        }
    }
    let mut context = Object::new();
    for (name, spec) in declared.iter() {
        let default = match field(spec, "default") {
            Some(default) => typed(name, spec, default_value(name, default)?)?,
            None => Value::Null,
        };
        context.insert(name.clone(), default);
    }
    for (name, value) in payload_inputs {
        context.insert(name, value);
    }
    for (name, value) in flags {
        let (name, spec) = lookup(&declared, &name)?;
        let value = typed(&name, &spec, value)?;
        context.insert(name, value);
    }
    Ok(RunInputs {
        context,
        event_inputs: None,
    })
}

/// The `inputs` context of a workflow whose `declared` inputs (the `inputs` mapping under
/// `workflow_dispatch` or `workflow_call`) are given the evaluated values `given` (later
/// values of one name win): defaults for the rest, every value converted to its type.
pub fn resolve_call_inputs(
    declared: &Object,
    given: Vec<(String, Value)>,
) -> Result<Object, InputError> {
    let mut values = Object::new();
    for (name, value) in given {
        let (name, spec) = lookup(declared, &name)?;
        let value = typed(&name, &spec, value)?;
        values.insert(name, value);
    }
    let mut context = Object::new();
    for (name, spec) in declared.iter() {
        let value = match (values.get(name), field(spec, "default")) {
            (Some(value), _) => value.clone(),
            (None, Some(default)) => typed(name, spec, default_value(name, default)?)?,
            (None, None) if field(spec, "required").is_some_and(is_true) => {
                return Err(InputError::Missing { name: name.clone() });
            }
            (None, None) if kind(name, spec)? == Kind::Boolean => Value::Bool(false),
            (None, None) => Value::string(""),
        };
        context.insert(name.clone(), value);
    }
    Ok(context)
}

fn field<'v>(spec: &'v Value, key: &str) -> Option<&'v Value> {
    spec.as_object()?.get(key).filter(|v| **v != Value::Null)
}

fn is_true(value: &Value) -> bool {
    value.to_flag().unwrap_or(false)
}

/// The declared name and declaration of `name` (matched ignoring case, as GitHub does).
fn lookup(declared: &Object, name: &str) -> Result<(String, Value), InputError> {
    declared
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or_else(|| InputError::Undeclared {
            name: name.to_string(),
            declared: declared.keys().cloned().collect(),
        })
}

/// A default, with an expression in it evaluated (no context is available to it).
fn default_value(name: &str, default: &Value) -> Result<Value, InputError> {
    let Value::String(text) = default else {
        return Ok(default.clone());
    };
    let fail = |e: crate::expression::ExpressionError| InputError::Default {
        name: name.to_string(),
        message: e.message,
    };
    let contexts = Object::new();
    Template::parse(text)
        .and_then(|t| t.evaluate(&Scope::new(&contexts)))
        .map_err(fail)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Boolean,
    Number,
    Choice,
}

fn kind(name: &str, spec: &Value) -> Result<Kind, InputError> {
    let declared = field(spec, "type").map(Value::to_display_string);
    match declared.as_deref() {
        None | Some("string" | "environment") => Ok(Kind::String),
        Some("boolean") => Ok(Kind::Boolean),
        Some("number") => Ok(Kind::Number),
        Some("choice") => Ok(Kind::Choice),
        Some(other) => Err(InputError::UnknownType {
            name: name.to_string(),
            kind: other.to_string(),
        }),
    }
}

/// `value` converted to the declared type of input `name`.
fn typed(name: &str, spec: &Value, value: Value) -> Result<Value, InputError> {
    let wrong = |kind: &'static str, value: &Value| InputError::WrongType {
        name: name.to_string(),
        kind,
        value: value.to_display_string(),
    };
    match kind(name, spec)? {
        Kind::Boolean => match &value {
            Value::Bool(_) => Ok(value),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong("boolean", &value)),
        },
        Kind::Number => match &value {
            Value::Number(_) => Ok(value),
            Value::String(s) if !s.trim().is_empty() => parse_number(s)
                .filter(|n| !n.is_nan())
                .map(Value::Number)
                .ok_or_else(|| wrong("number", &value)),
            _ => Err(wrong("number", &value)),
        },
        Kind::Choice => {
            let text = value.to_display_string();
            let options: Vec<String> = match field(spec, "options") {
                Some(Value::Array(options)) => {
                    options.iter().map(Value::to_display_string).collect()
                }
                _ => Vec::new(),
            };
            if value.is_primitive() && options.contains(&text) {
                Ok(Value::String(text))
            } else {
                Err(InputError::NotAnOption {
                    name: name.to_string(),
                    value: text,
                    options,
                })
            }
        }
        Kind::String if value.is_primitive() => Ok(Value::String(value.to_display_string())),
        Kind::String => Err(wrong("string", &value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const WORKFLOW: &str = r#"
on:
  workflow_dispatch:
    inputs:
      name:
        description: who
        default: world
      flag:
        type: boolean
        default: ${{ 1 == 1 }}
      count:
        type: number
        default: "${{ 1 }}"
      level:
        type: choice
        options: [low, high]
        default: low
      needed:
        required: true
  workflow_call:
    inputs:
      other:
        type: string
        default: o
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo
"#;

    fn workflow() -> Workflow {
        Workflow::parse(Path::new("w.yml"), WORKFLOW).unwrap()
    }

    fn flags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn payload(json: &str) -> Value {
        Value::parse_json(json).unwrap()
    }

    fn dispatch(given: &[(&str, &str)]) -> Result<RunInputs, InputError> {
        resolve_run_inputs(
            &workflow(),
            "workflow_dispatch",
            &flags(given),
            &payload("{}"),
        )
    }

    #[test]
    fn dispatch_inputs_are_typed_with_defaults() {
        let run = dispatch(&[("needed", "x"), ("flag", "FALSE")]).unwrap();
        let c = &run.context;
        assert_eq!(c.get("name"), Some(&Value::string("world")));
        assert_eq!(c.get("flag"), Some(&Value::Bool(false)));
        assert_eq!(c.get("count"), Some(&Value::Number(1.0)));
        assert_eq!(c.get("level"), Some(&Value::string("low")));
        assert_eq!(c.get("needed"), Some(&Value::string("x")));
        assert!(!c.contains_key("other"));
        let event = run.event_inputs.unwrap();
        assert_eq!(event.get("flag"), Some(&Value::string("false")));
        assert_eq!(event.get("count"), Some(&Value::string("1")));

        let run = dispatch(&[("needed", "x"), ("count", "2.5"), ("level", "high")]).unwrap();
        assert_eq!(run.context.get("flag"), Some(&Value::Bool(true)));
        assert_eq!(run.context.get("count"), Some(&Value::Number(2.5)));
        assert_eq!(run.context.get("level"), Some(&Value::string("high")));
    }

    #[test]
    fn flags_win_over_the_payload() {
        let given = payload(r#"{"inputs": {"needed": "from-payload", "name": "p", "flag": true}}"#);
        let run = resolve_run_inputs(
            &workflow(),
            "workflow_dispatch",
            &flags(&[("name", "flag")]),
            &given,
        )
        .unwrap();
        assert_eq!(run.context.get("name"), Some(&Value::string("flag")));
        assert_eq!(
            run.context.get("needed"),
            Some(&Value::string("from-payload"))
        );
        assert_eq!(run.context.get("flag"), Some(&Value::Bool(true)));
    }

    #[test]
    fn bad_values_are_refused_naming_the_input() {
        let err = dispatch(&[("needed", "x"), ("nope", "1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the workflow declares no input 'nope' (declared: name, flag, count, level, needed)"
        );
        assert!(
            matches!(dispatch(&[]).unwrap_err(), InputError::Missing { name } if name == "needed")
        );
        let err = dispatch(&[("needed", "x"), ("flag", "yes")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'flag' is a boolean: 'yes' is not one"
        );
        let err = dispatch(&[("needed", "x"), ("count", "many")]).unwrap_err();
        assert!(
            matches!(err, InputError::WrongType { kind: "number", .. }),
            "{err}"
        );
        let err = dispatch(&[("needed", "x"), ("level", "mid")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'level' must be one of low, high: not 'mid'"
        );
    }

    #[test]
    fn a_workflow_without_inputs_says_so() {
        let bare = Workflow::parse(
            Path::new("b.yml"),
            "on: workflow_dispatch\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n",
        )
        .unwrap();
        let err = resolve_run_inputs(
            &bare,
            "workflow_dispatch",
            &flags(&[("x", "1")]),
            &payload("{}"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the workflow declares no input 'x' (it declares no inputs)"
        );
    }

    #[test]
    fn other_events_take_both_declarations_defaults() {
        let run = resolve_run_inputs(
            &workflow(),
            "push",
            &flags(&[("flag", "false")]),
            &payload(r#"{"inputs": {"extra": "kept"}}"#),
        )
        .unwrap();
        assert_eq!(run.context.get("name"), Some(&Value::string("world")));
        assert_eq!(run.context.get("other"), Some(&Value::string("o")));
        assert_eq!(run.context.get("needed"), Some(&Value::Null));
        assert_eq!(run.context.get("flag"), Some(&Value::Bool(false)));
        assert_eq!(run.context.get("extra"), Some(&Value::string("kept")));
        assert_eq!(run.event_inputs, None);
        let err = resolve_run_inputs(&workflow(), "push", &flags(&[("x", "1")]), &payload("{}"))
            .unwrap_err();
        assert!(matches!(err, InputError::Undeclared { .. }), "{err}");
    }

    #[test]
    fn call_inputs_convert_evaluated_values() {
        let declared = payload(
            r#"{"b": {"type": "boolean"}, "n": {"type": "number", "required": true},
                "s": {"type": "string", "default": "d"}}"#,
        );
        let declared = declared.as_object().unwrap();
        let given = |pairs: Vec<(&str, Value)>| {
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<Vec<_>>()
        };
        let out = resolve_call_inputs(
            declared,
            given(vec![
                ("B", Value::string("true")),
                ("n", Value::string("1")),
            ]),
        )
        .unwrap();
        assert_eq!(out.get("b"), Some(&Value::Bool(true)));
        assert_eq!(out.get("n"), Some(&Value::Number(1.0)));
        assert_eq!(out.get("s"), Some(&Value::string("d")));
        let out = resolve_call_inputs(declared, given(vec![("n", Value::Number(3.0))])).unwrap();
        assert_eq!(out.get("b"), Some(&Value::Bool(false)));
        let err = resolve_call_inputs(
            declared,
            given(vec![("n", Value::Number(1.0)), ("b", Value::Number(1.0))]),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                InputError::WrongType {
                    kind: "boolean",
                    ..
                }
            ),
            "{err}"
        );
        let err = resolve_call_inputs(declared, given(vec![("n", Value::Bool(true))])).unwrap_err();
        assert!(
            matches!(err, InputError::WrongType { kind: "number", .. }),
            "{err}"
        );
        let err = resolve_call_inputs(declared, Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "input 'n' is required: give it a value");
    }
}
