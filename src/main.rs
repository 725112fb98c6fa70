use anyhow::Result;
use clap::Parser;
use dino_tui::cmd::cli::{Cli, Command, DemoArgs, EvalCommand};
use dino_tui::cmd::interactive::Outcome;
use dino_tui::config::TrainConfig;
use dino_tui::protocol::RunState;
use std::io::IsTerminal;

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            dino_tui::say_err!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Exit code of a finished training command: a failed run is an error for scripts.
fn exit_code(state: RunState) -> i32 {
    match state {
        RunState::Failed => 1,
        _ => 0,
    }
}

/// The TUI when stdout is a terminal (and --headless was not given), progress lines otherwise.
fn train(config: TrainConfig, force_headless: bool, theme: Option<String>) -> Result<i32> {
    let headless = force_headless || config.headless || !std::io::stdout().is_terminal();
    if headless {
        return Ok(exit_code(dino_tui::cmd::headless::run(config)?));
    }
    match dino_tui::cmd::interactive::run(config, theme)? {
        Outcome::Ended(state) => {
            match state {
                RunState::Finished => dino_tui::say!("dino: training finished"),
                RunState::Stopped => dino_tui::say!("dino: training stopped after a checkpoint; run the same command to resume"),
                _ => dino_tui::say_err!("dino: training failed; see events.jsonl in the run directory"),
            }
            Ok(exit_code(state))
        }
        Outcome::Detached { pid, log } => {
            dino_tui::say!("dino: training continues in the background (pid {pid}); output in {}", log.display());
            Ok(0)
        }
    }
}

/// `dino train --detach`: how long to wait for the trainer to serve before reporting it started.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

fn detach(config: TrainConfig) -> Result<i32> {
    let d = dino_tui::cmd::detach::start(config, DETACH_WAIT)?;
    let how = if d.serving { "training" } else { "still starting (slow to build its model?)" };
    dino_tui::say!("dino: {how} in the background, pid {}", d.pid);
    dino_tui::say!("run directory: {}", d.run_dir.display());
    dino_tui::say!("output: {}", d.log.display());
    dino_tui::say!(
        "watch: dino attach {}    steer: dino ctl {} status|pause|resume|checkpoint|stop",
        d.run_dir.display(),
        d.run_dir.display()
    );
    Ok(0)
}

fn demo(args: DemoArgs) -> Result<i32> {
    let data = args.dir.join("data");
    let summary = dino_tui::data::write_demo_dataset(&data, 60, 0, 48)?;
    dino_tui::say!("{summary}");
    let mut config = dino_tui::config::preset("demo").ok_or_else(|| anyhow::anyhow!("demo preset missing"))?;
    config.data_path = data;
    config.output_dir = Some(args.dir.join("run"));
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    config.validate()?;
    train(config, args.headless, args.theme)
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Train(args) => {
            let config = args.resolve()?;
            if let Some(n) = args.nproc_per_node.filter(|&n| n > 1) {
                if std::env::var_os("RANK").is_some() {
                    anyhow::bail!("--nproc_per_node starts the ranks itself; under torchrun or srun leave it out");
                }
                if !dino_tui::dist::AVAILABLE {
                    return Err(dino_tui::dist::DistError::NotBuilt.into());
                }
                let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
                return dino_tui::cmd::launch::run_local(n, &args);
            }
            if args.print_config {
                dino_tui::say!("{}", config.to_toml().trim_end());
                return Ok(0);
            }
            if args.detach {
                return detach(config);
            }
            train(config, false, args.theme)
        }
        Command::Tui(args) => {
            let config = args.resolve()?;
            if !std::io::stdout().is_terminal() {
                anyhow::bail!("dino tui needs a terminal; use `dino train --headless` for batch jobs");
            }
            train(config, false, args.theme)
        }
        Command::Demo(args) => demo(args),
        Command::MakeDemoData { dir, per_class, seed, size } => {
            let summary = dino_tui::data::write_demo_dataset(&dir, per_class, seed, size)?;
            dino_tui::say!("{summary}");
            Ok(0)
        }
        Command::Attach { run_dir } => dino_tui::cmd::attach::run(run_dir),
        Command::Ctl { run_dir, command } => Ok(dino_tui::cmd::ctl::run(&run_dir, &command)),
        Command::Runs { dir } => {
            let dir = dir.unwrap_or_else(|| "runs".into());
            let index = dino_tui::run::index::default_index_path();
            let runs = dino_tui::run::runs::list(&dir, index.as_deref());
            if runs.is_empty() {
                dino_tui::say!("no runs in {} or in the run index", dir.display());
            } else {
                dino_tui::say!("{}", dino_tui::run::runs::table(&runs).trim_end());
            }
            Ok(0)
        }
        Command::Eval(EvalCommand::Knn(a)) => dino_tui::cmd::eval::knn(&a),
        Command::Eval(EvalCommand::Linear(a)) => dino_tui::cmd::eval::linear(&a),
        Command::Eval(EvalCommand::LabelEfficiency(a)) => dino_tui::cmd::eval::label_efficiency(&a),
        Command::Outliers(a) => dino_tui::cmd::eval::outliers(&a),
    }
}
