//! Where the repository passphrase (or recovery key) comes from: a file, the environment, or
//! a prompt. Never from a command-line argument (it would show in `ps`), never logged.

use std::io::IsTerminal;
use std::path::Path;

use seedship_repo::Unlock;

/// Reads a secret from a file that only its owner can read (first line, trailing newline off).
pub fn from_file(path: &Path) -> Result<String, String> {
    let raw = seedship_proto::keyfile::read_private(path).map_err(|e| e.to_string())?;
    let s = String::from_utf8(raw).map_err(|_| format!("{} is not text", path.display()))?;
    let line = s.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(line)
}

/// The passphrase: `--passphrase-file`, else `SEEDSHIP_PASSPHRASE`, else a prompt on a
/// terminal (asked twice when `confirm`).
pub fn passphrase(file: Option<&Path>, confirm: bool) -> Result<String, String> {
    if let Some(f) = file {
        return from_file(f);
    }
    if let Ok(p) = std::env::var("SEEDSHIP_PASSPHRASE")
        && !p.is_empty()
    {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err("no passphrase: give --passphrase-file FILE or set SEEDSHIP_PASSPHRASE".into());
    }
    let p = rpassword::prompt_password("repository passphrase: ").map_err(|e| e.to_string())?;
    if confirm {
        let again = rpassword::prompt_password("repository passphrase again: ").map_err(|e| e.to_string())?;
        if again != p {
            return Err("the two passphrases differ".into());
        }
    }
    if p.is_empty() {
        return Err("the passphrase is empty".into());
    }
    Ok(p)
}

/// How to open an existing repository: the recovery key if one is given
/// (`--recovery-key-file` or `SEEDSHIP_RECOVERY_KEY`), else the passphrase.
pub fn unlock(passphrase_file: Option<&Path>, recovery_file: Option<&Path>) -> Result<Unlock, String> {
    if let Some(f) = recovery_file {
        return Ok(Unlock::RecoveryKey(from_file(f)?));
    }
    if let Ok(k) = std::env::var("SEEDSHIP_RECOVERY_KEY")
        && !k.is_empty()
    {
        return Ok(Unlock::RecoveryKey(k));
    }
    passphrase(passphrase_file, false).map(Unlock::Passphrase)
}
