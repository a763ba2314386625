//! The shapes of a workflow file as serde sees them. Each polymorphic field (a string or a list,
//! a scalar that may be a number, a boolean or an expression) has its own small visitor so that a
//! wrong shape is refused with what was expected, and the YAML parser adds the line.

use crate::expression::Value;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// A scalar read as text: strings as they are, numbers and booleans spelled out, null empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text, E> {
                Ok(Text(crate::expression::format_number(v)))
            }
            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or a list of strings (`needs`, `runs-on`, `on`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextList(pub Vec<String>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<TextList, E> {
                Ok(TextList(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextList, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(t)) = seq.next_element::<Text>()? {
                    out.push(t);
                }
                Ok(TextList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `runs-on`: a label, a list of labels, or `{group, labels}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunsOn(pub Vec<String>);

impl<'de> Deserialize<'de> for RunsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RunsOn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a runner label, a list of labels, or a mapping with `labels`")
            }
            fn visit_str<E>(self, v: &str) -> Result<RunsOn, E> {
                Ok(RunsOn(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RunsOn, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(t)) = seq.next_element::<Text>()? {
                    out.push(t);
                }
                Ok(RunsOn(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RunsOn, A::Error> {
                let mut labels = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "labels" => labels = map.next_value::<TextList>()?.0,
                        "group" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        other => {
                            return Err(de::Error::unknown_field(other, &["group", "labels"]));
                        }
                    }
                }
                Ok(RunsOn(labels))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping that keeps its keys in file order and refuses duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E>(self) -> Result<Ordered<V>, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    let value = map.next_value::<V>()?;
                    out.push((key, value));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_any(Vis(PhantomData))
    }
}

/// `on`: an event, a list of events, or a mapping of events to their settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct On {
    /// The event names in file order.
    pub events: Vec<String>,
    /// The settings of each event (null when none), as written.
    pub settings: Vec<(String, Value)>,
}

impl<'de> Deserialize<'de> for On {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = On;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event name, a list of events, or a mapping of events")
            }
            fn visit_str<E>(self, v: &str) -> Result<On, E> {
                Ok(On {
                    events: vec![v.to_string()],
                    settings: Vec::new(),
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<On, A::Error> {
                let TextList(events) =
                    TextList::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(On {
                    events,
                    settings: Vec::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<On, A::Error> {
                let Ordered(settings) =
                    Ordered::<Value>::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(On {
                    events: settings.iter().map(|(k, _)| k.clone()).collect(),
                    settings,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `strategy.matrix`: a mapping, or an expression that evaluates to one.
#[derive(Debug, Clone, PartialEq)]
pub enum MatrixShape {
    /// `matrix: ${{ fromJSON(…) }}`.
    Expression(String),
    /// A mapping of vectors plus `include`/`exclude`.
    Mapping(Value),
}

impl<'de> Deserialize<'de> for MatrixShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MatrixShape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of matrix vectors, or an expression")
            }
            fn visit_str<E>(self, v: &str) -> Result<MatrixShape, E> {
                Ok(MatrixShape::Expression(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MatrixShape, A::Error> {
                let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MatrixShape::Mapping(value))
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub name: Option<Text>,
    #[allow(dead_code)] // accepted like GitHub, not used by azlin
    #[serde(rename = "run-name")]
    pub run_name: Option<Text>,
    pub on: On,
    pub env: Option<Ordered<Text>>,
    pub defaults: Option<RawDefaults>,
    pub jobs: Ordered<RawJob>,
    #[allow(dead_code)] // accepted like GitHub, not used by azlin
    pub permissions: Option<IgnoredAny>,
    #[allow(dead_code)] // accepted like GitHub, not used by azlin
    pub concurrency: Option<IgnoredAny>,
}

/// `defaults:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub run: Option<RawRunDefaults>,
}

/// `defaults.run:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRunDefaults {
    pub shell: Option<Text>,
    pub working_directory: Option<Text>,
}

/// `jobs.<id>.strategy:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStrategy {
    pub matrix: Option<MatrixShape>,
    pub fail_fast: Option<Text>,
    pub max_parallel: Option<Text>,
}

/// `jobs.<id>.secrets` of a job that calls a reusable workflow: `inherit` or a mapping.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSecrets {
    /// `secrets: inherit` (any other word is refused when the job is built).
    Word(String),
    /// `secrets: {NAME: value}`.
    Map(Ordered<Text>),
}

/// `jobs.<id>:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawJob {
    pub name: Option<Text>,
    pub runs_on: Option<RunsOn>,
    pub needs: Option<TextList>,
    #[serde(rename = "if")]
    pub condition: Option<Text>,
    pub strategy: Option<RawStrategy>,
    pub env: Option<Ordered<Text>>,
    pub defaults: Option<RawDefaults>,
    pub outputs: Option<Ordered<Text>>,
    pub timeout_minutes: Option<Text>,
    pub continue_on_error: Option<Text>,
    pub steps: Option<Vec<RawStep>>,
    pub uses: Option<Text>,
    pub with: Option<Ordered<Text>>,
    pub secrets: Option<RawSecrets>,
    pub container: Option<IgnoredAny>,
    pub services: Option<IgnoredAny>,
    #[allow(dead_code)] // accepted like GitHub, not used by azlin
    pub permissions: Option<IgnoredAny>,
    #[allow(dead_code)] // accepted like GitHub, not used by azlin
    pub concurrency: Option<IgnoredAny>,
    #[allow(dead_code)] // accepted like GitHub, not used by azlin
    pub environment: Option<IgnoredAny>,
}

/// `jobs.<id>.steps[*]`, or an action's `runs.steps[*]`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a step (a mapping with `run` or `uses`)"
)]
pub struct RawStep {
    pub id: Option<Text>,
    pub name: Option<Text>,
    pub run: Option<Text>,
    pub uses: Option<Text>,
    pub with: Option<Ordered<Text>>,
    pub shell: Option<Text>,
    pub env: Option<Ordered<Text>>,
    #[serde(rename = "if")]
    pub condition: Option<Text>,
    pub working_directory: Option<Text>,
    pub continue_on_error: Option<Text>,
    pub timeout_minutes: Option<Text>,
}
