//! Who may connect: access-token verification and the handshake's nine steps.
//!
//! [`handshake::HandshakeError`] is the one place where a refused connection becomes the
//! `connect_error` text a client sees; nothing else in the gateway words those messages.

pub mod handshake;
pub mod jwt;
