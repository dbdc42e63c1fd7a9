//! Failpoints for tests: named places in the code where a test makes a process pause or stop
//! as a crash would. They exist only in builds with the `failpoints` feature (the test build
//! turns it on); otherwise [`eval`] and [`eval_async`] are empty and compile to nothing.
//!
//! A test sets `SEEDSHIP_FAILPOINTS="name=action;name=action"`, where an action is
//! `sleep(MS)` (pause there, every time) or `exit(CODE)` (end the process at once, nothing
//! after it runs). The places: `vault-copy` (the coordinator, after each file it copies into a
//! vault), `azure-before-put` (the coordinator's Azure worker, right before it checks its
//! workers' fence and creates an import job), `incremental-before-upload`, `incremental-after-packs`, `incremental-before-report`
//! (the source agent's online backup), `read-back` (the copy agent, before it reads back a
//! disk it has written and unmounted).

/// The environment variable tests set.
pub const ENV: &str = "SEEDSHIP_FAILPOINTS";

/// What a failpoint does when hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Sleep(u64),
    Exit(i32),
}

/// The action `spec` gives `name`, if any (`name=sleep(MS)` or `name=exit(CODE)`, `;`-separated).
pub fn parse(spec: &str, name: &str) -> Option<Action> {
    spec.split(';').filter_map(|p| p.trim().split_once('=')).find(|(n, _)| n.trim() == name).and_then(|(_, a)| {
        let a = a.trim();
        let arg = |prefix: &str| a.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
        if let Some(ms) = arg("sleep(") {
            return ms.parse().ok().map(Action::Sleep);
        }
        arg("exit(").and_then(|c| c.parse().ok()).map(Action::Exit)
    })
}

#[cfg(feature = "failpoints")]
fn action(name: &str) -> Option<Action> {
    parse(&std::env::var(ENV).ok()?, name)
}

/// Evaluates failpoint `name` (blocking: a sleep blocks the thread).
#[inline]
pub fn eval(name: &str) {
    #[cfg(feature = "failpoints")]
    match action(name) {
        Some(Action::Sleep(ms)) => std::thread::sleep(std::time::Duration::from_millis(ms)),
        Some(Action::Exit(code)) => {
            eprintln!("failpoint {name}: the process stops here");
            std::process::exit(code);
        }
        None => {}
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Evaluates failpoint `name` in async code (a sleep yields).
#[inline]
pub async fn eval_async(name: &str) {
    #[cfg(feature = "failpoints")]
    match action(name) {
        Some(Action::Sleep(ms)) => {
            eprintln!("failpoint {name}: pausing {ms} ms");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await
        }
        Some(Action::Exit(code)) => {
            eprintln!("failpoint {name}: the process stops here");
            std::process::exit(code);
        }
        None => {}
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_their_actions() {
        let spec = "vault-copy=sleep(1500); incremental-after-packs=exit(137)";
        assert_eq!(parse(spec, "vault-copy"), Some(Action::Sleep(1500)));
        assert_eq!(parse(spec, "incremental-after-packs"), Some(Action::Exit(137)));
        assert_eq!(parse(spec, "other"), None);
        assert_eq!(parse("vault-copy=sleep(soon)", "vault-copy"), None);
        assert_eq!(parse("", "vault-copy"), None);
    }
}
