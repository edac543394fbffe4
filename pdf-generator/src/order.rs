//! The orders the renderer receives. The types are the contract with
//! order-api, owned once in drop-contract; this module only names them for
//! the rest of the crate.

pub use drop_contract::{OrderId, messages::Order};
