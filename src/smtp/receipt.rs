//! What the server said about each recipient and about the message: the outcome of
//! a transaction, as the session gives it back.

use super::reply::Reply;
use super::stage::Stage;
use crate::envelope::Address;

/// The outcome for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    pub recipient: Address,
    pub reply: Reply,
    pub accepted: bool,
    /// Where `reply` came: `RcptTo`, or under LMTP `EndOfData`, this recipient's own
    /// answer to the message (RFC 2033 §4.2). A refusal is judged by it.
    pub stage: Stage,
}

/// What the server said about a message it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Every recipient, in envelope order.
    pub recipients: Vec<RecipientResult>,
    /// The reply to the final dot.
    pub reply: Reply,
}

impl Receipt {
    /// The recipients the server refused, in envelope order.
    pub fn refused(&self) -> Vec<RecipientResult> {
        refused(&self.recipients)
    }
}

/// Those of `recipients` the server refused, in order.
pub fn refused(recipients: &[RecipientResult]) -> Vec<RecipientResult> {
    recipients.iter().filter(|r| !r.accepted).cloned().collect()
}
