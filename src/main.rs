//! The `dino` binary: parse the command line, run it, exit with its code. Everything else lives
//! in the library (`dino_tui::cmd` for the front-ends).

use clap::Parser;

fn main() {
    let cli = dino_tui::cmd::cli::Cli::parse();
    match dino_tui::cmd::dispatch::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            dino_tui::say_err!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
