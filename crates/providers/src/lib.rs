//! azlin providers layer.
