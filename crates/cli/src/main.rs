//! The `azlin` command.

fn main() {}
