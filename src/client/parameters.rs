//! The ESMTP parameters of a transaction (SIZE, BODY, SMTPUTF8, DSN) and the checks
//! that go with them, made before anything is sent.

use crate::envelope::Envelope;
use crate::error::Error;
use crate::message::Message;
pub use crate::smtp::session::Parameters;

pub use crate::smtp::dsn::Dsn;

/// The parameters this message needs from a server that offers the extensions for
/// which `offers` is true, and whose SIZE limit is `size_limit`. Checks what can be
/// known before sending: a message over the limit, 8-bit data or UTF-8 addresses the
/// server cannot take.
pub fn parameters(
    offers: impl Fn(&str) -> bool,
    size_limit: Option<u64>,
    envelope: &Envelope,
    message: &Message,
    dsn: &Dsn,
) -> Result<Parameters, Error> {
    parameters_for(offers, size_limit, envelope, &Shape::of(message), dsn)
}

/// What the parameters depend on in the message as it goes to the server.
pub(super) struct Shape {
    pub(super) wire_size: u64,
    pub(super) eight_bit: bool,
    pub(super) utf8_header: bool,
}

impl Shape {
    pub(super) fn of(message: &Message) -> Shape {
        Shape {
            wire_size: message.wire_size(),
            eight_bit: message.is_8bit(),
            utf8_header: message.has_8bit_header(),
        }
    }
}

pub(super) fn parameters_for(
    offers: impl Fn(&str) -> bool,
    size_limit: Option<u64>,
    envelope: &Envelope,
    message: &Shape,
    dsn: &Dsn,
) -> Result<Parameters, Error> {
    let mut params = Parameters::default();
    if offers("SIZE") {
        let size = message.wire_size;
        // RFC 1870 §6.1: a message the server has said it will refuse is not sent.
        if let Some(limit) = size_limit
            && size > limit
        {
            return Err(Error::Unsendable(format!(
                "the message is {size} bytes, over the server's limit of {limit} bytes (SIZE)"
            )));
        }
        params.mail.push(format!("SIZE={size}"));
    }
    // Known without reading the message: bytes in memory were looked at when it was
    // made, and what a composed message reads from files goes base64 (ASCII).
    if message.eight_bit {
        // RFC 6152 §3: 8-bit data only to a server that says it takes it.
        if !offers("8BITMIME") {
            return Err(Error::Data(
                "the message holds 8-bit data and the server does not offer 8BITMIME; \
                 encode it (quoted-printable or base64) first"
                    .into(),
            ));
        }
        params.mail.push("BODY=8BITMIME".into());
    }
    // RFC 6531 §3.4: an address in UTF-8 needs SMTPUTF8, and a server without it
    // cannot take the message at all; so do header fields in UTF-8 (RFC 6532), unless
    // they were rewritten in ASCII first (see `prepare`).
    let utf8_address = envelope
        .from
        .iter()
        .chain(&envelope.to)
        .any(|a| !a.as_str().is_ascii());
    if utf8_address || message.utf8_header {
        if !offers("SMTPUTF8") {
            return Err(Error::Unsendable(if utf8_address {
                "an address is not ASCII, and the server does not offer SMTPUTF8 (RFC 6531)".into()
            } else {
                "the header holds UTF-8, and the server does not offer SMTPUTF8 (RFC 6531)".into()
            }));
        }
        params.mail.push("SMTPUTF8".into());
    }
    if offers("DSN") {
        if let Some(ret) = &dsn.ret {
            params.mail.push(format!("RET={ret}"));
        }
        if let Some(envid) = &dsn.envid {
            params
                .mail
                .push(format!("ENVID={}", crate::smtp::dsn::xtext(envid)));
        }
        if let Some(notify) = &dsn.notify {
            params.rcpt.push(format!("NOTIFY={notify}"));
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_envelope as envelope;
    use crate::exit;
    use crate::message::wire_size;

    fn message(text: &str) -> Message {
        Message::from_bytes(text.as_bytes().to_vec())
    }

    fn mail(offers: &[&str], e: &Envelope, m: &Message) -> Result<Vec<String>, Error> {
        parameters(|k| offers.contains(&k), None, e, m, &Dsn::default()).map(|p| p.mail)
    }

    #[test]
    fn seven_bit_ascii_needs_no_parameter() {
        let m = message("Subject: x\r\n\r\nbody\r\n");
        let e = envelope("a@example.test", "b@example.test");
        assert!(
            mail(&["8BITMIME", "SMTPUTF8", "DSN"], &e, &m)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn eight_bit_data_is_announced_and_refused_where_not_offered() {
        let m = message("Subject: x\r\n\r\nGrüße\r\n");
        let e = envelope("a@example.test", "b@example.test");
        assert_eq!(mail(&["8BITMIME"], &e, &m).unwrap(), ["BODY=8BITMIME"]);
        let err = mail(&[], &e, &m).unwrap_err();
        assert!(matches!(err, Error::Data(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::DATAERR);
    }

    #[test]
    fn utf8_address_needs_smtputf8() {
        let m = message("From: jörg@example.test\r\n\r\nx\r\n");
        let e = envelope("jörg@example.test", "b@example.test");
        assert_eq!(
            mail(&["8BITMIME", "SMTPUTF8"], &e, &m).unwrap(),
            ["BODY=8BITMIME", "SMTPUTF8"]
        );
        let err = mail(&["8BITMIME"], &e, &m).unwrap_err();
        assert!(matches!(err, Error::Unsendable(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
    }

    #[test]
    fn utf8_header_fields_need_smtputf8() {
        let e = envelope("a@example.test", "r@example.test");
        let m = message("From: Jörg <a@example.test>\r\nSubject: Grüße\r\n\r\nx\r\n");
        assert_eq!(
            mail(&["8BITMIME", "SMTPUTF8"], &e, &m).unwrap(),
            ["BODY=8BITMIME", "SMTPUTF8"]
        );
        // Only the header counts: 8-bit text in the body is 8BITMIME's business.
        let m = message("Subject: x\r\n\r\nGrüße\r\n");
        assert_eq!(
            mail(&["8BITMIME", "SMTPUTF8"], &e, &m).unwrap(),
            ["BODY=8BITMIME"]
        );
    }

    #[test]
    fn size_is_announced_and_a_message_over_the_limit_is_refused_before_sending() {
        let m = message("Subject: x\n\nbody\nlast");
        let e = envelope("a@example.test", "b@example.test");
        // Every line end counted as CRLF, the last line ended.
        let size = m.wire_size();
        assert_eq!(size, wire_size(b"Subject: x\n\nbody\nlast"));
        assert_eq!(size, "Subject: x\r\n\r\nbody\r\nlast\r\n".len() as u64);
        let p = parameters(|k| k == "SIZE", Some(1000), &e, &m, &Dsn::default()).unwrap();
        assert_eq!(p.mail, [format!("SIZE={size}")]);
        let err = parameters(|k| k == "SIZE", Some(10), &e, &m, &Dsn::default()).unwrap_err();
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
        let text = err.to_string();
        assert!(
            text.contains(&size.to_string()) && text.contains("10 bytes"),
            "{text}"
        );
    }

    #[test]
    fn wire_size_counts_crlf_forms_alike() {
        for text in ["a\nb\n", "a\r\nb\r\n", "a\rb\r", "a\nb"] {
            assert_eq!(wire_size(text.as_bytes()), 6, "{text:?}");
        }
        assert_eq!(wire_size(b""), 0);
    }

    #[test]
    fn dsn_parameters_go_where_they_belong() {
        let m = message("Subject: x\r\n\r\nbody\r\n");
        let e = envelope("a@example.test", "b@example.test");
        let dsn = Dsn {
            notify: Some("SUCCESS,FAILURE".into()),
            ret: Some("HDRS".into()),
            envid: Some("id+1=2 x".into()),
        };
        let p = parameters(|k| k == "DSN", None, &e, &m, &dsn).unwrap();
        assert_eq!(p.mail, ["RET=HDRS", "ENVID=id+2B1+3D2+20x"]);
        assert_eq!(p.rcpt, ["NOTIFY=SUCCESS,FAILURE"]);
        let p = parameters(|_| false, None, &e, &m, &dsn).unwrap();
        assert_eq!(p, Parameters::default());
    }
}
