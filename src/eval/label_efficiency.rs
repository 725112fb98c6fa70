//! Label efficiency (placeholder while being written).
use super::args::LabelEfficiencyArgs;
pub fn run_command(_args: &LabelEfficiencyArgs) -> anyhow::Result<i32> {
    anyhow::bail!("dino eval label-efficiency: not written yet")
}
