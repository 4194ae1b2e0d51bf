//! Execution environments: sandboxed processes that run functions (and later jobs and tasks).
