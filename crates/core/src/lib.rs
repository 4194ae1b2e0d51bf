//! The bottom layer every other tsumiki crate stands on: AWS-shaped errors, the one clock,
//! request context (account, region, request id) and ids/ARNs.
//!
//! It knows nothing of HTTP, protocols, SQL or any service. Read `error.rs` and `clock.rs` first.

pub mod clock;
pub mod context;
pub mod error;
pub mod ids;

pub use clock::{Clock, Stopwatch};
pub use context::RequestContext;
pub use error::{AwsError, Fault};
