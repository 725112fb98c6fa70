//! The TUI against a fake trainer thread, to try the interface without libtorch work:
//! `cargo run --example tui_demo [-- THEME]`. Pause, resume, checkpoint, edit and stop behave as
//! a real trainer would answer them.

use dino_tui::protocol::schedule::{CurveSpec, Schedule, ScheduleName};
use dino_tui::protocol::*;
use dino_tui::tui::{run_tui, TuiOptions};
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let log = dino_tui::cmd::logging::init_default_file_logging();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded::<Command>();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded::<Event>();
    let trainer = std::thread::spawn(move || fake_trainer(cmd_rx, ev_tx));
    let opts = TuiOptions { theme: std::env::args().nth(1), ..Default::default() };
    let exit = run_tui(opts, cmd_tx, ev_rx)?;
    println!("TUI exit: {exit:?}; log: {}", log.map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()));
    // The fake trainer ends on Stop or when the UI's channel closes.
    let _ = trainer.join();
    Ok(())
}

fn fake_trainer(commands: crossbeam_channel::Receiver<Command>, events: crossbeam_channel::Sender<Event>) {
    let (epochs, niter) = (20, 200);
    let cos = |base, final_value, warmup_epochs| CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value: 0.0 };
    let mut schedules = vec![
        (ScheduleName::Lr, Schedule::new(cos(5e-4, 1e-6, 2), epochs, niter)),
        (ScheduleName::Wd, Schedule::new(cos(0.04, 0.4, 0), epochs, niter)),
        (ScheduleName::TeacherTemp, Schedule::new(CurveSpec::WarmupConstant { start: 0.04, value: 0.07, warmup_epochs: 5 }, epochs, niter)),
        (ScheduleName::Momentum, Schedule::new(cos(0.996, 1.0, 0), epochs, niter)),
    ];
    let send = |e: Event| events.send(e).is_ok();
    send(Event::Started(RunInfo {
        run_dir: "runs/demo".into(),
        name: "demo".into(),
        arch: "vit_tiny".into(),
        device: "cpu".into(),
        epochs,
        niter_per_ep: niter,
        batch_size: 32,
        out_dim: 4096,
        num_images: 6400,
        start_iter: 0,
    }));
    send(Event::Schedules { schedules: schedules.clone() });
    send(Event::State { state: RunState::Running, iter: 0 });
    let mut paused = false;
    let mut i = 0;
    while i < epochs * niter {
        while let Ok(c) = if paused { commands.recv().map_err(|_| ()) } else { commands.try_recv().map_err(|_| ()) } {
            match answer(c, i, niter, &mut paused, &mut schedules, &send) {
                Some(()) => {}
                None => return,
            }
            if !paused {
                break;
            }
        }
        let x = i as f64;
        let value = |n: ScheduleName| schedules.iter().find(|(s, _)| *s == n).map_or(0.0, |(_, s)| s.value(i));
        let ok = send(Event::Metrics(IterMetrics {
            iter: i,
            epoch: i / niter,
            loss: 8.3 * (0.55 + 0.4 * (-x / 800.0).exp()) + 0.1 * (x * 0.7).sin(),
            lr: value(ScheduleName::Lr),
            wd: value(ScheduleName::Wd),
            teacher_temp: value(ScheduleName::TeacherTemp),
            momentum: value(ScheduleName::Momentum),
            iter_time: 0.05,
            data_time: 0.005,
            images_per_s: 640.0,
            teacher_entropy: 5.0,
            kl: 0.3,
            koleo: None,
            time: 1.7e9 + x * 0.05,
        }));
        if !ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
        i += 1;
    }
    send(Event::State { state: RunState::Finished, iter: i });
}

/// How the fake trainer answers a command; None when it stops.
fn answer(
    c: Command,
    i: usize,
    niter: usize,
    paused: &mut bool,
    schedules: &mut [(ScheduleName, Schedule)],
    send: &dyn Fn(Event) -> bool,
) -> Option<()> {
    match c {
        Command::Pause => {
            *paused = true;
            send(Event::State { state: RunState::Paused, iter: i });
        }
        Command::Resume => {
            *paused = false;
            send(Event::State { state: RunState::Running, iter: i });
        }
        Command::Checkpoint => {
            send(Event::CheckpointSaved(CheckpointInfo {
                path: "runs/demo/checkpoints/checkpoint-latest.pth".into(),
                epoch: i / niter,
                iter: i,
                bytes: 50_000_000,
                loss: None,
                time: 1.7e9 + i as f64 * 0.05,
                content_id: None,
            }));
        }
        Command::Stop { .. } => {
            send(Event::State { state: RunState::Stopped, iter: i });
            return None;
        }
        Command::EditSchedule(edit) => {
            if let Some((_, s)) = schedules.iter_mut().find(|(n, _)| *n == edit.schedule) {
                s.apply(edit);
            }
            send(Event::ScheduleEdited { edit });
            send(Event::Schedules { schedules: schedules.to_vec() });
        }
        Command::UndoScheduleEdit { schedule } => {
            if let Some((_, s)) = schedules.iter_mut().find(|(n, _)| *n == schedule) {
                s.undo();
            }
            send(Event::ScheduleUndone { schedule });
            send(Event::Schedules { schedules: schedules.to_vec() });
        }
        Command::Eval { kind, .. } | Command::EvalBaseline { kind } => {
            send(Event::EvalResult { kind, summary: "not available in the demo".into(), json: serde_json::Value::Null });
        }
        Command::Status => {}
    }
    Some(())
}
