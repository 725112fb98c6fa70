//! `dino compare`: runs side by side, as a table for people or one JSON document for scripts
//! (`run::compare` reads them; this file only prints).

use crate::eval::curves::{By, ComparePlot};
use crate::files::ShowPath;
use crate::run::compare::{self, Comparison, Group, Spread};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Run directories or names (as `dino runs` lists them), or folders of runs (a sweep's)
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// One JSON document (schema in docs/runs.md, "Comparing runs") instead of the table
    #[arg(long)]
    pub json: bool,
    /// Also draw the runs' loss and k-NN curves, overlaid, into FILE.svg or FILE.png
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The plot's x axis: iter (iterations) or time (minutes spent in iterations)
    #[arg(long, default_value = "iter", value_parser = By::parse)]
    pub by: By,
}

pub fn run(args: &CompareArgs) -> anyhow::Result<i32> {
    let index = crate::run::index::default_index_path();
    let named: Vec<PathBuf> = args.runs.iter().map(|r| crate::run::runs::resolve(r, index.as_deref())).collect();
    let dirs = compare::expand(&named).map_err(anyhow::Error::msg)?;
    let c = compare::compare(&dirs);
    if let Some(path) = &args.plot {
        // Checked before the curves are read: a wrong extension should not cost a pass over every run.
        crate::eval::figure::is_svg(path)?;
    }
    // Each run's curves, read once for the plot and the advice, in the groups' order.
    let curves: Vec<compare::Curves> =
        if args.plot.is_some() || !args.json { c.groups.iter().flat_map(|g| &g.runs).map(compare::curves).collect() } else { vec![] };
    if let Some(path) = &args.plot {
        plot(&c, &curves, path, args.by)?;
    }
    if args.json {
        crate::say!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        crate::say!("{}", table(&c));
        for line in advice(&c, &curves) {
            crate::say!("{line}");
        }
    }
    if let Some(path) = &args.plot {
        crate::say_err!("plot: {}", path.shown());
    }
    Ok(0)
}

/// Every run's curves in one figure, each labelled by its name and the settings that differ.
fn plot(c: &Comparison, curves: &[compare::Curves], path: &std::path::Path, by: By) -> anyhow::Result<()> {
    let labels = c.groups.iter().flat_map(|g| {
        let settings: Vec<String> =
            c.differing.iter().map(|k| format!("{}={}", title(k, &c.differing), g.settings.get(k).cloned().unwrap_or_default())).collect();
        g.runs.iter().map(move |r| if settings.is_empty() { r.name.clone() } else { format!("{} ({})", r.name, settings.join(", ")) })
    });
    let figure = ComparePlot { runs: labels.zip(curves).collect(), by };
    crate::eval::figure::write(path, &figure)?;
    Ok(())
}

/// One line per run whose k-NN curve has enough points: keep training, or it has flattened.
fn advice(c: &Comparison, curves: &[compare::Curves]) -> Vec<String> {
    let runs = c.groups.iter().flat_map(|g| &g.runs);
    runs.zip(curves)
        .filter_map(|(r, curves)| {
            let a = compare::stop_advice(&curves.knn)?;
            let verdict = if a.flattened { "flattened" } else { "still improving" };
            Some(format!(
                "{}: {verdict}: {:+.1} top-1 over the last 30 % of its {:.1} min; a fit of its k-NN against log(time) gives about {:+.1} for 50 % more ({:.1} min)",
                r.name,
                a.recent_gain,
                a.minutes,
                a.predicted_gain,
                a.minutes * 0.5
            ))
        })
        .collect()
}

/// A differing setting's column title: its last part, unless two differing settings share it.
fn title(key: &str, all: &[String]) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    let shared = all.iter().filter(|k| k.rsplit('.').next() == Some(last)).count() > 1;
    if shared {
        key.to_string()
    } else {
        last.to_string()
    }
}

fn spread(s: Option<Spread>, decimals: usize) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n > 1 => format!("{:.decimals$} ± {:.decimals$}", s.mean, s.sd),
        Some(s) => format!("{:.decimals$}", s.mean),
    }
}

fn row(g: &Group, differing: &[String]) -> Vec<String> {
    let names: Vec<&str> = g.runs.iter().map(|r| r.name.as_str()).collect();
    let mut cells = vec![if names.len() > 3 { format!("{}, ... ({} runs)", names[0], names.len()) } else { names.join(", ") }];
    cells.extend(differing.iter().map(|k| g.settings.get(k).cloned().unwrap_or_default()));
    let mut statuses: Vec<&str> = g.runs.iter().map(|r| r.status.as_str()).collect();
    statuses.dedup();
    cells.extend([
        g.runs.len().to_string(),
        spread(g.best_knn, 1),
        spread(g.last_knn, 1),
        spread(g.loss_at_common, 4),
        spread(g.images_per_s, 1),
        g.train_seconds.map_or("-".into(), |s| crate::human::fmt_duration(s.mean)),
        statuses.join("/"),
    ]);
    cells
}

/// The table: one row per group of runs that differ only by seed (mean ± standard deviation
/// where a group has several), the differing settings as columns.
pub fn table(c: &Comparison) -> String {
    let mut header = vec!["RUN".to_string()];
    header.extend(c.differing.iter().map(|k| title(k, &c.differing).to_uppercase()));
    let loss = c.common_iter.map_or("LOSS".into(), |i| format!("LOSS@{i}"));
    header.extend(["N", "BEST KNN", "LAST KNN", &loss, "IMG/S", "TRAIN TIME", "STATUS"].map(String::from));
    let rows: Vec<Vec<String>> = std::iter::once(header).chain(c.groups.iter().map(|g| row(g, &c.differing))).collect();
    let mut widths = vec![0; rows[0].len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out: String = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            cells.join("  ").trim_end().to_string() + "\n"
        })
        .collect();
    if c.differing.is_empty() && c.groups.len() == 1 && c.groups[0].runs.len() > 1 {
        out.push_str("the runs differ only by seed: one group, mean ± standard deviation\n");
    }
    out.push_str("k-NN: top-1 % (k = 20) of the run's teachers; LOSS: mean of the 20 iterations up to the last one every run reached\n");
    out
}
