//! The `dino` binary: parse the command line, run it, exit with its code. Everything else lives
//! in the library (`dino_tui::cmd` for the front-ends).

use clap::FromArgMatches;

fn main() {
    // A write past the file-size limit (`ulimit -f`) then fails with EFBIG and is reported with the
    // file's name, where the default action killed the process with nothing said.
    // SAFETY: setting a signal's disposition to SIG_IGN at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
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
