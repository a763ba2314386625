//! TEMPORARY stub, replaced by the real manifest parser.
#![allow(missing_docs)]
use crate::model::{Step, Workflow, WorkflowError};
use std::path::{Path, PathBuf};

pub struct ActionInput {
    pub default: Option<String>,
    pub required: bool,
}
pub struct ActionOutput {
    pub value: Option<String>,
}
pub enum NodeVersion {
    Node,
}
pub enum Runs {
    Composite {
        steps: Vec<Step>,
    },
    Node {
        using: NodeVersion,
        main: String,
        pre: Option<String>,
        pre_if: Option<String>,
        post: Option<String>,
        post_if: Option<String>,
    },
    Docker {
        image: String,
    },
}
pub struct ActionManifest {
    pub inputs: Vec<(String, ActionInput)>,
    pub outputs: Vec<(String, ActionOutput)>,
    pub runs: Runs,
    pub path: PathBuf,
}

fn err(path: &Path, m: &str) -> WorkflowError {
    WorkflowError::Invalid {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: m.to_string(),
    }
}

fn scalar(v: &yaml_serde::Value) -> Option<String> {
    match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ActionManifest {
    pub fn load(dir: &Path) -> Result<ActionManifest, WorkflowError> {
        for name in ["action.yml", "action.yaml"] {
            let p = dir.join(name);
            if let Ok(text) = std::fs::read_to_string(&p) {
                return ActionManifest::parse(&p, &text);
            }
        }
        Err(err(dir, "Can't find 'action.yml' or 'action.yaml'"))
    }

    pub fn parse(path: &Path, text: &str) -> Result<ActionManifest, WorkflowError> {
        let v: yaml_serde::Value =
            yaml_serde::from_str(text).map_err(|e| err(path, &e.to_string()))?;
        let map = |v: Option<&yaml_serde::Value>| -> Vec<(String, yaml_serde::Value)> {
            match v {
                Some(yaml_serde::Value::Mapping(m)) => m
                    .iter()
                    .filter_map(|(k, v)| Some((scalar(k)?, v.clone())))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let inputs = map(v.get("inputs"))
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    ActionInput {
                        default: v.get("default").and_then(scalar),
                        required: false,
                    },
                )
            })
            .collect();
        let outputs = map(v.get("outputs"))
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    ActionOutput {
                        value: v.get("value").and_then(scalar),
                    },
                )
            })
            .collect();
        let runs = v.get("runs").ok_or_else(|| err(path, "missing runs"))?;
        let s = |k: &str| runs.get(k).and_then(scalar);
        let using = s("using").ok_or_else(|| err(path, "missing runs.using"))?;
        let runs = match using.to_ascii_lowercase().as_str() {
            "composite" => {
                let steps = runs
                    .get("steps")
                    .ok_or_else(|| err(path, "missing runs.steps"))?;
                let text = format!(
                    "on: push\njobs:\n  x:\n    runs-on: x\n    steps: {}\n",
                    serde_json::to_string(steps).map_err(|e| err(path, &e.to_string()))?
                );
                let wf = Workflow::parse(path, &text)?;
                Runs::Composite {
                    steps: wf.jobs[0].steps.clone(),
                }
            }
            "node12" | "node16" | "node20" | "node24" => Runs::Node {
                using: NodeVersion::Node,
                main: s("main").ok_or_else(|| err(path, "missing main"))?,
                pre: s("pre"),
                pre_if: s("pre-if"),
                post: s("post"),
                post_if: s("post-if"),
            },
            "docker" => Runs::Docker {
                image: s("image").unwrap_or_default(),
            },
            other => return Err(err(path, &format!("unknown using {other}"))),
        };
        Ok(ActionManifest {
            inputs,
            outputs,
            runs,
            path: path.to_path_buf(),
        })
    }
}
