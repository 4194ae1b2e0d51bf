//! DynamoDB's data and expression languages, pure: attribute values (`value`, with exact
//! 38-digit numbers in `number`), the condition, key condition, update and projection
//! expression parsers (`expr`, with AWS's ValidationException wording), and their evaluation
//! (`eval`). The service in `crates/services/dynamodb` turns these into operations.

pub mod eval;
pub mod expr;
pub mod legacy;
pub mod number;
mod reserved;
pub mod value;

pub use eval::{apply_update, eval, project, resolve};
pub use expr::{Action, Cond, Operand, Path, PathElem, Placeholders};
pub use number::Num;
pub use reserved::is_reserved;
pub use value::{AttrValue, Item};

#[cfg(test)]
mod tests;
