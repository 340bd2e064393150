//! STUB (lead's branch only; replaced by the real module at merge).
#![allow(dead_code, unused_variables)]
use crate::envelope::{Address, Mailbox};
use crate::message::Message;
use crate::smtp::reply::Reply;
use crate::smtp::stage::Stage;
use std::time::SystemTime;

pub enum Action {
    Failed,
    Delayed,
}
pub enum Diagnostic {
    Reply(Reply),
    Other(String),
}
pub struct Failure {
    pub recipient: Address,
    pub original_recipient: Option<String>,
    pub action: Action,
    pub status: String,
    pub remote_mta: Option<String>,
    pub diagnostic: Diagnostic,
    pub stage: Option<Stage>,
    pub last_attempt: SystemTime,
}
#[derive(Clone, Copy)]
pub enum Ret {
    Headers,
    Full,
}
pub struct Notice {
    pub to: Vec<Address>,
    pub from: Mailbox,
    pub reporting_mta: String,
    pub envelope_id: Option<String>,
    pub queue_id: String,
    pub submitter: Option<String>,
    pub arrival: SystemTime,
    pub failures: Vec<Failure>,
    pub ret: Ret,
    pub date: SystemTime,
    pub message_id: String,
    pub boundary: String,
}
impl Notice {
    pub fn new(
        domain: &str,
        reporting_mta: &str,
        to: Vec<Address>,
        queue_id: String,
        arrival: SystemTime,
        failures: Vec<Failure>,
        ret: Ret,
    ) -> Notice {
        unimplemented!()
    }
}
pub fn status_of(reply: &Reply) -> String {
    unimplemented!()
}
pub const EXPIRED: &str = "4.4.7";
pub fn build(notice: &Notice, original: &Message) -> std::io::Result<Vec<u8>> {
    unimplemented!()
}
pub const FULL_LIMIT: u64 = 50_000;
