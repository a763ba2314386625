//! The evaluator: an [`Expr`] against a [`Scope`] of contexts.

use super::ExpressionError;
use super::parser::{Comparison, Expr, Function};
use super::value::{Object, Value, eq_ignore_case};
use std::cmp::Ordering;

/// The context names an expression may read.
pub const CONTEXTS: [&str; 11] = [
    "github", "env", "vars", "secrets", "inputs", "job", "steps", "runner", "strategy", "matrix",
    "needs",
];

/// What the status functions answer where an expression is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// `success()`.
    pub success: bool,
    /// `failure()`.
    pub failure: bool,
    /// `cancelled()`.
    pub cancelled: bool,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            success: true,
            failure: false,
            cancelled: false,
        }
    }
}

/// Computes `hashFiles(patterns…)`.
pub type HashFilesFn<'a> = dyn Fn(&[String]) -> Result<String, String> + Send + Sync + 'a;

/// Everything an expression can see.
pub struct Scope<'a> {
    /// The contexts by name (`github`, `env`, …); a missing one reads as an empty object.
    pub contexts: &'a Object,
    /// What the status functions answer.
    pub status: Status,
    /// `hashFiles`, when available here.
    pub hash_files: Option<&'a HashFilesFn<'a>>,
}

impl<'a> Scope<'a> {
    /// A scope over `contexts` with a successful status and no `hashFiles`.
    pub fn new(contexts: &'a Object) -> Self {
        Scope {
            contexts,
            status: Status::default(),
            hash_files: None,
        }
    }
}

/// The result of evaluating a postfix chain: a filter (`.*`) turns the chain into a list that
/// later dereferences map over.
enum Ev {
    One(Value),
    Filtered(Vec<Value>),
}

impl Ev {
    fn into_value(self) -> Value {
        match self {
            Ev::One(v) => v,
            Ev::Filtered(items) => Value::Array(items),
        }
    }
}

fn property(value: &Value, name: &str) -> Value {
    match value {
        Value::Object(o) => o.get(name).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn index(value: &Value, key: &Value) -> Value {
    match (value, key) {
        (Value::Array(items), key) if !matches!(key, Value::String(_)) => {
            let n = key.to_number();
            if n.is_finite() && n >= 0.0 {
                items
                    .get(n.floor() as usize)
                    .cloned()
                    .unwrap_or(Value::Null)
            } else {
                Value::Null
            }
        }
        (Value::Object(o), key) if key.is_primitive() => o
            .get(&key.to_display_string())
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn spread(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => out.extend(items.iter().cloned()),
        Value::Object(o) => out.extend(o.iter().map(|(_, v)| v.clone())),
        _ => {}
    }
}

/// Evaluates `expr` in `scope`.
pub fn evaluate(expr: &Expr, scope: &Scope<'_>) -> Result<Value, ExpressionError> {
    Ok(eval(expr, scope)?.into_value())
}

fn eval(expr: &Expr, scope: &Scope<'_>) -> Result<Ev, ExpressionError> {
    let one = |v| Ok(Ev::One(v));
    match expr {
        Expr::Literal(v) => one(v.clone()),
        Expr::Context(name) => one(scope
            .contexts
            .get(name)
            .cloned()
            .unwrap_or_else(|| Value::Object(Object::new()))),
        Expr::Property(inner, name) => Ok(match eval(inner, scope)? {
            Ev::One(v) => Ev::One(property(&v, name)),
            Ev::Filtered(items) => Ev::Filtered(
                items
                    .iter()
                    .filter_map(|item| match item {
                        Value::Object(o) => o.get(name).cloned(),
                        _ => None,
                    })
                    .collect(),
            ),
        }),
        Expr::Index(inner, key) => {
            let key = evaluate(key, scope)?;
            Ok(match eval(inner, scope)? {
                Ev::One(v) => Ev::One(index(&v, &key)),
                Ev::Filtered(items) => Ev::Filtered(
                    items
                        .iter()
                        .map(|item| index(item, &key))
                        .filter(|v| *v != Value::Null)
                        .collect(),
                ),
            })
        }
        Expr::Filter(inner) => {
            let mut out = Vec::new();
            match eval(inner, scope)? {
                Ev::One(v) => spread(&v, &mut out),
                Ev::Filtered(items) => items.iter().for_each(|i| spread(i, &mut out)),
            }
            Ok(Ev::Filtered(out))
        }
        Expr::Not(inner) => one(Value::Bool(!evaluate(inner, scope)?.truthy())),
        Expr::And(a, b) => {
            let left = evaluate(a, scope)?;
            if !left.truthy() {
                return one(left);
            }
            one(evaluate(b, scope)?)
        }
        Expr::Or(a, b) => {
            let left = evaluate(a, scope)?;
            if left.truthy() {
                return one(left);
            }
            one(evaluate(b, scope)?)
        }
        Expr::Compare(op, a, b) => {
            let (a, b) = (evaluate(a, scope)?, evaluate(b, scope)?);
            let result = match op {
                Comparison::Eq => a.loose_eq(&b),
                Comparison::Ne => !a.loose_eq(&b),
                Comparison::Lt => a.loose_cmp(&b) == Some(Ordering::Less),
                Comparison::Le => matches!(a.loose_cmp(&b), Some(Ordering::Less | Ordering::Equal)),
                Comparison::Gt => a.loose_cmp(&b) == Some(Ordering::Greater),
                Comparison::Ge => {
                    matches!(a.loose_cmp(&b), Some(Ordering::Greater | Ordering::Equal))
                }
            };
            one(Value::Bool(result))
        }
        Expr::Call(f, args) => one(call(*f, args, scope)?),
    }
}

fn call(f: Function, args: &[Expr], scope: &Scope<'_>) -> Result<Value, ExpressionError> {
    let arg = |i: usize| -> Result<Value, ExpressionError> {
        args.get(i)
            .map(|a| evaluate(a, scope))
            .unwrap_or(Ok(Value::Null))
    };
    Ok(match f {
        Function::Success => Value::Bool(scope.status.success),
        Function::Failure => Value::Bool(scope.status.failure),
        Function::Cancelled => Value::Bool(scope.status.cancelled),
        Function::Always => Value::Bool(true),
        Function::Contains => {
            let (search, item) = (arg(0)?, arg(1)?);
            Value::Bool(match &search {
                Value::Array(items) => items.iter().any(|v| v.loose_eq(&item)),
                other => {
                    contains_ignore_case(&other.to_display_string(), &item.to_display_string())
                }
            })
        }
        Function::StartsWith => {
            let (s, prefix) = (arg(0)?.to_display_string(), arg(1)?.to_display_string());
            Value::Bool(
                s.len() >= prefix.len()
                    && s.is_char_boundary(prefix.len())
                    && eq_ignore_case(&s[..prefix.len()], &prefix),
            )
        }
        Function::EndsWith => {
            let (s, suffix) = (arg(0)?.to_display_string(), arg(1)?.to_display_string());
            let cut = s.len().wrapping_sub(suffix.len());
            Value::Bool(
                s.len() >= suffix.len()
                    && s.is_char_boundary(cut)
                    && eq_ignore_case(&s[cut..], &suffix),
            )
        }
        Function::Format => {
            let template = arg(0)?.to_display_string();
            let values = (1..args.len()).map(arg).collect::<Result<Vec<_>, _>>()?;
            Value::String(format(&template, &values)?)
        }
        Function::Join => {
            let separator = if args.len() > 1 {
                arg(1)?.to_display_string()
            } else {
                ",".to_string()
            };
            match arg(0)? {
                Value::Array(items) => Value::String(
                    items
                        .iter()
                        .map(Value::to_display_string)
                        .collect::<Vec<_>>()
                        .join(&separator),
                ),
                Value::Object(_) => Value::String(String::new()),
                other => Value::String(other.to_display_string()),
            }
        }
        Function::ToJson => Value::String(arg(0)?.to_json_pretty()),
        Function::FromJson => {
            let text = arg(0)?.to_display_string();
            Value::parse_json(text.trim()).map_err(|e| ExpressionError {
                message: format!("Error parsing fromJSON: {e}: {text}"),
            })?
        }
        Function::HashFiles => {
            let patterns = (0..args.len())
                .map(|i| arg(i).map(|v| v.to_display_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let hash = scope.hash_files.ok_or_else(|| ExpressionError {
                message: "hashFiles is not available here".to_string(),
            })?;
            Value::String(hash(&patterns).map_err(|message| ExpressionError { message })?)
        }
    })
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// `format('{0} {1}', …)`: `{N}` takes argument N, `{{` and `}}` are literal braces.
pub fn format(template: &str, args: &[Value]) -> Result<String, ExpressionError> {
    let invalid = || ExpressionError {
        message: format!("The following format string is invalid: {template}"),
    };
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut digits = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(d) if d.is_ascii_digit() => digits.push(d),
                        _ => return Err(invalid()),
                    }
                }
                let index: usize = digits.parse().map_err(|_| invalid())?;
                let value = args.get(index).ok_or_else(|| ExpressionError {
                    message: format!(
                        "The following format string references more arguments than were supplied: {template}"
                    ),
                })?;
                out.push_str(&value.to_display_string());
            }
            '}' => return Err(invalid()),
            c => out.push(c),
        }
    }
    Ok(out)
}
