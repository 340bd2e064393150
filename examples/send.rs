//! Sends one short message through the outbox library.
//!
//! cargo run --example send -- 127.0.0.1:2525 from@example.test to@example.test

use std::process::ExitCode;

use outbox::compose::{self, Draft};
use outbox::{Envelope, Mailbox, Settings, exit};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, from, to] = args.as_slice() else {
        eprintln!("usage: send SERVER[:PORT] FROM TO");
        return ExitCode::from(exit::USAGE);
    };
    match send(server, from, to) {
        Ok(reply) => {
            println!("accepted: {reply}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("send: {e}");
            ExitCode::from(exit::code(&e))
        }
    }
}

fn send(server: &str, from: &str, to: &str) -> Result<String, outbox::Error> {
    let usage = |e: outbox::envelope::AddressError| outbox::Error::Usage(e.to_string());
    let from = Mailbox::parse(from).map_err(usage)?;
    let to = Mailbox::parse(to).map_err(usage)?;
    let draft = Draft {
        from: Some(from.clone()),
        to: vec![to.clone()],
        subject: Some("Hello from the outbox library".into()),
        text: b"This message was built with outbox::compose and sent with outbox::submit.\n"
            .to_vec(),
        ..Draft::default()
    };
    let message = compose::build(&draft, &outbox::settings::fqdn())?;
    // The same settings the command line would give for `--server SERVER`.
    let cli = outbox::cli::Cli {
        connect: outbox::cli::ConnectArgs {
            server: Some(server.to_owned()),
            ..Default::default()
        },
        ..outbox::cli::Cli::default()
    };
    let settings = Settings::from_cli(&cli)?;
    let envelope = Envelope::new(Some(from.address), [to.address]);
    let receipt = outbox::submit(&settings, &envelope, &message)?;
    Ok(receipt.reply.to_string())
}
