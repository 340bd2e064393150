//! The sendmail(1) face: the command line that cron, PHP's `mail()`, git send-email,
//! mutt and daemons pass to `/usr/sbin/sendmail` (`args`), and the finished message
//! they write to its standard input, made fit to send (`input`): long lines folded
//! (`fold`), bare local names given the domain (`qualify`), both reading address lists
//! with `address_list`. Postfix's sendmail(1) and sendmail 8 are the references where
//! the two agree; where they differ, Postfix is followed.

mod address_list;
mod args;
mod fold;
mod input;
mod qualify;

pub use args::{Action, ErrorMode, SendmailArgs, envelope_sender, parse_args};
pub use input::{Fixups, MAX_LINE, Prepared, from_name, prepare, read_message};
