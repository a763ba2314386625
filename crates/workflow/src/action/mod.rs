//! Actions: their metadata (`action.yml`) and where remote ones come from.

pub mod manifest;
pub mod source;
