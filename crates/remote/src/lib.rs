//! azlin remote layer.
