//! GitHub webhook deliveries, which anyone who can reach `azlin serve` may send (a signed one
//! still comes from a repository azlin does not control): any body under any event name reads
//! to an event or an error, never a panic, and an event is decided against workflows with every
//! kind of filter, never a panic either.
#![no_main]

// The parsers of the CI service, without the service (its HTTP server and NATS client).
// The service uses more of these modules than a target does.
#[allow(dead_code)]
#[path = "../../crates/ci/src/event.rs"]
mod event;
#[allow(dead_code)]
#[path = "../../crates/ci/src/trigger.rs"]
mod trigger;

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;

const EVENTS: [&str; 5] = ["push", "pull_request", "workflow_dispatch", "ping", "issues"];

const WORKFLOW: &str = r#"
on:
  push:
    branches: ['main', 'releases/**', '!releases/**-alpha']
    tags: ['v[0-9]+.*']
    paths: ['src/**/*.rs', '!docs/**', '**.md']
  pull_request:
    types: [opened, labeled]
    branches-ignore: ['wip/*']
    paths-ignore: ['**/*.txt']
  workflow_dispatch:
    inputs:
      level: { type: choice, options: [a, b], default: a }
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: "true"
"#;

static TRIGGERS: LazyLock<trigger::Triggers> = LazyLock::new(|| {
    let workflow = azlin_workflow::model::Workflow::parse(Path::new("ci.yml"), WORKFLOW)
        .expect("the fuzz workflow parses");
    trigger::Triggers::from_workflow(&workflow).expect("its filters are valid")
});

fuzz_target!(|data: &[u8]| {
    // The first byte picks the event name; the rest is the body.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let name = EVENTS[usize::from(pick) % EVENTS.len()];
    if let Ok(event) = event::Event::parse(name, body) {
        let _decision = TRIGGERS.decide(&event);
        let _ = (event.sha(), event.git_ref(), event.changed_files());
    }
});
