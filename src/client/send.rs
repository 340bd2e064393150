//! Sending over a ready session: one message, or a series pipelined over a server
//! that allows it; each message fitted first to what the server takes.

use std::borrow::Cow;
use std::io::Read;

use super::parameters::{Dsn, Parameters, Shape, parameters_for};
use crate::envelope::{Address, Envelope};
use crate::error::Error;
use crate::message::Message;
use crate::message::downgrade::Downgraded;
use crate::smtp;
use crate::smtp::receipt::{Receipt, RecipientResult};
use crate::smtp::session::Session;
use crate::smtp::tls::Channel;
#[cfg(test)]
use crate::{settings::Settings, smtp::auth::Credentials, smtp::tls::TlsClient};

/// One message of a series ([`Client::send_series`](super::Client::send_series)), with
/// what its sender knows it by.
pub struct Outgoing<T> {
    pub tag: T,
    pub envelope: Envelope,
    pub message: Message,
}

/// Where the messages of [`Client::send_series`](super::Client::send_series) come from,
/// and where their results go.
pub trait Series {
    type Tag;
    /// The next message to send; `None` when there are no more.
    fn next(&mut self) -> Option<Outgoing<Self::Tag>>;
    /// What became of a message `next` gave. Results come in the order the messages
    /// were given, but for those the server cannot take at all (too big for its SIZE,
    /// 8-bit data without 8BITMIME...): they are told at once. `None`: it was not
    /// tried, the connection was lost before it.
    fn done(&mut self, message: Outgoing<Self::Tag>, result: Option<Result<Receipt, Error>>);
}

/// [`Client::send_series`](super::Client::send_series) over a server that pipelines
/// DATA transactions.
pub(crate) fn send_series_on<C: Channel, S: Series>(
    session: &mut Session<C>,
    dsn: &Dsn,
    series: &mut S,
) {
    // A message whose envelope was accepted and which has had DATA's 354: its content
    // is owed.
    type Ready<T> = (Outgoing<T>, Option<Downgraded>, Vec<RecipientResult>);
    let mut ready: Option<Ready<S::Tag>> = None;
    loop {
        let (upcoming, then) = match next_prepared(session, dsn, series) {
            Some((out, envelope, group, downgraded)) => (Some((out, envelope, downgraded)), group),
            None if ready.is_some() => (None, vec![smtp::command::Command::Quit]),
            None => return,
        };
        match ready.take() {
            Some((out, downgraded, mut recipients)) => {
                if session.has_progress() {
                    session.set_message_size(Some(wire_size_as_sent(&out.message, &downgraded)));
                }
                let result = session
                    .send_body(&mut reader_as_sent(&out.message, &downgraded), &then)
                    .and_then(|()| session.end_of_data(&mut recipients))
                    .map(|reply| Receipt { recipients, reply });
                series.done(out, Some(result));
                if upcoming.is_none() {
                    let _ = session.after_quit();
                    return;
                }
            }
            None => {
                if let Err(e) = session.send_data_group(&then) {
                    if let Some((out, _, _)) = upcoming {
                        series.done(out, Some(Err(e)));
                    }
                    return;
                }
            }
        }
        let Some((out, envelope, downgraded)) = upcoming else {
            return;
        };
        if !session.is_usable() {
            // Its commands went, if at all, after an end that broke the connection.
            series.done(out, None);
            return;
        }
        match session.data_replies(&envelope) {
            Ok(recipients) => ready = Some((out, downgraded, recipients)),
            Err(e) => {
                series.done(out, Some(Err(e)));
                // A MAIL that was accepted is still open (RFC 5321 §4.1.1.5).
                if session.is_usable() && session.rset().is_err() {
                    return;
                }
            }
        }
    }
}

/// A message of a series made ready: its envelope as sent, its command group, and
/// its header as this server takes it.
type Prepared<T> = (
    Outgoing<T>,
    Envelope,
    Vec<smtp::command::Command>,
    Option<Downgraded>,
);

/// The next message of `series` this server can take, prepared; those it cannot take
/// are done with at once.
fn next_prepared<C: Channel, S: Series>(
    session: &mut Session<C>,
    dsn: &Dsn,
    series: &mut S,
) -> Option<Prepared<S::Tag>> {
    if !session.is_usable() {
        return None;
    }
    loop {
        let out = series.next()?;
        let prepared = prepare(session, &out.envelope, &out.message, dsn).and_then(
            |(envelope, params, downgraded)| {
                let group = session.data_group(&envelope, &params)?;
                Ok((envelope.into_owned(), group, downgraded))
            },
        );
        match prepared {
            Ok((envelope, group, downgraded)) => return Some((out, envelope, group, downgraded)),
            Err(e) => series.done(out, Some(Err(e))),
        }
    }
}

/// Getting a session and then sending one message: what `submit` does, over any
/// channel (the tests drive it with a scripted peer).
#[cfg(test)]
pub(crate) fn deliver<S: Channel>(
    session: &mut Session<S>,
    settings: &Settings,
    client: Option<&TlsClient<'_>>,
    ehlo_name: &str,
    credentials: Option<&Credentials>,
    envelope: &Envelope,
    message: &Message,
) -> Result<Receipt, Error> {
    super::connect::establish(session, settings, client, ehlo_name, credentials)?;
    send_on(session, envelope, message, &settings.dsn)
}

/// One transaction, with the MAIL parameters this server and message call for.
pub(super) fn send_on<S: Channel>(
    session: &mut Session<S>,
    envelope: &Envelope,
    message: &Message,
    dsn: &Dsn,
) -> Result<Receipt, Error> {
    let (envelope, params, downgraded) = prepare(session, envelope, message, dsn)?;
    if session.has_progress() {
        session.set_message_size(Some(wire_size_as_sent(message, &downgraded)));
    }
    let mut reader = reader_as_sent(message, &downgraded);
    session.transaction_with(&envelope, &params, &mut reader)
}

/// The envelope as this server can take it, the parameters this server and message
/// call for, and the header rewritten in ASCII if the server cannot take it in UTF-8.
pub(super) fn prepare<'a, S: Channel>(
    session: &mut Session<S>,
    envelope: &'a Envelope,
    message: &Message,
    dsn: &Dsn,
) -> Result<(Cow<'a, Envelope>, Parameters, Option<Downgraded>), Error> {
    let caps = session.capabilities();
    let smtputf8 = caps.has("SMTPUTF8");
    let envelope = if smtputf8 {
        Cow::Borrowed(envelope)
    } else {
        Cow::Owned(ascii_envelope(envelope)?)
    };
    // RFC 6531 §3.4: UTF-8 header fields only to a server that offers SMTPUTF8; for
    // any other they are rewritten in ASCII (RFC 2047) where they can be.
    let downgraded = if message.has_8bit_header() && !smtputf8 {
        Some(message.downgraded()?)
    } else {
        None
    };
    let shape = match &downgraded {
        Some(d) => Shape {
            wire_size: d.wire_size(),
            eight_bit: d.is_8bit(),
            utf8_header: false,
        },
        None => Shape::of(message),
    };
    let size_limit = caps.size_limit().flatten();
    let params = parameters_for(|k| caps.has(k), size_limit, &envelope, &shape, dsn)?;
    if !dsn.is_empty() && !caps.has("DSN") {
        session.note("the server does not offer DSN: the notification requests are left out");
    }
    if let Some(d) = downgraded.as_ref().filter(|d| !d.fields().is_empty()) {
        session.note(&format!(
            "the server does not offer SMTPUTF8: the UTF-8 in {} is sent as RFC 2047 \
             encoded-words (domains as A-labels)",
            d.fields().join(", ")
        ));
    }
    Ok((envelope, params, downgraded))
}

/// The size on the wire of `message` as it goes, its header rewritten or not.
fn wire_size_as_sent(message: &Message, downgraded: &Option<Downgraded>) -> u64 {
    downgraded
        .as_ref()
        .map_or(message.wire_size(), Downgraded::wire_size)
}

/// The bytes of `message` as it goes, its header rewritten or not.
fn reader_as_sent<'a>(
    message: &'a Message,
    downgraded: &'a Option<Downgraded>,
) -> Box<dyn Read + 'a> {
    match downgraded {
        Some(d) => Box::new(d.reader(message)),
        None => Box::new(message.reader()),
    }
}

/// The envelope for a server without SMTPUTF8: internationalised domains in A-labels;
/// a local part that is not ASCII cannot be sent there at all (RFC 6531 §3.2).
fn ascii_envelope(envelope: &Envelope) -> Result<Envelope, Error> {
    let convert = |a: &Address| {
        a.to_ascii().ok_or_else(|| {
            Error::Unsendable(format!(
                "the address <{a}> has a local part that is not ASCII, and the server \
                 does not offer SMTPUTF8 (RFC 6531)"
            ))
        })
    };
    let from = envelope.from.as_ref().map(convert).transpose()?;
    let to = envelope
        .to
        .iter()
        .map(convert)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope::new(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_envelope as envelope;
    use crate::exit;

    #[test]
    fn without_smtputf8_domains_go_as_a_labels_and_utf8_local_parts_are_refused() {
        let e = envelope("a@bücher.example", "info@例え.テスト");
        let ascii = ascii_envelope(&e).unwrap();
        assert_eq!(ascii.from.unwrap().as_str(), "a@xn--bcher-kva.example");
        assert_eq!(ascii.to[0].as_str(), "info@xn--r8jz45g.xn--zckzah");
        let err = ascii_envelope(&envelope("jörg@example.test", "b@example.test")).unwrap_err();
        assert!(matches!(err, Error::Unsendable(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
    }
}
