//! The SMTP engine: protocol values (pure, tested without sockets) and the session.

pub mod auth;
pub mod command;
pub mod data;
mod deadline;
pub mod extension;
pub mod receipt;
pub mod reply;
pub mod session;
pub mod tls;
pub mod transport;
