//! The SMTP engine: protocol values (pure, tested without sockets) and the session.

pub mod auth;
pub mod command;
pub mod data;
mod deadline;
pub mod dsn;
pub mod extension;
pub mod pin;
pub mod receipt;
pub mod record;
pub mod reply;
pub mod session;
pub mod stage;
#[cfg(test)]
pub(crate) mod test_certs;
pub mod tls;
pub mod transport;
