//! Actions that steps `uses:`: their metadata files and where they come from.

pub mod manifest;
