//! A `.env` file (`--env-file`, `--secret-file`): entries or a `DotenvError`, never a panic.
#![no_main]

use azlin_workflow::dotenv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = dotenv::parse(text) {
        let _ = e.to_string();
    }
});
