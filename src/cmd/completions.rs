//! Shell completions and man pages, generated from the clap definitions so that they never
//! drift from the flags: `dino completions bash|zsh|fish|...` prints a script, `dino man
//! --output_dir DIR` writes `dino.1` and one page per subcommand (`dino-train.1`, ...).
//! `make install` puts both where shells and `man` look.

use crate::files::ShowPath;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;

/// The completion script of `shell` on stdout.
pub fn print(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = super::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dino", &mut out);
    use std::io::Write as _;
    std::io::stdout().write_all(&out).context("cannot write the completion script to stdout")?;
    Ok(0)
}

/// Writes the man pages into `dir` (created if needed): `dino.1` and one per subcommand.
pub fn write_man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.shown()))?;
    let cmd = super::cli::Cli::command();
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("cannot write the man pages into {}", dir.shown()))
}
