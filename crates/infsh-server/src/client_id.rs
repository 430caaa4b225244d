//! Who a request is from, for the per-client limits (run rate, open
//! streams): the API key it presented (as its SHA-256 digest, so no key is
//! kept in the limiters' tables), or its peer IP address when the server has
//! no keys. auth.rs attaches it to every authenticated request.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    Key([u8; 32]),
    Addr(IpAddr),
    /// No key and no peer address (a router driven without a socket, as
    /// in router tests): all such requests share one budget.
    Unknown,
}

impl ClientId {
    /// What the limit is counted per, for messages.
    pub fn scope(&self) -> &'static str {
        match self {
            ClientId::Key(_) => "API key",
            ClientId::Addr(_) | ClientId::Unknown => "client address",
        }
    }
}
