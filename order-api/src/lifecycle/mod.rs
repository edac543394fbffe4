//! After the drop: an order is redeemed once at a pickup counter
//! ([`redeem`]), or cancelled by its holder ([`cancel`]). Both decide under
//! the order's row lock, so "a cancelled order is never redeemed, and a
//! redeemed order is never cancelled" holds across replicas; the contract is
//! docs/design.md, "Voucher lifecycle".

pub mod cancel;
pub mod redeem;
