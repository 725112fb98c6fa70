//! `--recipe auto` at the command line: counts the data set's images, derives the settings that
//! fit them (`config::recipe`), and writes what it chose and why, and what would fail, under
//! `--print-config`. Settings given as flags win over the recipe.

use crate::config::recipe::{self, Derived, Plan};
use crate::config::{ConfigError, TrainConfig};

/// What the recipe did to a config, for `--print-config`.
#[derive(Debug, Clone, Default)]
pub struct RecipeReport {
    pub plan: Option<Plan>,
    pub derived: Vec<Derived>,
}

/// `--recipe` values: `reference` (the default: the preset or the reference's values as they
/// are) or `auto`.
pub fn is_auto(recipe: Option<&str>) -> Result<bool, ConfigError> {
    match recipe {
        None | Some("reference") => Ok(false),
        Some("auto") => Ok(true),
        Some(other) => Err(ConfigError::invalid("recipe", other, "auto or reference")),
    }
}

/// The processes a run will have: `--nproc_per_node`, else torchrun's `WORLD_SIZE`, else 1.
pub fn world_size(nproc_per_node: Option<usize>) -> usize {
    nproc_per_node.or_else(|| std::env::var("WORLD_SIZE").ok().and_then(|v| v.trim().parse().ok())).unwrap_or(1).max(1)
}

/// The plan of `c`: the pretext images under `data_path` (before any `--exclude`) and the steps.
pub fn plan(c: &TrainConfig, world: usize) -> Result<Plan, ConfigError> {
    let layout = crate::data::DataLayout::discover(&c.run.data_path)
        .map_err(|e| ConfigError::invalid("recipe", "auto", &format!("a --data_path whose images can be counted ({e})")))?;
    Ok(Plan::new(c, layout.pretext().len(), world))
}

/// Applies `--recipe auto` to `c`, leaving `pinned` settings (given as flags) as they are.
pub fn apply_auto(c: &mut TrainConfig, pinned: &[&str], world: usize) -> Result<RecipeReport, ConfigError> {
    let plan = plan(c, world)?;
    let derived = recipe::apply_auto(c, &plan, pinned);
    Ok(RecipeReport { plan: Some(plan), derived })
}

/// The lines `--print-config` adds after the TOML: the recipe's choices and the plan's warnings,
/// as TOML comments so the output still loads as a config.
pub fn explain(c: &TrainConfig, report: &RecipeReport) -> Vec<String> {
    let mut lines = vec![];
    let Some(plan) = report.plan else { return lines };
    lines.push(format!(
        "# plan: {} images, {} steps per epoch, {} steps; teacher EMA half-life {:.0} steps",
        plan.images,
        plan.steps_per_epoch,
        plan.total_steps(),
        recipe::ema_half_life(c.teacher.momentum_teacher)
    ));
    if !report.derived.is_empty() {
        lines.push("# --recipe auto chose:".into());
    }
    for d in &report.derived {
        lines.push(format!("#   {} = {}: {}", d.setting, d.value, d.reason));
    }
    for w in recipe::warnings(c, &plan) {
        lines.push(format!("# warning: {w}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_values() {
        assert!(!is_auto(None).unwrap());
        assert!(!is_auto(Some("reference")).unwrap());
        assert!(is_auto(Some("auto")).unwrap());
        assert!(is_auto(Some("fast")).unwrap_err().to_string().contains("recipe"));
        assert_eq!(world_size(Some(4)), 4);
    }
}
