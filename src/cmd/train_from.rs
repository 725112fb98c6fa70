//! `dino train --pretrained_weights FILE` / `--resume_from FILE` without `--config`: the networks'
//! shape comes from the file (a reference checkpoint's `args`, then the tensors), and a continued
//! reference run takes all the settings it shares with `main_dino.py`, so the weights load and
//! the schedules go on without repeating the flags they were trained with. Flags given on the
//! command line still win: they are applied afterwards.

use crate::config::infer::{self, ArgScope};
use crate::config::{Arch, ConfigError, TrainConfig};
use crate::files::ShowPath;
use crate::run::pytorch;
use std::path::Path;

/// Fills `c` from the file `--resume_from` (all shared settings) or `--pretrained_weights` (the
/// networks' shape) names; `arch` is the `--arch` flag, which keeps the family it names.
pub fn overlay(c: &mut TrainConfig, pretrained: Option<&Path>, resume: Option<&Path>, arch: Option<&str>) -> Result<(), ConfigError> {
    let (path, scope, flag) = match (resume, pretrained) {
        (Some(p), _) => (p, ArgScope::Training, "resume_from"),
        (None, Some(p)) => (p, ArgScope::Model, "pretrained_weights"),
        (None, None) => return Ok(()),
    };
    let file = pytorch::read(path).map_err(|e| ConfigError::invalid(flag, path.shown(), &format!("a readable weights file ({e})")))?;
    let mut arch_known = false;
    if let Some(a) = arch {
        c.model.arch = Arch::parse(a).ok_or_else(|| ConfigError::invalid("arch", a, &format!("one of {}", Arch::names())))?;
        arch_known = true;
    }
    if let Some(args) = file.args.as_ref().filter(|_| !arch_known) {
        let report = infer::apply_reference_args(c, args, scope);
        arch_known = report.taken.iter().any(|t| t.starts_with("arch ="));
        for r in &report.refused {
            crate::say_err!("note: {}: args.{r}", path.shown());
        }
        if let (ArgScope::Training, Some(n)) = (scope, report.world_size.filter(|&n| n > 1)) {
            crate::say_err!(
                "note: the reference run had {n} processes: with fewer, an epoch has more iterations and the learning rate \
                 (scaled by the total batch) is lower; --batch_size_per_gpu times processes is what it trained with"
            );
        }
    }
    if let Ok(net) = file.network("teacher") {
        infer::from_backbone(c, &net.backbone, arch_known);
    }
    for note in &file.notes {
        crate::say_err!("note: {}: {note}", path.shown());
    }
    Ok(())
}
