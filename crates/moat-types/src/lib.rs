//! Pure types shared by every moat crate: resource IDs, validated names and the wire shapes of
//! the APIs. No I/O, no async runtime.

pub mod arm;
pub mod assets;
pub mod digest;
pub mod graph;
pub mod ids;
pub mod names;
pub mod net;
pub mod network;
pub mod oci;
pub mod uri;

pub use digest::Digest;
pub use ids::{IdError, ResourceId};
pub use names::{InvalidField, PublicNetworkAccess, Region, RegistryName, ResourceGroupName};
