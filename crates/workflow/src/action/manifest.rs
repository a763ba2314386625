//! An action's metadata file (`action.yml` or `action.yaml`) parsed into a typed
//! [`ActionManifest`]: its inputs, its outputs and how it runs (composite steps, a Node script or
//! a container image). Errors name the file and the line like the workflow parser's, and
//! composite steps are built by that same parser, so they are checked the same way.
//!
//! Unknown top-level keys (`author`, `branding` and whatever else real actions carry) and unknown
//! keys of an input or output are ignored, as GitHub's runner ignores them; `runs` is strict,
//! as GitHub's schema is.

use crate::model::locate::Seg;
use crate::model::shape::{Ordered, RawStep, Text};
use crate::model::{self, Builder, Step, StepAction, WorkflowError, text, yaml_error};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The file names GitHub looks for in an action's folder, in its order.
const FILE_NAMES: [&str; 2] = ["action.yml", "action.yaml"];

/// An action folder whose manifest cannot be found, read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestLoadError {
    /// The folder has neither `action.yml` nor `action.yaml`.
    #[error("Can't find 'action.yml' or 'action.yaml' under '{}'", dir.display())]
    Missing {
        /// The action's folder.
        dir: PathBuf,
    },
    /// The file exists but cannot be read (permissions, not UTF-8…).
    #[error("{}: cannot read the action: {source}", file.display())]
    Read {
        /// The manifest file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid action manifest.
    #[error(transparent)]
    Invalid(#[from] WorkflowError),
}

/// A parsed action metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionManifest {
    /// `name`.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `inputs` in file order.
    pub inputs: Vec<(String, ActionInput)>,
    /// `outputs` in file order.
    pub outputs: Vec<(String, ActionOutput)>,
    /// `runs`.
    pub runs: Runs,
    /// The file, for messages.
    pub path: PathBuf,
}

/// One of `inputs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionInput {
    /// `default` as text (numbers and booleans spelled out); it may hold `${{ }}`, evaluated when
    /// the action runs.
    pub default: Option<String>,
    /// `required` (false when absent).
    pub required: bool,
    /// `deprecationMessage`.
    pub deprecation_message: Option<String>,
}

/// One of `outputs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionOutput {
    /// `value`: for a composite action, the template that gives the output (Node and container
    /// actions set their outputs themselves and have none).
    pub value: Option<String>,
}

/// `runs`: how the action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// `using: composite`: steps run like a job's.
    Composite {
        /// `steps`.
        steps: Vec<Step>,
    },
    /// `using: node*`: a JavaScript file run by Node.
    Node {
        /// The Node version of `using`.
        using: NodeVersion,
        /// `main`: the script, relative to the action's folder.
        main: String,
        /// `pre`: a script run at the start of the job.
        pre: Option<String>,
        /// `pre-if`; GitHub's default when absent is `always()`.
        pre_if: Option<String>,
        /// `post`: a script run at the end of the job.
        post: Option<String>,
        /// `post-if`; GitHub's default when absent is `always()`.
        post_if: Option<String>,
    },
    /// `using: docker`: a container. Its other settings (`args`, `entrypoint`, `env`, the
    /// `pre-`/`post-` ones) are accepted and not kept.
    Docker {
        /// `image`: `Dockerfile`, a path to one, or `docker://<image>`.
        image: String,
    },
}

/// The Node version a JavaScript action runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeVersion {
    /// `node12`.
    Node12,
    /// `node16`.
    Node16,
    /// `node20`.
    Node20,
    /// `node24`.
    Node24,
}

impl NodeVersion {
    const ALL: [NodeVersion; 4] = [Self::Node12, Self::Node16, Self::Node20, Self::Node24];

    /// The `using` value, e.g. `node20`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node12 => "node12",
            Self::Node16 => "node16",
            Self::Node20 => "node20",
            Self::Node24 => "node24",
        }
    }
}

/// The kind of action `runs.using` names.
#[derive(Debug, Clone, Copy)]
enum Using {
    Composite,
    Node(NodeVersion),
    Docker,
}

impl Using {
    /// The `using` values GitHub accepts, for messages.
    const ALLOWED: &'static str = "composite, node12, node16, node20, node24 or docker";

    /// `value`, compared without case as GitHub does.
    fn parse(value: &str) -> Option<Using> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("composite") {
            return Some(Using::Composite);
        }
        if value.eq_ignore_ascii_case("docker") {
            return Some(Using::Docker);
        }
        NodeVersion::ALL
            .into_iter()
            .find(|v| value.eq_ignore_ascii_case(v.as_str()))
            .map(Using::Node)
    }

    /// The keys of `runs` (besides `using`) that this kind takes.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Using::Composite => &["steps"],
            Using::Node(_) => &["main", "pre", "pre-if", "post", "post-if"],
            Using::Docker => &[
                "image",
                "env",
                "entrypoint",
                "args",
                "pre-entrypoint",
                "post-entrypoint",
                "pre-if",
                "post-if",
            ],
        }
    }
}

/// The file as serde sees it; unknown keys are ignored.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a mapping with `runs`")]
struct RawManifest {
    name: Option<Text>,
    description: Option<Text>,
    inputs: Option<Ordered<Option<RawInput>>>,
    outputs: Option<Ordered<Option<RawOutput>>>,
    runs: RawRuns,
}

/// `inputs.<name>`; unknown keys (`description`…) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping of `default`, `required`, `description`…")]
struct RawInput {
    default: Option<Text>,
    required: Option<Text>,
    #[serde(rename = "deprecationMessage")]
    deprecation_message: Option<Text>,
}

/// `outputs.<name>`; unknown keys (`description`…) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping of `value`, `description`")]
struct RawOutput {
    value: Option<Text>,
}

/// `runs`: the keys of every kind; [`Using::keys`] says which one takes which.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a mapping with `using`"
)]
struct RawRuns {
    using: Option<Text>,
    main: Option<Text>,
    pre: Option<Text>,
    pre_if: Option<Text>,
    post: Option<Text>,
    post_if: Option<Text>,
    steps: Option<Vec<RawStep>>,
    image: Option<Text>,
    env: Option<IgnoredAny>,
    entrypoint: Option<IgnoredAny>,
    args: Option<IgnoredAny>,
    pre_entrypoint: Option<IgnoredAny>,
    post_entrypoint: Option<IgnoredAny>,
}

impl ActionManifest {
    /// Reads the manifest of the action in `dir`: `action.yml`, else `action.yaml`.
    pub fn load(dir: &Path) -> Result<ActionManifest, ManifestLoadError> {
        for name in FILE_NAMES {
            let file = dir.join(name);
            match std::fs::read_to_string(&file) {
                Ok(text) => return Ok(ActionManifest::parse(&file, &text)?),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(ManifestLoadError::Read { file, source }),
            }
        }
        Err(ManifestLoadError::Missing {
            dir: dir.to_path_buf(),
        })
    }

    /// Parses `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<ActionManifest, WorkflowError> {
        let raw: RawManifest = yaml_serde::from_str(text).map_err(|e| {
            yaml_error(
                path,
                &e,
                &[("runs", "missing `runs` (`using` and what the action runs)")],
            )
        })?;
        let b = Builder { path, text };
        let RawManifest {
            name,
            description,
            inputs,
            outputs,
            runs,
        } = raw;
        Ok(ActionManifest {
            name: model::text(name),
            description: model::text(description),
            inputs: inputs_of(&b, inputs.unwrap_or_default())?,
            outputs: outputs_of(&b, outputs.unwrap_or_default())?,
            runs: runs_of(&b, runs)?,
            path: path.to_path_buf(),
        })
    }
}

fn inputs_of(
    b: &Builder<'_>,
    Ordered(raw): Ordered<Option<RawInput>>,
) -> Result<Vec<(String, ActionInput)>, WorkflowError> {
    let mut inputs = Vec::new();
    for (name, raw) in raw {
        let RawInput {
            default,
            required,
            deprecation_message,
        } = raw.unwrap_or_default();
        let at = |key| [Seg::Key("inputs"), Seg::Key(&name), Seg::Key(key)];
        let required = match text(required) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(b.error(
                    &at("required"),
                    format!("expected true or false, not '{v}'"),
                ));
            }
        };
        let input = ActionInput {
            default: b.checked_text(&at("default"), default, false)?,
            required,
            deprecation_message: text(deprecation_message),
        };
        inputs.push((name, input));
    }
    Ok(inputs)
}

fn outputs_of(
    b: &Builder<'_>,
    Ordered(raw): Ordered<Option<RawOutput>>,
) -> Result<Vec<(String, ActionOutput)>, WorkflowError> {
    let mut outputs = Vec::new();
    for (name, raw) in raw {
        let RawOutput { value } = raw.unwrap_or_default();
        let at = [Seg::Key("outputs"), Seg::Key(&name), Seg::Key("value")];
        let output = ActionOutput {
            value: b.checked_text(&at, value, false)?,
        };
        outputs.push((name, output));
    }
    Ok(outputs)
}

fn runs_of(b: &Builder<'_>, raw: RawRuns) -> Result<Runs, WorkflowError> {
    let RawRuns {
        using,
        main,
        pre,
        pre_if,
        post,
        post_if,
        steps,
        image,
        env,
        entrypoint,
        args,
        pre_entrypoint,
        post_entrypoint,
    } = raw;
    let runs = [Seg::Key("runs")];
    let at = |key| [Seg::Key("runs"), Seg::Key(key)];
    let Some(value) = text(using) else {
        return Err(b.error(
            &runs,
            format!("missing `using` (expected {})", Using::ALLOWED),
        ));
    };
    let Some(kind) = Using::parse(&value) else {
        return Err(b.error(
            &at("using"),
            format!("unknown '{value}' (expected {})", Using::ALLOWED),
        ));
    };
    let present = [
        ("main", main.is_some()),
        ("pre", pre.is_some()),
        ("pre-if", pre_if.is_some()),
        ("post", post.is_some()),
        ("post-if", post_if.is_some()),
        ("steps", steps.is_some()),
        ("image", image.is_some()),
        ("env", env.is_some()),
        ("entrypoint", entrypoint.is_some()),
        ("args", args.is_some()),
        ("pre-entrypoint", pre_entrypoint.is_some()),
        ("post-entrypoint", post_entrypoint.is_some()),
    ];
    if let Some((key, _)) = present
        .into_iter()
        .find(|(key, there)| *there && !kind.keys().contains(key))
    {
        return Err(b.error(
            &at(key),
            format!(
                "not allowed with `using: {value}`, which takes {}",
                kind.keys().join(", ")
            ),
        ));
    }
    // A required setting written empty is as good as missing.
    let required = |t: Option<Text>, key: &'static str, what: &str| {
        text(t)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| b.error(&runs, format!("missing `{key}` ({what})")))
    };
    Ok(match kind {
        Using::Composite => {
            let Some(steps) = steps else {
                return Err(b.error(&runs, "missing `steps` (the composite action's steps)"));
            };
            Runs::Composite {
                steps: composite_steps(b, steps)?,
            }
        }
        Using::Node(using) => Runs::Node {
            using,
            main: required(main, "main", "the script Node runs")?,
            pre: text(pre),
            pre_if: b.checked_text(&at("pre-if"), pre_if, true)?,
            post: text(post),
            post_if: b.checked_text(&at("post-if"), post_if, true)?,
        },
        Using::Docker => Runs::Docker {
            image: required(image, "image", "a Dockerfile or docker://<image>")?,
        },
    })
}

/// `runs.steps`, built like a job's steps; a `run` step must name its `shell`, as GitHub
/// requires in a composite action.
fn composite_steps(b: &Builder<'_>, raw: Vec<RawStep>) -> Result<Vec<Step>, WorkflowError> {
    let base = [Seg::Key("runs"), Seg::Key("steps")];
    let steps = b.steps(&base, raw)?;
    if let Some(step) = steps
        .iter()
        .find(|s| matches!(s.action, StepAction::Run(_)) && s.shell.is_none())
    {
        return Err(b.error(
            &[base[0], base[1], Seg::Item(step.index)],
            "missing `shell` (a `run` step of a composite action must name its shell)",
        ));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(file: &str) -> ActionManifest {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/conformance/act/"
        ))
        .join(file);
        let dir = path.parent().expect("a file in a folder");
        let manifest = ActionManifest::load(dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(manifest.path, path);
        manifest
    }

    fn input<'a>(m: &'a ActionManifest, name: &str) -> &'a ActionInput {
        m.inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i)
            .unwrap_or_else(|| panic!("no input {name}"))
    }

    fn err(text: &str) -> (usize, String) {
        match ActionManifest::parse(Path::new("action.yml"), text) {
            Err(WorkflowError::Invalid { line, message, .. }) => (line, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_a_composite_action() {
        let m = corpus("uses-composite/composite_action/action.yml");
        assert_eq!(m.name.as_deref(), Some("Test Composite Action"));
        assert_eq!(m.description.as_deref(), Some("Test action uses composite"));
        let names: Vec<&str> = m.inputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "test_input_required");
        assert_eq!(names.len(), 6);
        assert_eq!(
            input(&m, "test_input_required"),
            &ActionInput {
                default: None,
                required: true,
                deprecation_message: None
            }
        );
        let optional = input(&m, "test_input_optional");
        assert!(!optional.required);
        assert_eq!(
            optional.default.as_deref(),
            Some("test_input_optional_value")
        );
        assert!(input(&m, "test_input_required_with_default").required);
        assert_eq!(input(&m, "secret_input"), &ActionInput::default());
        assert_eq!(m.outputs[0].0, "test_output");
        assert_eq!(
            m.outputs[0].1.value.as_deref(),
            Some("${{ steps.output.outputs.test_output }}")
        );
        assert_eq!(m.outputs[1].0, "secret_output");
        let Runs::Composite { steps } = &m.runs else {
            panic!("{:?}", m.runs)
        };
        assert_eq!(steps.len(), 9);
        assert_eq!(steps[0].name.as_deref(), Some("echo inputs"));
        assert_eq!(steps[0].shell.as_deref(), Some("bash"));
        assert_eq!(steps[0].line, 38);
        assert_eq!(steps[7].id.as_deref(), Some("output"));
        assert_eq!(steps[7].line, 92);
    }

    #[test]
    fn parses_node_actions() {
        let m = corpus("actions/node20/action.yml");
        assert_eq!(input(&m, "who-to-greet").default.as_deref(), Some("World"));
        assert_eq!(m.outputs[0], ("time".to_string(), ActionOutput::default()));
        assert_eq!(
            m.runs,
            Runs::Node {
                using: NodeVersion::Node20,
                main: "dist/index.js".to_string(),
                pre: None,
                pre_if: None,
                post: None,
                post_if: None,
            }
        );

        let m =
            corpus("uses-composite-check-for-input-collision/action-with-pre-and-post/action.yml");
        let cache = input(&m, "cache");
        assert_eq!(cache.default.as_deref(), Some("false"));
        assert!(!cache.required);
        let Runs::Node {
            using,
            main,
            pre,
            post,
            ..
        } = &m.runs
        else {
            panic!("{:?}", m.runs)
        };
        assert_eq!(using.as_str(), "node16");
        assert_eq!(main, "main.js");
        assert_eq!(pre.as_deref(), Some("pre.js"));
        assert_eq!(post.as_deref(), Some("post.js"));
    }

    #[test]
    fn an_empty_input_is_fine() {
        let m = corpus("inputs-via-env-context/action/action.yml");
        assert_eq!(m.name, None);
        assert_eq!(
            m.inputs,
            [("test-env-input".to_string(), ActionInput::default())]
        );
        assert!(matches!(&m.runs, Runs::Composite { steps } if steps.len() == 1));
    }

    #[test]
    fn every_action_of_the_corpus_parses() {
        let mut dirs = vec![PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/conformance/act"
        ))];
        let mut parsed = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("a corpus folder") {
                let path = entry.expect("a corpus entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path
                    .file_name()
                    .is_some_and(|n| FILE_NAMES.iter().any(|f| n == *f))
                {
                    ActionManifest::load(&dir).unwrap_or_else(|e| panic!("{e}"));
                    parsed += 1;
                }
            }
        }
        assert!(parsed >= 14, "{parsed}");
    }

    #[test]
    fn settings_of_every_kind() {
        let m = ActionManifest::parse(
            Path::new("action.yml"),
            "author: me\nbranding: {icon: x}\ninputs:\n  a:\n  b:\n    required: 'True'\n    default: 3\n    deprecationMessage: old\n    type: string\nruns:\n  using: Node24\n  main: m.js\n  post: p.js\n  post-if: success()\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.inputs[0], ("a".to_string(), ActionInput::default()));
        assert_eq!(
            m.inputs[1].1,
            ActionInput {
                default: Some("3".to_string()),
                required: true,
                deprecation_message: Some("old".to_string()),
            }
        );
        assert!(matches!(
            &m.runs,
            Runs::Node { using: NodeVersion::Node24, post_if: Some(c), .. } if c == "success()"
        ));
        let m = ActionManifest::parse(
            Path::new("action.yml"),
            "runs:\n  using: docker\n  image: Dockerfile\n  args: [a]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m.runs,
            Runs::Docker {
                image: "Dockerfile".to_string()
            }
        );
    }

    #[test]
    fn composite_errors_name_the_line() {
        let (line, msg) = err(
            "name: x\nruns:\n  using: composite\n  steps:\n    - run: echo 1\n      shell: bash\n    - run: echo 2\n",
        );
        assert_eq!(line, 7, "{msg}");
        assert_eq!(
            msg,
            "runs.steps[1]: missing `shell` (a `run` step of a composite action must name its shell)"
        );

        // act's no-panic-on-invalid-composite-action.
        let (line, msg) =
            err("runs:\n  using: composite\n  steps:\n  - name: Foo\n  - uses: Foo/Bar\n");
        assert_eq!(line, 4, "{msg}");
        assert!(
            msg.starts_with("runs.steps[0]: a step needs `run` (a script) or `uses`"),
            "{msg}"
        );

        let (line, msg) = err("name: x\nruns:\n  using: composite\n");
        assert_eq!(line, 2, "{msg}");
        assert_eq!(msg, "runs: missing `steps` (the composite action's steps)");

        let (line, msg) = err(
            "runs:\n  using: composite\n  steps:\n    - id: a\n      uses: x/y@v1\n    - id: a\n      uses: x/y@v1\n",
        );
        assert_eq!(line, 6, "{msg}");
        assert!(
            msg.contains("runs.steps[1].id: the step id 'a' is already used"),
            "{msg}"
        );

        let (line, msg) = err(
            "runs:\n  using: composite\n  steps:\n    - run: echo ${{ nope.x }}\n      shell: sh\n",
        );
        assert_eq!(line, 4, "{msg}");
        assert!(msg.contains("Unrecognized named-value: 'nope'"), "{msg}");
    }

    #[test]
    fn runs_errors_name_the_line() {
        let (line, msg) = err("name: x\nruns:\n  using: node10\n  main: index.js\n");
        assert_eq!(line, 3, "{msg}");
        assert_eq!(
            msg,
            "runs.using: unknown 'node10' (expected composite, node12, node16, node20, node24 or docker)"
        );

        let (line, msg) = err("name: x\n\nruns:\n  using: node20\n  pre: pre.js\n");
        assert_eq!(line, 3, "{msg}");
        assert_eq!(msg, "runs: missing `main` (the script Node runs)");

        let (line, msg) = err("runs:\n  main: index.js\n");
        assert_eq!(line, 1, "{msg}");
        assert!(msg.starts_with("runs: missing `using`"), "{msg}");

        let (line, msg) = err("runs:\n  using: node20\n  main: a.js\n  steps: []\n");
        assert_eq!(line, 4, "{msg}");
        assert!(
            msg.starts_with("runs.steps: not allowed with `using: node20`"),
            "{msg}"
        );

        let (line, msg) = err("runs:\n  using: node20\n  mian: a.js\n");
        assert_eq!(line, 3, "{msg}");
        assert!(msg.contains("unknown field `mian`"), "{msg}");

        let (line, msg) = err("inputs:\n  a:\n    required: maybe\nruns:\n  using: docker\n");
        assert_eq!(line, 3, "{msg}");
        assert_eq!(
            msg,
            "inputs.a.required: expected true or false, not 'maybe'"
        );

        let (_, msg) = err("name: x\n");
        assert!(msg.contains("missing `runs`"), "{msg}");
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        // Under a key that is skipped, so the parser has to walk the nesting.
        let deep = format!("branding: {}{}", "[".repeat(5000), "]".repeat(5000));
        let garbage =
            String::from_utf8_lossy(b"runs:\n  using: \xff\xfe\n\x00\x80: [").into_owned();
        for text in [
            "",
            "---",
            "runs: 5",
            "runs:",
            "runs: {using: composite, steps: 7}",
            "runs: {using: composite, steps: [7]}",
            "runs: {using: composite, steps: [{}]}",
            "runs: {using: 5, main: []}",
            "runs: {using: ''}",
            "inputs: [a]\nruns: {using: docker, image: x}",
            "inputs: {a: {default: {b: c}}}\nruns: {using: docker, image: x}",
            "outputs: {a: 1}\nruns: {using: docker, image: x}",
            "- runs",
            "runs: &a [*a]",
            "\t- :\n",
            &deep,
            &garbage,
        ] {
            match ActionManifest::parse(Path::new("action.yml"), text) {
                Err(WorkflowError::Invalid { .. }) => {}
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn load_prefers_action_yml_and_names_a_missing_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let e = ActionManifest::load(dir.path()).expect_err("no manifest");
        assert!(matches!(e, ManifestLoadError::Missing { .. }));
        assert_eq!(
            e.to_string(),
            format!(
                "Can't find 'action.yml' or 'action.yaml' under '{}'",
                dir.path().display()
            )
        );

        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write the manifest");
        };
        write(
            "action.yaml",
            "name: yaml\nruns: {using: docker, image: x}\n",
        );
        let m = ActionManifest::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.name.as_deref(), Some("yaml"));
        assert_eq!(m.path, dir.path().join("action.yaml"));
        write("action.yml", "runs: {using: node20}\n");
        let e = ActionManifest::load(dir.path()).expect_err("no main");
        assert!(
            e.to_string().starts_with(&format!(
                "{}:1: runs:",
                dir.path().join("action.yml").display()
            )),
            "{e}"
        );
    }
}
