//! Order identifiers, which double as the customer's secret capability. The
//! type is part of the contract with pdf-generator, so it lives in
//! drop-contract; see there for why it redacts itself.

pub use drop_contract::OrderId;
