//! Expressions: any text must parse as a `${{ }}` template and as an `if:` condition, and
//! evaluate against a fixed set of contexts, to a value or an `ExpressionError`, never a panic.
#![no_main]

use azlin_workflow::expression::{Condition, Object, Scope, Status, Template, Value};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Contexts shaped like a job's: nested objects, arrays for `.*` filters, numbers and strings.
const CONTEXTS: &str = r#"{
    "github": {"event_name": "push", "ref": "refs/heads/main", "repository": "octo/hello",
               "event": {"commits": [{"id": "a", "message": "fix"}, {"id": "b"}],
                         "labels": [{"name": "bug"}, {"name": "ci"}]}},
    "env": {"ACT": "true", "EMPTY": "", "NUM": "0x10"},
    "vars": {}, "secrets": {"TOKEN": "s3cret"}, "inputs": {"n": 3, "flag": true},
    "job": {"status": "success"},
    "steps": {"first": {"outputs": {"v": "1"}, "outcome": "success", "conclusion": "success"}},
    "runner": {"os": "Linux"}, "strategy": {"fail-fast": true}, "needs": {},
    "matrix": {"os": "ubuntu-latest", "node": 14,
               "fruits": [{"name": "apple"}, {"name": "orange"}, {"name": "pear"}]}
}"#;

fn contexts() -> &'static Object {
    static CELL: OnceLock<Object> = OnceLock::new();
    CELL.get_or_init(|| match Value::parse_json(CONTEXTS) {
        Ok(Value::Object(o)) => o,
        _ => panic!("the fixed contexts are an object"),
    })
}

fn hash_files(patterns: &[String]) -> Result<String, String> {
    if patterns.iter().any(|p| p.is_empty()) {
        Err("empty pattern".into())
    } else {
        Ok(format!("{:064x}", patterns.len()))
    }
}

fuzz_target!(|text: &str| {
    let ctx = contexts();
    let ok = Scope {
        contexts: ctx,
        status: Status::default(),
        hash_files: Some(&hash_files),
    };
    let failed = Scope {
        contexts: ctx,
        status: Status {
            success: false,
            failure: true,
            cancelled: false,
        },
        hash_files: None,
    };
    if let Ok(template) = Template::parse(text) {
        let _ = template.evaluate(&ok);
        let _ = template.render(&failed);
        let _ = template.hash_files_calls();
        let _ = template.reads_context("matrix");
    }
    if let Ok(condition) = Condition::parse(text) {
        let _ = condition.holds(&ok);
        let _ = condition.holds(&failed);
    }
});
