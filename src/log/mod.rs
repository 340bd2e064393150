//! STUB (lead's branch only; replaced by the real module at merge).
#![allow(dead_code, unused_variables)]
use crate::envelope::Address;
use std::path::PathBuf;
use std::time::Duration;

pub enum Status {
    Sent,
    Deferred,
    Bounced,
    Expired,
}
pub struct Line {
    pub id: String,
    pub queued_as: Option<String>,
    pub uid: u32,
    pub user: Option<String>,
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub server: String,
    pub peer: Option<String>,
    pub tls: Option<String>,
    pub auth: Option<String>,
    pub size: u64,
    pub delay: Duration,
    pub status: Status,
    pub dsn: Option<String>,
    pub reply: String,
    pub notes: Vec<(&'static str, String)>,
}
impl Line {
    pub fn texts(&self) -> Vec<String> {
        unimplemented!()
    }
}
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Syslog(PathBuf),
    File(PathBuf),
    Stderr,
    None,
}
pub struct Log;
impl Log {
    pub fn new(target: Target) -> Log {
        Log
    }
    pub fn none() -> Log {
        Log
    }
    pub fn write(&self, line: &Line) {}
}
pub fn local_user() -> (u32, Option<String>) {
    (0, None)
}
