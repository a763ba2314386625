//! Strategy matrices, expanded as GitHub documents ("Running variations of jobs in a workflow"):
//! the cartesian product of the vectors in key order, minus the combinations an `exclude` entry
//! matches, then each `include` entry either extends every original combination it does not
//! contradict (without overwriting original values; values added by an earlier include may be
//! overwritten) or, when it extends none, becomes a combination of its own.

use crate::expression::{Object, Scope, Template, Value};

/// GitHub's limit on the combinations of one matrix.
pub const MAX_COMBINATIONS: usize = 256;

/// A matrix that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid matrix: {0}")]
pub struct MatrixError(pub String);

/// Replaces every string holding `${{ }}` inside `value` by what it evaluates to (a lone
/// expression keeps its type, so `${{ fromJSON(...) }}` can supply a whole vector). As act
/// does: a mapping key may be an expression too, a `${{ insert }}` key merges its mapping into
/// the one holding it, and a list item that evaluates to a list is spliced into its list.
pub fn resolve_expressions(value: &Value, scope: &Scope<'_>) -> Result<Value, MatrixError> {
    let evaluate = |text: &str| {
        Template::parse(text)
            .and_then(|t| t.evaluate(scope))
            .map_err(|e| MatrixError(e.message))
    };
    Ok(match value {
        Value::String(s) if s.contains("${{") => evaluate(s)?,
        Value::Array(items) => {
            let mut resolved = Vec::with_capacity(items.len());
            for item in items {
                match (item, resolve_expressions(item, scope)?) {
                    (Value::String(_), Value::Array(spliced)) => resolved.extend(spliced),
                    (_, value) => resolved.push(value),
                }
            }
            Value::Array(resolved)
        }
        Value::Object(o) => {
            let mut resolved = Object::new();
            for (key, item) in o.iter() {
                let item = resolve_expressions(item, scope)?;
                if is_insert(key) {
                    let Value::Object(inserted) = item else {
                        return Err(MatrixError(format!(
                            "`${{{{ insert }}}}` needs a mapping, not a {}",
                            item.kind()
                        )));
                    };
                    for (key, value) in inserted.iter() {
                        resolved.insert(key.clone(), value.clone());
                    }
                } else if key.contains("${{") {
                    resolved.insert(evaluate(key)?.to_string(), item);
                } else {
                    resolved.insert(key.clone(), item);
                }
            }
            Value::Object(resolved)
        }
        other => other.clone(),
    })
}

/// Whether a mapping key is the `${{ insert }}` directive.
fn is_insert(key: &str) -> bool {
    key.trim()
        .strip_prefix("${{")
        .and_then(|rest| rest.strip_suffix("}}"))
        .is_some_and(|inner| inner.trim() == "insert")
}

fn entries(value: &Value, what: &str) -> Result<Vec<Object>, MatrixError> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(o) => Ok(o.clone()),
                other => Err(MatrixError(format!(
                    "each `{what}` entry must be a mapping, not a {}",
                    other.kind()
                ))),
            })
            .collect(),
        Value::Object(o) => Ok(vec![o.clone()]),
        Value::Null => Ok(Vec::new()),
        other => Err(MatrixError(format!(
            "`{what}` must be a list of mappings, not a {}",
            other.kind()
        ))),
    }
}

/// Expands `matrix` (already free of expressions) into its combinations. A matrix with no
/// combination yields one empty combination, so the job still runs once (as act does).
pub fn expand(matrix: &Value) -> Result<Vec<Object>, MatrixError> {
    let Value::Object(matrix) = matrix else {
        return Err(MatrixError(format!(
            "expected a mapping of vectors, got a {}",
            matrix.kind()
        )));
    };
    let mut vectors: Vec<(&String, &Vec<Value>)> = Vec::new();
    let (mut include, mut exclude) = (Vec::new(), Vec::new());
    for (key, value) in matrix.iter() {
        match key.as_str() {
            "include" => include = entries(value, "include")?,
            "exclude" => exclude = entries(value, "exclude")?,
            _ => match value {
                Value::Array(items) if items.is_empty() => {
                    return Err(MatrixError(format!(
                        "matrix vector '{key}' does not contain any values"
                    )));
                }
                Value::Array(items) => vectors.push((key, items)),
                other => {
                    return Err(MatrixError(format!(
                        "matrix vector '{key}' must be a list, not a {}",
                        other.kind()
                    )));
                }
            },
        }
    }
    let mut combos: Vec<Object> = Vec::new();
    if !vectors.is_empty() {
        combos.push(Object::new());
        for (key, values) in &vectors {
            let mut next = Vec::with_capacity(combos.len() * values.len());
            for combo in &combos {
                for v in *values {
                    let mut c = combo.clone();
                    c.insert((*key).clone(), v.clone());
                    next.push(c);
                }
            }
            combos = next;
            if combos.len() > MAX_COMBINATIONS * 16 {
                return Err(MatrixError(format!(
                    "more than {MAX_COMBINATIONS} combinations"
                )));
            }
        }
    }
    combos.retain(|c| {
        !exclude
            .iter()
            .any(|e| e.iter().all(|(k, v)| c.get(k) == Some(v)))
    });
    let original_keys: Vec<&String> = vectors.iter().map(|(k, _)| *k).collect();
    let originals = combos.len();
    for entry in include {
        let mut extended = false;
        for combo in combos.iter_mut().take(originals) {
            let fits = entry
                .iter()
                .all(|(k, v)| !original_keys.contains(&k) || combo.get(k) == Some(v));
            if fits {
                for (k, v) in entry.iter() {
                    if !original_keys.contains(&k) {
                        combo.insert(k.clone(), v.clone());
                    }
                }
                extended = true;
            }
        }
        if !extended {
            combos.push(entry);
        }
    }
    if combos.len() > MAX_COMBINATIONS {
        return Err(MatrixError(format!(
            "{} combinations, more than GitHub's limit of {MAX_COMBINATIONS}",
            combos.len()
        )));
    }
    if combos.is_empty() {
        combos.push(Object::new());
    }
    Ok(combos)
}

/// The name shown for one combination of a job, as GitHub shows it: the job's `name` (or id)
/// followed by the combination's values in parentheses, unless the name already uses `matrix`.
pub fn display_name(base: &str, name_uses_matrix: bool, combo: &Object) -> String {
    if combo.is_empty() || name_uses_matrix {
        return base.to_string();
    }
    let values: Vec<String> = combo
        .iter()
        .map(|(_, v)| match v {
            Value::Array(_) | Value::Object(_) => serde_json::to_string(v).unwrap_or_default(),
            other => other.to_display_string(),
        })
        .collect();
    format!("{base} ({})", values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: &str) -> Value {
        Value::parse_json(json).unwrap()
    }

    fn combos(json: &str) -> Vec<String> {
        expand(&m(json))
            .unwrap()
            .iter()
            .map(|c| serde_json::to_string(&Value::Object(c.clone())).unwrap())
            .collect()
    }

    #[test]
    fn cartesian_product_in_key_order() {
        assert_eq!(
            combos(r#"{"os": ["a", "b"], "node": [1, 2]}"#),
            [
                r#"{"os":"a","node":1}"#,
                r#"{"os":"a","node":2}"#,
                r#"{"os":"b","node":1}"#,
                r#"{"os":"b","node":2}"#
            ]
        );
    }

    #[test]
    fn the_documented_include_example() {
        // From GitHub's "Expanding or adding matrix configurations".
        let got = combos(
            r#"{"fruit": ["apple", "pear"], "animal": ["cat", "dog"],
                "include": [
                  {"color": "green"},
                  {"color": "pink", "animal": "cat"},
                  {"fruit": "apple", "shape": "circle"},
                  {"fruit": "banana"},
                  {"fruit": "banana", "animal": "cat"}]}"#,
        );
        assert_eq!(
            got,
            [
                r#"{"fruit":"apple","animal":"cat","color":"pink","shape":"circle"}"#,
                r#"{"fruit":"apple","animal":"dog","color":"green","shape":"circle"}"#,
                r#"{"fruit":"pear","animal":"cat","color":"pink"}"#,
                r#"{"fruit":"pear","animal":"dog","color":"green"}"#,
                r#"{"fruit":"banana"}"#,
                r#"{"fruit":"banana","animal":"cat"}"#,
            ]
        );
    }

    #[test]
    fn the_documented_exclude_example() {
        // From GitHub's "Excluding matrix configurations": 12 combinations minus 2.
        let got = combos(
            r#"{"os": ["macos-latest", "windows-latest"], "version": [12, 14, 16],
                "environment": ["staging", "production"],
                "exclude": [
                  {"os": "macos-latest", "version": 12, "environment": "production"},
                  {"os": "windows-latest", "version": 16}]}"#,
        );
        assert_eq!(got.len(), 9);
        assert!(
            !got.iter()
                .any(|c| c.contains("windows") && c.contains(":16"))
        );
    }

    #[test]
    fn include_only_and_include_extending_by_original_key() {
        assert_eq!(
            combos(r#"{"include": [{"def": "val"}]}"#),
            [r#"{"def":"val"}"#]
        );
        assert_eq!(
            combos(r#"{"x": [0], "y": [0], "z": [0], "include": [{"def": "val", "z": 0}]}"#),
            [r#"{"x":0,"y":0,"z":0,"def":"val"}"#]
        );
        // act's matrix-include-exclude case: the include matches no original combination.
        let got = combos(
            r#"{"os": ["ubuntu-18.04", "macos-latest"], "node": [4, 6, 8, 10],
                "exclude": [{"os": "macos-latest", "node": 4}],
                "include": [{"os": "ubuntu-16.04", "node": 10}]}"#,
        );
        assert_eq!(got.len(), 8);
        assert_eq!(got[7], r#"{"os":"ubuntu-16.04","node":10}"#);
    }

    #[test]
    fn empty_and_invalid_matrices() {
        assert_eq!(combos("{}"), ["{}"]);
        assert!(expand(&m(r#"{"os": []}"#)).is_err());
        assert!(expand(&m(r#"{"os": "x"}"#)).is_err());
        assert!(expand(&m(r#"{"include": ["x"]}"#)).is_err());
        assert!(expand(&m("[1]")).is_err());
        let big = r#"{"a": [1,2,3,4,5,6,7,8,9,10], "b": [1,2,3,4,5,6,7,8,9,10], "c": [1,2,3]}"#;
        assert!(expand(&m(big)).unwrap_err().0.contains("256"));
    }

    #[test]
    fn names_carry_the_values() {
        let combo = expand(&m(r#"{"os": ["ubuntu"], "node": [14], "cfg": [{"a": 1}]}"#)).unwrap();
        assert_eq!(
            display_name("test", false, &combo[0]),
            r#"test (ubuntu, 14, {"a":1})"#
        );
        assert_eq!(
            display_name("PHP ubuntu 14", true, &combo[0]),
            "PHP ubuntu 14"
        );
        assert_eq!(display_name("test", false, &Object::new()), "test");
    }

    #[test]
    fn expressions_inside_the_matrix_are_resolved() {
        let ctx = Object::new();
        let scope = Scope::new(&ctx);
        let v = resolve_expressions(
            &m(r#"{"os": "${{ fromJSON('[\"a\", \"b\"]') }}", "n": ["${{ 1 }}"]}"#),
            &scope,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"os":["a","b"],"n":[1]}"#
        );
    }

    #[test]
    fn keys_inserts_and_spliced_lists_as_act_reads_them() {
        let ctx = Object::new();
        let scope = Scope::new(&ctx);
        let v = resolve_expressions(
            &m(r#"{
                "${{ 'k' }}": [
                    {"env": {"a": 1, "${{ insert }}": {"b": 2}, "${{insert}}": "${{ fromJSON('{\"c\": 3}') }}"}},
                    "${{ fromJSON('[4, 5]') }}"
                ]
            }"#),
            &scope,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"k":[{"env":{"a":1,"b":2,"c":3}},4,5]}"#
        );
        let refused = resolve_expressions(&m(r#"{"${{ insert }}": [1]}"#), &scope);
        assert!(refused.unwrap_err().0.contains("needs a mapping"));
    }

    #[test]
    fn json_from_expressions_expands_like_any_matrix() {
        let ctx = Object::new();
        let scope = Scope::new(&ctx);
        let expanded = |json: &str| {
            let value = resolve_expressions(&m(json), &scope).unwrap();
            expand(&value)
                .unwrap()
                .iter()
                .map(|c| serde_json::to_string(&Value::Object(c.clone())).unwrap())
                .collect::<Vec<_>>()
        };
        // Objects as the values of a dimension.
        assert_eq!(
            expanded(r#"{"cfg": "${{ fromJSON('[{\"v\": 1}, {\"v\": 2}]') }}"}"#),
            [r#"{"cfg":{"v":1}}"#, r#"{"cfg":{"v":2}}"#]
        );
        // `include` entries from JSON extend the combinations they match, or stand alone.
        assert_eq!(
            expanded(
                r#"{"os": ["a", "b"], "include": "${{ fromJSON('[{\"os\": \"a\", \"x\": 1}, {\"os\": \"c\"}]') }}"}"#
            ),
            [r#"{"os":"a","x":1}"#, r#"{"os":"b"}"#, r#"{"os":"c"}"#]
        );
        // A whole matrix from JSON: its keys come from the expression.
        assert_eq!(
            expanded(r#""${{ fromJSON('{\"k\": [1, 2], \"exclude\": [{\"k\": 2}]}') }}""#),
            [r#"{"k":1}"#]
        );
    }
}
