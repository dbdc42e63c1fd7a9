//! What every seedship command line has in common: shell completions and man pages made from
//! its clap definition (`PROGRAM completions SHELL`, `PROGRAM man --dir DIR`), and the check
//! that every argument and command says what it is for.

use std::path::{Path, PathBuf};

/// The shells `completions` writes for.
pub use clap_complete::Shell;

/// Writes `cmd`'s completion script for `shell` to `out`.
pub fn completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn std::io::Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes a man page (section 1) for `cmd` and one for each of its commands
/// (`seedctl-seeds.1`, ...) into `dir`, created if missing; returns the files written.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    write_page(&cmd, cmd.get_name(), dir, &mut written)?;
    Ok(written)
}

fn write_page(cmd: &clap::Command, name: &str, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let page = cmd.clone().name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    std::fs::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// Every argument and command of `cmd` (all the way down) without help text, as
/// `"seedctl seeds --limit"`: what a test holds empty.
pub fn undocumented(cmd: &clap::Command) -> Vec<String> {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, cmd.get_name(), &mut out);
    out
}

fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if a.is_hide_set() || id == "help" || id == "version" || a.is_global_set() && path.contains(' ') {
            continue;
        }
        if a.get_help().is_none() && a.get_long_help().is_none() {
            let shown = a.get_long().map(|l| format!("--{l}")).unwrap_or_else(|| id.to_uppercase());
            out.push(format!("{path} {shown}"));
        }
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            out.push(sub_path.clone());
        }
        walk(sub, &sub_path, out);
    }
}

/// The `completions` and `man` commands every program has.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DocCmd {
    /// Print a shell completion script, e.g. `PROGRAM completions bash >
    /// /etc/bash_completion.d/PROGRAM`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: Shell,
    },
    /// Write man pages (section 1) for this program and each of its commands into a folder.
    Man {
        /// Where to write them, e.g. /usr/local/share/man/man1.
        #[arg(long)]
        dir: PathBuf,
    },
}

impl DocCmd {
    /// Runs the command for the program `cmd` describes; the exit code.
    pub fn run(&self, cmd: clap::Command) -> std::process::ExitCode {
        match self {
            DocCmd::Completions { shell } => {
                let mut buf = Vec::new();
                completions(cmd, *shell, &mut buf);
                crate::stdout::print(&String::from_utf8_lossy(&buf))
            }
            DocCmd::Man { dir } => match man_pages(cmd, dir) {
                Ok(files) => crate::stdout::print(&format!("wrote {} man page(s) into {}", files.len(), dir.display())),
                Err(e) => {
                    eprintln!("error: cannot write man pages into {}: {e}", dir.display());
                    std::process::ExitCode::FAILURE
                }
            },
        }
    }
}
