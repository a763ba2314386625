//! Bus messages: whatever arrives on whatever subject decodes to a request, an event or a
//! `DecodeError` (which the consumer dead-letters), never a panic; and what decodes re-encodes
//! to the same message.
#![no_main]

use azlin_core::event::{Event, Request, subject};
use libfuzzer_sys::fuzz_target;

/// Every subject azlin reads, and one it does not.
const SUBJECTS: [&str; 11] = [
    subject::CREATE_REQUEST,
    subject::DELETE_REQUEST,
    subject::CREATE_STATUS,
    subject::CREATE_COMPLETE,
    subject::CREATE_FAILED,
    subject::SSH_VERIFIED,
    subject::CLOUDINIT_COMPLETE,
    subject::DELETE_STATUS,
    subject::DELETE_COMPLETE,
    subject::DELETE_FAILED,
    "vm.unknown.subject",
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the subject; the rest is the payload.
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let subject = SUBJECTS[usize::from(pick) % SUBJECTS.len()];
    match Request::decode(subject, payload) {
        Ok(request) => {
            let again = Request::decode(request.subject(), &request.encode());
            assert_eq!(again.as_ref(), Ok(&request), "a request does not round-trip");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match Event::decode(subject, payload) {
        Ok(event) => {
            let again = Event::decode(event.subject(), &event.encode());
            assert_eq!(again.as_ref(), Ok(&event), "an event does not round-trip");
            let _ = event.to_json();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
