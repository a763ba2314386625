//! End-to-end behaviour of steps on a VM.
