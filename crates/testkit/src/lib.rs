//! Test harnesses for azlin: real servers started by tests, and named test doubles for what cannot exist on this machine (Azure ARM, `az`). Every harness cleans up in `Drop`.
