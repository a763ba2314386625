//! The evaluator: an [`Expr`] against a [`Scope`] of contexts.

use super::ExpressionError;
use super::parser::{Comparison, Expr, Function};
use super::value::{Object, Value, eq_ignore_case};
use std::borrow::Cow;
use std::cmp::Ordering;

/// The context names an expression may read.
pub const CONTEXTS: [&str; 12] = [
    "github", "env", "vars", "secrets", "inputs", "job", "steps", "runner", "strategy", "matrix",
    "needs", "jobs",
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

/// A value as evaluation sees it: borrowed from the contexts where it comes from them, so that
/// an object or array keeps its identity (GitHub compares those by reference), or computed.
type Val<'v> = Cow<'v, Value>;

const NULL: Val<'static> = Cow::Owned(Value::Null);

/// The result of evaluating a postfix chain: a filter (`.*`) turns the chain into a list (a new
/// array of the values it picked) that later dereferences map over.
enum Ev<'v> {
    One(Val<'v>),
    Filtered(Vec<Val<'v>>),
}

impl<'v> Ev<'v> {
    fn into_val(self) -> Val<'v> {
        match self {
            Ev::One(v) => v,
            Ev::Filtered(items) => Cow::Owned(Value::Array(
                items.into_iter().map(Cow::into_owned).collect(),
            )),
        }
    }
}

/// The part of `value` that `pick` selects, borrowed when `value` is.
fn select<'v>(value: Val<'v>, pick: impl Fn(&Value) -> Option<&Value>) -> Option<Val<'v>> {
    match value {
        Cow::Borrowed(v) => pick(v).map(Cow::Borrowed),
        Cow::Owned(v) => pick(&v).cloned().map(Cow::Owned),
    }
}

fn property<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Object(o) => o.get(name),
        _ => None,
    }
}

fn index<'a>(value: &'a Value, key: &Value) -> Option<&'a Value> {
    match (value, key) {
        (Value::Array(items), key) if !matches!(key, Value::String(_)) => {
            let n = key.to_number();
            if n.is_finite() && n >= 0.0 {
                items.get(n.floor() as usize)
            } else {
                None
            }
        }
        (Value::Object(o), key) if key.is_primitive() => o.get(&key.to_display_string()),
        _ => None,
    }
}

/// The items of an array or the values of an object, borrowed when `value` is.
fn spread<'v>(value: Val<'v>, out: &mut Vec<Val<'v>>) {
    match value {
        Cow::Borrowed(Value::Array(items)) => out.extend(items.iter().map(Cow::Borrowed)),
        Cow::Borrowed(Value::Object(o)) => out.extend(o.iter().map(|(_, v)| Cow::Borrowed(v))),
        Cow::Owned(Value::Array(items)) => out.extend(items.into_iter().map(Cow::Owned)),
        Cow::Owned(Value::Object(o)) => out.extend(o.iter().map(|(_, v)| Cow::Owned(v.clone()))),
        _ => {}
    }
}

/// `==`: loose equality, where two arrays or objects are equal only when they are the same one
/// (`github.event == github.event`). A borrowed value is its place in the contexts and a
/// computed one its own, so the same address means the same instance.
fn equal(a: &Value, b: &Value) -> bool {
    (!a.is_primitive() && std::ptr::eq(a, b)) || a.loose_eq(b)
}

/// Evaluates `expr` in `scope`.
pub fn evaluate(expr: &Expr, scope: &Scope<'_>) -> Result<Value, ExpressionError> {
    Ok(eval(expr, scope)?.into_val().into_owned())
}

fn value<'v>(expr: &Expr, scope: &Scope<'v>) -> Result<Val<'v>, ExpressionError> {
    Ok(eval(expr, scope)?.into_val())
}

fn eval<'v>(expr: &Expr, scope: &Scope<'v>) -> Result<Ev<'v>, ExpressionError> {
    let one = |v| Ok(Ev::One(v));
    match expr {
        Expr::Literal(v) => one(Cow::Owned(v.clone())),
        Expr::Context(name) => one(scope
            .contexts
            .get(name)
            .map_or_else(|| Cow::Owned(Value::Object(Object::new())), Cow::Borrowed)),
        Expr::Property(inner, name) => Ok(match eval(inner, scope)? {
            Ev::One(v) => Ev::One(select(v, |v| property(v, name)).unwrap_or(NULL)),
            Ev::Filtered(items) => Ev::Filtered(
                items
                    .into_iter()
                    .filter_map(|item| select(item, |v| property(v, name)))
                    .collect(),
            ),
        }),
        Expr::Index(inner, key) => {
            let key = value(key, scope)?;
            Ok(match eval(inner, scope)? {
                Ev::One(v) => Ev::One(select(v, |v| index(v, &key)).unwrap_or(NULL)),
                Ev::Filtered(items) => Ev::Filtered(
                    items
                        .into_iter()
                        .filter_map(|item| select(item, |v| index(v, &key)))
                        .filter(|v| **v != Value::Null)
                        .collect(),
                ),
            })
        }
        Expr::Filter(inner) => {
            let mut out = Vec::new();
            match eval(inner, scope)? {
                Ev::One(v) => spread(v, &mut out),
                Ev::Filtered(items) => items.into_iter().for_each(|i| spread(i, &mut out)),
            }
            Ok(Ev::Filtered(out))
        }
        Expr::Not(inner) => one(Cow::Owned(Value::Bool(!value(inner, scope)?.truthy()))),
        Expr::And(a, b) => {
            let left = value(a, scope)?;
            if !left.truthy() {
                return one(left);
            }
            one(value(b, scope)?)
        }
        Expr::Or(a, b) => {
            let left = value(a, scope)?;
            if left.truthy() {
                return one(left);
            }
            one(value(b, scope)?)
        }
        Expr::Compare(op, a, b) => {
            let (a, b) = (value(a, scope)?, value(b, scope)?);
            let result = match op {
                Comparison::Eq => equal(&a, &b),
                Comparison::Ne => !equal(&a, &b),
                Comparison::Lt => a.loose_cmp(&b) == Some(Ordering::Less),
                Comparison::Le => matches!(a.loose_cmp(&b), Some(Ordering::Less | Ordering::Equal)),
                Comparison::Gt => a.loose_cmp(&b) == Some(Ordering::Greater),
                Comparison::Ge => {
                    matches!(a.loose_cmp(&b), Some(Ordering::Greater | Ordering::Equal))
                }
            };
            one(Cow::Owned(Value::Bool(result)))
        }
        Expr::Call(f, args) => one(Cow::Owned(call(*f, args, scope)?)),
    }
}

/// The patterns of `hashFiles(args…)` in `scope`: each argument as a string.
pub fn hash_files_patterns(
    args: &[Expr],
    scope: &Scope<'_>,
) -> Result<Vec<String>, ExpressionError> {
    args.iter()
        .map(|a| value(a, scope).map(|v| v.to_display_string()))
        .collect()
}

/// `startsWith`/`endsWith`/`contains` on strings: both operands must be primitives (GitHub's
/// functions answer false for an array or object rather than searching the word `Object`).
fn primitive_strings(a: &Value, b: &Value) -> Option<(String, String)> {
    (a.is_primitive() && b.is_primitive()).then(|| (a.to_display_string(), b.to_display_string()))
}

fn call(f: Function, args: &[Expr], scope: &Scope<'_>) -> Result<Value, ExpressionError> {
    let arg = |i: usize| match args.get(i) {
        Some(a) => value(a, scope),
        None => Ok(NULL),
    };
    Ok(match f {
        Function::Success => Value::Bool(scope.status.success),
        Function::Failure => Value::Bool(scope.status.failure),
        Function::Cancelled => Value::Bool(scope.status.cancelled),
        Function::Always => Value::Bool(true),
        Function::Contains => {
            // A filtered list keeps its items' identity, so it is searched as it is.
            let search = match args.first() {
                Some(a) => eval(a, scope)?,
                None => Ev::One(NULL),
            };
            let item = arg(1)?;
            Value::Bool(match &search {
                Ev::Filtered(items) => items.iter().any(|v| equal(&item, v)),
                Ev::One(search) => match &**search {
                    Value::Array(items) => items.iter().any(|v| equal(&item, v)),
                    other => primitive_strings(other, &item)
                        .is_some_and(|(s, i)| contains_ignore_case(&s, &i)),
                },
            })
        }
        Function::StartsWith => {
            let (s, prefix) = (arg(0)?, arg(1)?);
            Value::Bool(primitive_strings(&s, &prefix).is_some_and(|(s, prefix)| {
                s.len() >= prefix.len()
                    && s.is_char_boundary(prefix.len())
                    && eq_ignore_case(&s[..prefix.len()], &prefix)
            }))
        }
        Function::EndsWith => {
            let (s, suffix) = (arg(0)?, arg(1)?);
            Value::Bool(primitive_strings(&s, &suffix).is_some_and(|(s, suffix)| {
                let cut = s.len().wrapping_sub(suffix.len());
                s.len() >= suffix.len()
                    && s.is_char_boundary(cut)
                    && eq_ignore_case(&s[cut..], &suffix)
            }))
        }
        Function::Format => {
            let template = arg(0)?.to_display_string();
            let values = (1..args.len())
                .map(|i| arg(i).map(Cow::into_owned))
                .collect::<Result<Vec<_>, _>>()?;
            Value::String(format(&template, &values)?)
        }
        Function::Join => {
            let separator = if args.len() > 1 {
                arg(1)?.to_display_string()
            } else {
                ",".to_string()
            };
            match &*arg(0)? {
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
            let patterns = hash_files_patterns(args, scope)?;
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
