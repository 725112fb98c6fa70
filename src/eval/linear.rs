//! Linear probe (placeholder while being written).
use super::args::LinearArgs;
pub fn run_command(_args: &LinearArgs) -> anyhow::Result<i32> {
    anyhow::bail!("dino eval linear: not written yet")
}
