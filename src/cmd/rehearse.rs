//! `--quit-after STAGE`: the compose face's session as far as a stage, then QUIT; what
//! the server said is the result, and no message is sent.

use outbox::envelope::Envelope;
use outbox::{Message, Settings, error, exit};

use super::output::say;

/// Runs the rehearsal and says what came of it: the refused recipients on standard
/// error, the report with `--json`, how far it went with `-v`. The exit code is the
/// one sending would have had so far: 0 when everything asked was accepted.
pub fn run(settings: &Settings, envelope: &Envelope, message: &Message, json: bool) -> u8 {
    let options = outbox::Options::for_settings(settings);
    let (result, report) = outbox::rehearse_reported(settings, envelope, message, options);
    let code = match &result {
        Ok(rehearsal) => exit::refusals_code(&rehearsal.refused()).unwrap_or(exit::OK),
        Err(e) => exit::code(e),
    };
    if json {
        let stopped = result.as_ref().map(|r| r.stopped_after);
        super::print_json(&outbox::report::json_rehearsal(&report, stopped, code));
    }
    let rehearsal = match result {
        Ok(rehearsal) => rehearsal,
        Err(e) => {
            say!("outbox: {e}");
            return code;
        }
    };
    let refused = rehearsal.refused();
    if !refused.is_empty() {
        say!(
            "outbox: {} of {} recipients would be refused:\n{}",
            refused.len(),
            rehearsal.recipients.len(),
            error::list(&refused)
        );
    }
    if settings.verbose {
        let mut line = format!(
            "* stopped after {}, as --quit-after asked; no message was sent",
            rehearsal.stopped_after.key()
        );
        if !rehearsal.recipients.is_empty() {
            let accepted = rehearsal.recipients.len() - refused.len();
            line.push_str(&format!(
                "; {accepted} of {} recipients accepted",
                rehearsal.recipients.len()
            ));
        }
        say!("{line}");
    }
    code
}
