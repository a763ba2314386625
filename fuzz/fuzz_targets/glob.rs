//! GitHub's filter patterns (`branches`, `tags`, `paths`) come from repositories azlin does not
//! control: any pattern parses or is refused, and one that parses matches any subject without a
//! panic (in time linear in both, which libFuzzer's timeouts watch).
#![no_main]

// The service uses more of these modules than a target does.
#[allow(dead_code)]
#[path = "../../crates/ci/src/event.rs"]
mod event;
#[allow(dead_code)]
#[path = "../../crates/ci/src/trigger.rs"]
mod trigger;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The pattern, a newline, then the subject.
    let text = String::from_utf8_lossy(data);
    let (pattern, subject) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(pattern) = trigger::Pattern::parse(pattern) {
        let _matched = pattern.matches(subject);
    }
});
