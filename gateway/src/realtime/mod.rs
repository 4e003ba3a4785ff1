//! The Socket.IO side: namespaces, the handshake, rooms, client events, delivery to sockets, and
//! the cluster adapter. Handlers are generic over the adapter, so one body of code serves a
//! single replica (in-memory adapter) and the cluster (Redis adapter over fred).
//!
//! - [`io`]: this replica's server in either mode ([`io::Io`], [`on_io!`]);
//!   [`server`] builds it; [`services`]: what the handlers share;
//! - [`connect`]: a socket's life (handshake, rooms, `hello`, cleanup), the same for every
//!   namespace; [`events`]: how a client event reaches its handler and is acknowledged;
//! - one file per namespace's events: [`drivers`], [`admin`] (passengers send none), and
//!   [`refresh`] (`auth:refresh`, every namespace); [`validate`] reads their payloads, [`ack`]
//!   words their outcomes;
//! - [`deliver`]: server → client events; [`feed`]: recovered events to local sockets, and
//!   [`resync`] of them after a hole in that feed;
//! - session lifetime: [`expiry`], [`revalidate`], [`limits`], [`sessions`] (revocation);
//!   [`presence`] of drivers; [`throttle`]; [`context`] of a socket.

#[macro_use]
pub mod io;

pub mod ack;
pub mod admin;
pub mod connect;
pub mod context;
pub mod deliver;
pub mod drivers;
pub mod events;
pub mod expiry;
pub mod feed;
pub mod limits;
pub mod notices;
pub mod offers;
pub mod presence;
pub mod refresh;
pub mod resync;
pub mod revalidate;
pub mod server;
pub mod services;
pub mod sessions;
pub mod throttle;
pub mod validate;
