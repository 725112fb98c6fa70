//! What each subcommand of `dino` does, from parsed arguments to an exit code: training in the
//! TUI or headless (or detached), the demo, and the hand-off to the other front-ends.

use super::cli::{Cli, Command, EvalCommand};
use crate::config::TrainConfig;
use crate::files::ShowPath;
use anyhow::Result;
use std::io::IsTerminal;

/// The TUI when stdout is a terminal (and --headless was not given), progress lines otherwise.
fn train(config: TrainConfig, force_headless: bool, theme: Option<String>) -> Result<i32> {
    Ok(super::foreground::train_to_end(config, force_headless, theme)?.1)
}

/// `dino train --detach`: how long to wait for the trainer to serve before reporting it started.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `--print-config`: the TOML, then the plan as comments (the data counted even without
/// `--recipe auto`, when it can be).
fn print_config(config: &TrainConfig, report: super::recipe::RecipeReport, nproc_per_node: Option<usize>) {
    crate::say!("{}", config.to_toml().trim_end());
    let report = match report.plan {
        Some(_) => report,
        None => super::recipe::RecipeReport {
            plan: super::recipe::plan(config, super::recipe::world_size(nproc_per_node)).ok(),
            derived: vec![],
        },
    };
    for line in super::recipe::explain(config, &report) {
        crate::say!("{line}");
    }
}

fn detach(config: TrainConfig) -> Result<i32> {
    let d = super::detach::start(config, DETACH_WAIT)?;
    let how = if d.serving { "training" } else { "still starting (slow to build its model?)" };
    crate::say!("dino: {how} in the background, pid {}", d.pid);
    crate::say!("run directory: {}", d.run_dir.shown());
    crate::say!("output: {}", d.log.shown());
    crate::say!("watch: dino attach {}    steer: dino ctl {} status|pause|resume|checkpoint|stop", d.run_dir.shown(), d.run_dir.shown());
    Ok(0)
}

/// `dino train`: checks that need no process, then the launcher, the plan, detached, or here.
fn train_command(args: super::cli::TrainArgs) -> Result<i32> {
    let (config, report) = args.resolve_explained()?;
    if config.run.data_path == TrainConfig::default().run.data_path && !args.print_config {
        // The reference's placeholder, not a folder anyone has: say what to give, before
        // anything is created.
        anyhow::bail!(
            "no data: give --data_path DIR (a folder of images, or pretext/ train/ val/ as docs/configuration.md \
             shows), or data_path in the config; `dino demo` trains on a synthetic set it writes itself"
        );
    }
    if super::recipe::world_size(args.nproc_per_node) > 1 && config.teacher.centering == crate::config::Centering::SinkhornKnopp {
        // Refused before any process starts; the step would refuse it at the join anyway.
        return Err(crate::config::ConfigError::invalid(
            "centering",
            "sinkhorn_knopp",
            "ema with several processes (Sinkhorn-Knopp runs in one)",
        )
        .into());
    }
    if let Some(n) = args.nproc_per_node.filter(|&n| n > 1) {
        if std::env::var_os("RANK").is_some() {
            anyhow::bail!("--nproc_per_node starts the ranks itself; under torchrun or srun leave it out");
        }
        if !crate::dist::AVAILABLE {
            return Err(crate::dist::DistError::NotBuilt.into());
        }
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        return super::launch::run_local(n, &args);
    }
    if args.print_config {
        print_config(&config, report, args.nproc_per_node);
        return Ok(0);
    }
    if args.detach {
        return detach(config);
    }
    train(config, false, args.theme)
}

/// Carries out one command line; the exit code for the process.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Train(args) => train_command(args),
        Command::Tui(args) => {
            let config = args.resolve()?;
            if !std::io::stdout().is_terminal() {
                anyhow::bail!("dino tui needs a terminal; use `dino train --headless` for batch jobs");
            }
            train(config, false, args.theme)
        }
        Command::Demo(args) => super::demo::run(args),
        Command::MakeDemoData { dir, per_class, seed, size } => {
            let summary = crate::data::write_demo_dataset(&dir, per_class, seed, size)?;
            crate::say!("{summary}");
            Ok(0)
        }
        // A run as `dino runs` names it works wherever a run is taken.
        Command::Attach { run_dir, theme } => {
            let index = crate::run::index::default_index_path();
            super::attach::run(run_dir.map(|r| crate::run::runs::resolve(&r, index.as_deref())), theme)
        }
        Command::Ctl { run_dir, command } => {
            let index = crate::run::index::default_index_path();
            Ok(super::ctl::run(&crate::run::runs::resolve(&run_dir, index.as_deref()), &command))
        }
        Command::Compare(args) => super::compare::run(&args),
        Command::Runs { dir, json, sort } => {
            let dir = dir.unwrap_or_else(|| "runs".into());
            let index = crate::run::index::default_index_path();
            let mut runs = crate::run::runs::list(&dir, index.as_deref());
            crate::run::runs::sort(&mut runs, sort);
            if json {
                crate::say!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                crate::say!("no runs in {} or in the run index", dir.shown());
            } else {
                crate::say!("{}", crate::run::runs::table(&runs).trim_end());
            }
            Ok(0)
        }
        Command::Eval(EvalCommand::Knn(a)) => super::eval::knn(&a),
        Command::Eval(EvalCommand::Linear(a)) => super::eval_linear::run_command(&a),
        Command::Eval(EvalCommand::LabelEfficiency(a)) => super::eval_label_efficiency::run_command(&a),
        Command::Outliers(a) => super::eval::outliers(&a),
        Command::Export(a) => super::export::run(&a),
        Command::Attention(a) => super::attention::run(&a),
        Command::Embed(a) => super::embed::run(&a),
        Command::Search(a) => super::search::run(&a),
        Command::Duplicates(a) => super::duplicates::run(&a),
        Command::Completions { shell } => super::completions::print(shell),
        Command::Man { output_dir } => {
            super::completions::write_man_pages(&output_dir)?;
            crate::say!("man pages written into {}", output_dir.shown());
            Ok(0)
        }
    }
}
