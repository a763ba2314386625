//! A workflow file: any text must parse into a `Workflow` or a `WorkflowError`, never panic.
#![no_main]

use azlin_workflow::model::Workflow;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    if let Err(e) = Workflow::parse(Path::new(".github/workflows/fuzz.yml"), text) {
        // The message is what the user sees: rendering it must not panic either.
        let _ = e.to_string();
    }
});
