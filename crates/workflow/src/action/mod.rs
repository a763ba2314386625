//! Actions named by `uses:`: where their files come from.

pub mod source;
