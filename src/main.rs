use anyhow::Result;
use clap::Parser;
use dino_tui::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let config = args.resolve()?;
            if args.print_config {
                print!("{}", config.to_toml());
                return Ok(());
            }
            anyhow::bail!("training arrives with the training-loop issue")
        }
        Command::MakeDemoData { dir, per_class, seed, size } => {
            let summary = dino_tui::data::write_demo_dataset(&dir, per_class, seed, size)?;
            println!("{summary}");
            Ok(())
        }
        other => anyhow::bail!("`{other:?}` is not available yet"),
    }
}
