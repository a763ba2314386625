//! azlin workflow layer.
