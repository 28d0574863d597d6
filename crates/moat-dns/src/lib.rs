//! moat's own DNS server: authoritative for moat's zone (default `moat.internal`) and split-horizon,
//! like Azure Private Link's private DNS zones. Every public name is a CNAME to its `privatelink`
//! form, and the privatelink name resolves to the private endpoint's address for a querier inside a
//! network linked to the zone (its *view*) and to the public listener's address for anyone else.
//!
//! - [`zone`] owns the data and the answering rules; pure, no I/O.
//! - [`wire`] owns the DNS message format (hickory-proto) and response size limits; no I/O.
//! - [`server`] owns the UDP/TCP serving loops on sockets the caller bound, view selection by
//!   listener or source address, and replacing the zone while serving.
//!
//! Depends on `moat-types` (CIDR ranges) only; it knows nothing of registries or endpoints: moat
//! turns its resources into a [`ZoneSpec`] and calls [`DnsServer::replace`] when they change.

pub mod server;
pub mod wire;
pub mod zone;

pub use server::{DnsServer, OutsideZone, ServerOptions, ViewSelector};
pub use wire::{Transport, respond};
pub use zone::{Answer, NameEntry, PrivateRecord, ZoneData, ZoneError, ZoneSpec, privatelink_name};
