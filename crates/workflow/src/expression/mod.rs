//! GitHub Actions expressions: `${{ … }}` templates, `if:` conditions, and the language inside
//! them (literals, operators, property access, filters, functions), evaluated with GitHub's
//! documented semantics.

mod eval;
mod lexer;
mod parser;
mod template;
mod value;

pub use eval::{CONTEXTS, HashFilesFn, Scope, Status, evaluate, hash_files_patterns};
pub use parser::{Expr, Function, parse};
pub use template::{Condition, Template};
pub use value::{Object, Value, format_number, parse_number};

use std::fmt;

/// An expression that cannot be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExpressionError {
    /// What went wrong, in GitHub's wording where it has one.
    pub message: String,
}

impl ExpressionError {
    fn new(src: &str, message: impl Into<String>) -> Self {
        ExpressionError {
            message: format!("{}. Located in expression: {src}", message.into()),
        }
    }

    fn at(src: &str, at: usize, message: impl Into<String>) -> Self {
        ExpressionError {
            message: format!(
                "{}. Located at position {} within expression: {src}",
                message.into(),
                at + 1
            ),
        }
    }
}

impl fmt::Display for ExpressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Interpolates every `${{ }}` in `text` (a convenience over [`Template`]).
pub fn interpolate(text: &str, scope: &Scope<'_>) -> Result<String, ExpressionError> {
    Template::parse(text)?.render(scope)
}

/// Evaluates `text` keeping the type of a lone `${{ }}` (a convenience over [`Template`]).
pub fn evaluate_value(text: &str, scope: &Scope<'_>) -> Result<Value, ExpressionError> {
    Template::parse(text)?.evaluate(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contexts() -> Object {
        let json = r#"{
            "github": {"event_name": "push", "ref": "refs/heads/main", "repository": "octo/hello",
                       "event": {"commits": [{"id": "a", "message": "fix"}, {"id": "b"}],
                                 "labels": [{"name": "bug"}, {"name": "ci"}]}},
            "env": {"ACT": "true", "EMPTY": "", "NUM": "0x10"},
            "vars": {}, "secrets": {"TOKEN": "s3cret"}, "inputs": {},
            "job": {"status": "success"},
            "steps": {"first": {"outputs": {"v": "1"}, "outcome": "success", "conclusion": "success"}},
            "runner": {"os": "Linux"}, "strategy": {}, "needs": {},
            "matrix": {"os": "ubuntu-latest", "node": 14,
                       "fruits": [{"name": "apple"}, {"name": "orange"}, {"name": "pear"}]}
        }"#;
        match Value::parse_json(json).unwrap() {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn eval_str(src: &str) -> Value {
        let ctx = contexts();
        let scope = Scope::new(&ctx);
        evaluate(&parse(src).unwrap(), &scope).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn literals_from_the_docs() {
        assert_eq!(eval_str("null"), Value::Null);
        assert_eq!(eval_str("false"), Value::Bool(false));
        assert_eq!(eval_str("711"), Value::Number(711.0));
        assert_eq!(eval_str("-9.2"), Value::Number(-9.2));
        assert_eq!(eval_str("0xff"), Value::Number(255.0));
        assert_eq!(eval_str("-2.99e-2"), Value::Number(-0.0299));
        assert_eq!(
            eval_str("'It''s open source!'"),
            Value::from("It's open source!")
        );
    }

    #[test]
    fn logical_operators_return_operands_and_short_circuit() {
        assert_eq!(eval_str("'a' && 'b'"), Value::from("b"));
        assert_eq!(eval_str("'' && 'b'"), Value::from(""));
        assert_eq!(eval_str("'' || 'b'"), Value::from("b"));
        assert_eq!(eval_str("'a' || 'b'"), Value::from("a"));
        assert_eq!(eval_str("matrix.os && '0' || '1'"), Value::from("0"));
        assert_eq!(eval_str("matrix.missing && '0' || '1'"), Value::from("1"));
        assert_eq!(eval_str("!env.ACT"), Value::Bool(false));
        assert_eq!(eval_str("!env.EMPTY"), Value::Bool(true));
        // The right side is not evaluated: fromJSON would fail on it.
        assert_eq!(eval_str("false && fromJSON('{')"), Value::Bool(false));
        assert_eq!(eval_str("true || fromJSON('{')"), Value::Bool(true));
    }

    #[test]
    fn comparisons_coerce_like_github() {
        for (src, want) in [
            ("github.event_name == 'PUSH'", true),
            ("github.event_name != 'push'", false),
            ("null == 0", true),
            ("true == 1", true),
            ("'' == 0", true),
            ("' 0xff ' == 255", true),
            ("env.NUM == 16", true),
            ("'abc' < 'ABD'", true),
            ("1 < 2", true),
            ("2 <= 2", true),
            ("'b' > 'a'", true),
            ("NaN == NaN", false),
            ("NaN < 1", false),
            ("'a' == 0", false),
            ("matrix.node == '14'", true),
            ("matrix.node >= 14", true),
            ("false < true", true),
            // Arrays and objects are equal when they are the same one.
            ("github.event == github.event", true),
            ("github.event == github['EVENT']", true),
            ("github.event != github.event", false),
            ("github.event.commits[0] == github.event.commits[0]", true),
            ("github.event.commits[0] == github.event.commits[1]", false),
            ("(github.event || 1) == github.event", true),
            ("github.event == github", false),
            ("fromJSON('{}') == fromJSON('{}')", false),
            ("fromJSON('[1]') != fromJSON('[1]')", true),
            ("matrix.fruits.* == matrix.fruits.*", false),
        ] {
            assert_eq!(eval_str(src), Value::Bool(want), "{src}");
        }
    }

    #[test]
    fn property_access_and_filters() {
        assert_eq!(eval_str("github['event_name']"), Value::from("push"));
        assert_eq!(eval_str("GITHUB.EVENT_NAME"), Value::from("push"));
        assert_eq!(eval_str("github.event.commits[1].id"), Value::from("b"));
        assert_eq!(eval_str("github.event.commits[5]"), Value::Null);
        assert_eq!(eval_str("github.nothing.deeper"), Value::Null);
        assert_eq!(
            eval_str("matrix.fruits.*.name"),
            Value::Array(vec!["apple".into(), "orange".into(), "pear".into()])
        );
        assert_eq!(
            eval_str("github.event.commits.*.message"),
            Value::Array(vec!["fix".into()])
        );
        assert_eq!(eval_str("steps.first.outputs.v"), Value::from("1"));
        assert_eq!(
            eval_str("contains(github.event.labels.*.name, 'bug')"),
            Value::Bool(true)
        );
    }

    #[test]
    fn string_functions_ignore_case() {
        for (src, want) in [
            ("contains('Hello world', 'llo')", true),
            ("contains('Hello world', 'LLO')", true),
            (
                "contains(fromJSON('[\"push\", \"pull_request\"]'), github.event_name)",
                true,
            ),
            ("contains(fromJSON('[1, 2]'), '2')", true),
            ("startsWith('Hello world', 'he')", true),
            ("startsWith('Hello', 'Hello world')", false),
            ("endsWith('Hello world', 'LD')", true),
            ("endsWith('Hello world', 'x')", false),
            (
                "contains(github.event.commits, github.event.commits[1])",
                true,
            ),
            (
                "contains(github.event.commits.*, github.event.commits[1])",
                true,
            ),
            (
                "contains(github.event.commits, fromJSON('{\"id\": \"b\"}'))",
                false,
            ),
            // An array or object is not searched as the word `Object` or `Array`.
            ("contains(github.event, 'obj')", false),
            ("contains(github.event, 'commits')", false),
            ("contains('Array', fromJSON('[]'))", false),
            ("startsWith(github.event, 'Object')", false),
            ("endsWith(matrix.fruits, 'ay')", false),
            ("startsWith(matrix.node, 1)", true),
            ("endsWith(true, 'UE')", true),
        ] {
            assert_eq!(eval_str(src), Value::Bool(want), "{src}");
        }
    }

    #[test]
    fn format_join_and_json() {
        assert_eq!(
            eval_str("format('Hello {0} {1} {2}', 'Mona', 'the', 'Octocat')"),
            Value::from("Hello Mona the Octocat")
        );
        assert_eq!(
            eval_str("format('{{Hello {0} {1} {2}!}}', 'Mona', 'the', 'Octocat')"),
            Value::from("{Hello Mona the Octocat!}")
        );
        assert_eq!(eval_str("format('{0}', 1.0)"), Value::from("1"));
        assert_eq!(eval_str("format('{0}', null)"), Value::from(""));
        assert_eq!(
            eval_str("join(github.event.commits.*.id, ', ')"),
            Value::from("a, b")
        );
        assert_eq!(
            eval_str("join(fromJSON('[1, true]'))"),
            Value::from("1,true")
        );
        assert_eq!(eval_str("join('abc')"), Value::from("abc"));
        assert_eq!(
            eval_str("toJSON(fromJSON('{\"b\": 1, \"a\": [2]}'))"),
            Value::from("{\n  \"b\": 1,\n  \"a\": [\n    2\n  ]\n}")
        );
        assert_eq!(eval_str("fromJSON('true')"), Value::Bool(true));
        assert_eq!(eval_str("fromJSON(' 42 ')"), Value::Number(42.0));
        assert_eq!(eval_str("toJSON('x')"), Value::from("\"x\""));
    }

    #[test]
    fn evaluation_errors() {
        let ctx = contexts();
        let scope = Scope::new(&ctx);
        for (src, want) in [
            ("format('{0', 1)", "format string is invalid"),
            ("format('{1}', 1)", "references more arguments"),
            ("fromJSON('{')", "Error parsing fromJSON"),
            ("hashFiles('**/x')", "hashFiles is not available"),
        ] {
            let err = evaluate(&parse(src).unwrap(), &scope).unwrap_err();
            assert!(err.message.contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn status_functions_read_the_scope() {
        let ctx = contexts();
        let mut scope = Scope::new(&ctx);
        scope.status = Status {
            success: false,
            failure: true,
            cancelled: false,
        };
        let run = |src: &str, scope: &Scope<'_>| evaluate(&parse(src).unwrap(), scope).unwrap();
        assert_eq!(run("success()", &scope), Value::Bool(false));
        assert_eq!(run("failure()", &scope), Value::Bool(true));
        assert_eq!(run("always()", &scope), Value::Bool(true));
        assert_eq!(run("cancelled()", &scope), Value::Bool(false));
    }

    #[test]
    fn hash_files_calls_the_scope_function() {
        let ctx = contexts();
        let f = |patterns: &[String]| Ok(format!("hash of {}", patterns.join("+")));
        let scope = Scope {
            contexts: &ctx,
            status: Status::default(),
            hash_files: Some(&f),
        };
        assert_eq!(
            evaluate(&parse("hashFiles('a', 'b')").unwrap(), &scope).unwrap(),
            Value::from("hash of a+b")
        );
    }
}
