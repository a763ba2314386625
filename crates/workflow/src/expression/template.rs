//! Strings with `${{ }}` inside them, and `if:` conditions.

use super::ExpressionError;
use super::eval::{Scope, evaluate};
use super::parser::{Expr, Function, parse};
use super::value::Value;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Expr(Expr),
}

/// A string with embedded expressions, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Finds the `}}` closing an expression that starts at `from`, skipping quoted strings.
fn closing(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = from;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\'' => quoted = !quoted,
            b'}' if !quoted && b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

impl Template {
    /// Parses `text`, which may hold any number of `${{ }}`.
    pub fn parse(text: &str) -> Result<Template, ExpressionError> {
        let mut segments = Vec::new();
        let mut rest = 0;
        while let Some(found) = text[rest..].find("${{") {
            let start = rest + found;
            if start > rest {
                segments.push(Segment::Text(text[rest..start].to_string()));
            }
            let inner_start = start + 3;
            let end = closing(text, inner_start).ok_or_else(|| ExpressionError {
                message: format!(
                    "An expression was expected to end with '}}}}': {}",
                    &text[start..]
                ),
            })?;
            segments.push(Segment::Expr(parse(text[inner_start..end].trim())?));
            rest = end + 2;
        }
        if rest < text.len() {
            segments.push(Segment::Text(text[rest..].to_string()));
        }
        Ok(Template { segments })
    }

    /// Whether the text holds any expression.
    pub fn has_expressions(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Expr(_)))
    }

    /// Whether any expression reads the named context.
    pub fn reads_context(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Expr(e) if e.reads_context(name)))
    }

    /// The arguments of every `hashFiles(…)` call in the template's expressions.
    pub fn hash_files_calls(&self) -> Vec<&[Expr]> {
        self.segments
            .iter()
            .flat_map(|s| match s {
                Segment::Expr(e) => e.hash_files_calls(),
                Segment::Text(_) => Vec::new(),
            })
            .collect()
    }

    /// The value: a lone `${{ }}` keeps its type (an object, a number…); anything else is the
    /// concatenated string.
    pub fn evaluate(&self, scope: &Scope<'_>) -> Result<Value, ExpressionError> {
        if let [Segment::Expr(e)] = self.segments.as_slice() {
            return evaluate(e, scope);
        }
        self.render(scope).map(Value::String)
    }

    /// The text with every expression replaced by its value as a string.
    pub fn render(&self, scope: &Scope<'_>) -> Result<String, ExpressionError> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Expr(e) => out.push_str(&evaluate(e, scope)?.to_interpolated()),
            }
        }
        Ok(out)
    }

    /// The template as one expression: a lone `${{ }}` is that expression; anything else is
    /// `format()` over the literal parts and the expressions, which is how GitHub reads text
    /// with expressions inside it where an expression is expected.
    fn into_expr(self) -> Expr {
        let mut segments = self.segments;
        if let [Segment::Expr(_)] = segments.as_slice()
            && let Some(Segment::Expr(e)) = segments.pop()
        {
            return e;
        }
        let mut pattern = String::new();
        let mut values = Vec::new();
        for segment in segments {
            match segment {
                Segment::Text(t) => pattern.push_str(&t.replace('{', "{{").replace('}', "}}")),
                Segment::Expr(e) => {
                    pattern.push_str(&format!("{{{}}}", values.len()));
                    values.push(e);
                }
            }
        }
        let mut args = vec![Expr::Literal(Value::String(pattern))];
        args.extend(values);
        Expr::Call(Function::Format, args)
    }
}

/// An `if:` condition, written with or without `${{ }}`: implicitly `success() && (…)` unless it
/// calls a status function, whatever its form. Text mixing literal parts and expressions is the
/// string they make (GitHub's documented pitfall: `${{ a }} == b` is a non-empty string, so
/// only the implicit `success()` can make it false).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    expr: Expr,
}

impl Condition {
    /// Parses an `if:` value; an empty one means `success()`.
    pub fn parse(text: &str) -> Result<Condition, ExpressionError> {
        let t = text.trim();
        let expr = if t.is_empty() {
            Expr::Call(Function::Success, Vec::new())
        } else if t.contains("${{") {
            Template::parse(t)?.into_expr()
        } else {
            parse(t)?
        };
        Ok(Condition {
            expr: if expr.uses_status_function() {
                expr
            } else {
                Expr::And(
                    Box::new(Expr::Call(Function::Success, Vec::new())),
                    Box::new(expr),
                )
            },
        })
    }

    /// The arguments of every `hashFiles(…)` call in the condition.
    pub fn hash_files_calls(&self) -> Vec<&[Expr]> {
        self.expr.hash_files_calls()
    }

    /// Whether the condition holds.
    pub fn holds(&self, scope: &Scope<'_>) -> Result<bool, ExpressionError> {
        Ok(evaluate(&self.expr, scope)?.truthy())
    }
}

#[cfg(test)]
mod tests {
    use super::super::eval::Status;
    use super::super::value::Object;
    use super::*;

    fn ctx() -> Object {
        let mut env = Object::new();
        env.insert("ACT", Value::from("true"));
        let mut matrix = Object::new();
        matrix.insert("node", Value::Number(14.0));
        matrix.insert("os", Value::from("ubuntu"));
        let mut o = Object::new();
        o.insert("env", Value::Object(env));
        o.insert("matrix", Value::Object(matrix));
        o
    }

    #[test]
    fn templates_interpolate_and_keep_lone_types() {
        let c = ctx();
        let s = Scope::new(&c);
        let t = Template::parse("node ${{ matrix.node }} on ${{matrix.os}}!").unwrap();
        assert_eq!(t.render(&s).unwrap(), "node 14 on ubuntu!");
        assert_eq!(
            Template::parse("${{ matrix.node }}")
                .unwrap()
                .evaluate(&s)
                .unwrap(),
            Value::Number(14.0)
        );
        assert!(matches!(
            Template::parse("${{ matrix }}")
                .unwrap()
                .evaluate(&s)
                .unwrap(),
            Value::Object(_)
        ));
        assert_eq!(
            Template::parse("plain").unwrap().evaluate(&s).unwrap(),
            Value::from("plain")
        );
        // A `}}` inside a string literal does not end the expression.
        assert_eq!(
            Template::parse("${{ format('{0}}}', 'x') }}")
                .unwrap()
                .render(&s)
                .unwrap(),
            "x}"
        );
        assert!(Template::parse("${{ matrix.node ").is_err());
    }

    #[test]
    fn conditions_are_implicitly_success_and() {
        let c = ctx();
        let mut s = Scope::new(&c);
        let holds = |text: &str, s: &Scope<'_>| Condition::parse(text).unwrap().holds(s).unwrap();
        assert!(holds("${{ env.ACT }}", &s));
        assert!(!holds("${{ !env.ACT }}", &s));
        assert!(holds("env.ACT", &s));
        assert!(holds("", &s));
        s.status = Status {
            success: false,
            failure: true,
            cancelled: false,
        };
        assert!(!holds("env.ACT", &s));
        assert!(!holds("", &s));
        assert!(holds("always()", &s));
        assert!(holds("failure() && env.ACT", &s));
        assert!(holds("success() || failure()", &s));
        // Mixed text is a non-empty string, but still under the implicit success().
        assert!(!holds("${{ false }} == true", &s));
        assert!(!holds("${{ env.ACT }} ", &s));
        assert!(holds("${{ always() }} && text", &s));
        assert!(holds("${{ failure() }} {braces}", &s));
        s.status = Status::default();
        assert!(holds("${{ false }} == true", &s));
        assert!(holds("{0} ${{ false }}", &s));
        // Nothing but empty values: an empty string, which is false.
        assert!(!holds("${{ env.NONE }}${{ env.NONE }}", &s));
        assert!(holds("${{ env.NONE }}${{ env.ACT }}", &s));
    }

    #[test]
    fn mixed_text_becomes_format() {
        let t = Template::parse("a {x} ${{ env.ACT }} b ${{ matrix.node }}").unwrap();
        let c = ctx();
        let s = Scope::new(&c);
        assert_eq!(
            evaluate(&t.clone().into_expr(), &s).unwrap(),
            Value::from("a {x} true b 14")
        );
        assert_eq!(t.render(&s).unwrap(), "a {x} true b 14");
    }
}
