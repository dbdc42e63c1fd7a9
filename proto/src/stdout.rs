//! A command's output on standard output, as Unix tools write it: a reader that went away
//! (`| head`, a closed pager) ends the program quietly with success, not with a panic.

use std::io::Write;
use std::process::ExitCode;

/// Writes `text` and a newline to standard output. A closed pipe is success (the reader has
/// what it wanted); any other write error is said on standard error and is a failure.
pub fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}
