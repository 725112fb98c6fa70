//! The `dino` binary: parse the command line, run it, exit with its code. Everything else lives
//! in the library (`dino_tui::cmd` for the front-ends).

use clap::FromArgMatches;

fn main() {
    // Before anything asks libtorch about CUDA (it keeps its first answer).
    let cuda = dino_tui::model::cuda_backend::load();
    let version = dino_tui::cmd::build_info::long_version(cuda);
    // clap keeps &'static strings; one string per process.
    let matches = dino_tui::cmd::cli::command().long_version(&*Box::leak(version.into_boxed_str())).get_matches();
    let cli = dino_tui::cmd::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match dino_tui::cmd::dispatch::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            dino_tui::say_err!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
