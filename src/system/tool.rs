//! Running a program of the system (`getent`, `useradd`, `systemctl`) and saying
//! how it failed: its exit status and what it wrote on standard error.

use std::fmt;
use std::process::{Command, Stdio};

/// A program that could not be run, or that failed.
#[derive(Debug)]
pub struct ToolError {
    /// The command line, as a shell would read it.
    pub command: String,
    /// Why: the error of exec(2), or the exit status and standard error.
    pub detail: String,
    /// The exit code, where it exited.
    pub code: Option<i32>,
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.detail)
    }
}

impl std::error::Error for ToolError {}

/// Runs `program` with `args`, its standard input closed, and returns its standard
/// output when it exits 0.
pub fn run(program: &str, args: &[&str]) -> Result<String, ToolError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ToolError {
            command: command.clone(),
            detail: format!("cannot run it: {e}"),
            code: None,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    let status = match output.status.code() {
        Some(code) => format!("exit {code}"),
        None => output.status.to_string(),
    };
    Err(ToolError {
        command,
        detail: if stderr.is_empty() {
            status
        } else {
            format!("{status}: {stderr}")
        },
        code: output.status.code(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_of_a_success() {
        assert_eq!(run("echo", &["a", "b"]).unwrap(), "a b\n");
    }

    #[test]
    fn a_failure_says_its_status_and_stderr() {
        let err = run("sh", &["-c", "echo oops >&2; exit 3"]).unwrap_err();
        assert_eq!(err.code, Some(3));
        assert_eq!(
            err.to_string(),
            "`sh -c echo oops >&2; exit 3` failed: exit 3: oops"
        );
        let err = run("false", &[]).unwrap_err();
        assert_eq!(err.to_string(), "`false` failed: exit 1");
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = run("/nonexistent/program", &[]).unwrap_err();
        assert_eq!(err.code, None);
        assert!(err.detail.starts_with("cannot run it: "), "{}", err.detail);
    }
}
