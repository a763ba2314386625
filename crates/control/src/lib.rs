//! azlin control layer.
