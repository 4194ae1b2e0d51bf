//! Lambda functions for tsumiki's end-to-end tests, written with AWS's `lambda_runtime` crate.
//! Each binary is a `bootstrap` for a `provided.al2023` function.
