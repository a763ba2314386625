//! An `action.yml`: any text must parse into an `ActionManifest` or a `WorkflowError`, never panic.
#![no_main]

use azlin_workflow::action::manifest::ActionManifest;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    if let Err(e) = ActionManifest::parse(Path::new("action.yml"), text) {
        let _ = e.to_string();
    }
});
