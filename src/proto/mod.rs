//! The RADIUS wire format: packets, attributes, authenticators and the
//! dictionary. Nothing here opens a socket, reads a clock or spawns a task:
//! callers pass bytes (and random numbers) in and get bytes out, which keeps
//! this layer deterministic, fuzzable and cheap to benchmark.

pub mod attr;
pub mod crypto;
pub mod dictionary;
pub mod dynauth;
pub mod md5x;
pub mod packet;

pub use attr::{AttrType, Code};
pub use crypto::ClientSecret;
pub use packet::{Builder, DecodeError, EncodeError, Packet, RawAttr};
