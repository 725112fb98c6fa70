//! Micro-benchmark: time to draw one frame at 200x60 on ratatui's TestBackend with 100k recorded
//! iterations, for each tab. Not a test; run `cargo run --release --example bench_draw`.

use dino_tui::protocol::schedule::{CurveSpec, Schedule, ScheduleName};
use dino_tui::protocol::{Event, IterMetrics, RunInfo, RunState};
use dino_tui::telemetry::{GpuSample, GpuStatus, HostSample, Telemetry};
use dino_tui::tui::app::{App, Tab};
use dino_tui::tui::draw::draw;
use dino_tui::tui::keymap::KeyMap;
use dino_tui::tui::theme::Theme;
use dino_tui::tui::trainer_events::apply_event;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::Instant;

const ITERS: usize = 100_000;
const FRAMES: usize = 200;

fn main() -> anyhow::Result<()> {
    let (epochs, niter) = (100, 1000);
    let (tx, _rx) = crossbeam_channel::unbounded();
    let mut app = App::new(tx, Theme::default_theme(), KeyMap::default());
    let cos = |base, final_value, warmup_epochs| CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value: 0.0 };
    let schedules = vec![
        (ScheduleName::Lr, Schedule::new(cos(5e-4, 1e-6, 10), epochs, niter)),
        (ScheduleName::Wd, Schedule::new(cos(0.04, 0.4, 0), epochs, niter)),
        (
            ScheduleName::TeacherTemp,
            Schedule::new(CurveSpec::WarmupConstant { start: 0.04, value: 0.07, warmup_epochs: 30 }, epochs, niter),
        ),
        (ScheduleName::Momentum, Schedule::new(cos(0.996, 1.0, 0), epochs, niter)),
    ];
    apply_event(
        &mut app,
        Event::Started(RunInfo {
            run_dir: "runs/bench".into(),
            name: "bench".into(),
            arch: "vit_small".into(),
            device: "cuda:0".into(),
            epochs,
            niter_per_ep: niter,
            batch_size: 64,
            out_dim: 65536,
            num_images: 64_000,
            start_iter: 0,
        }),
    );
    apply_event(&mut app, Event::Schedules { schedules: schedules.clone() });
    apply_event(&mut app, Event::State { state: RunState::Running, iter: 0 });
    for i in 0..ITERS {
        let x = i as f64;
        apply_event(
            &mut app,
            Event::Metrics(IterMetrics {
                iter: i,
                epoch: i / niter,
                loss: 11.0 * (0.5 + 0.5 * (-x / 5000.0).exp()) + 0.1 * (x * 0.37).sin(),
                lr: schedules[0].1.value(i),
                wd: schedules[1].1.value(i),
                teacher_temp: schedules[2].1.value(i),
                momentum: schedules[3].1.value(i),
                iter_time: 0.3,
                data_time: 0.03,
                images_per_s: 210.0,
                teacher_entropy: 5.0,
                kl: 0.3,
                koleo: None,
                time: x,
            }),
        );
    }
    app.trainer.telemetry = telemetry();
    measure(&mut app)
}

/// Draws every tab FRAMES times and prints the frame times.
fn measure(app: &mut App) -> anyhow::Result<()> {
    let mut term = Terminal::new(TestBackend::new(200, 60))?;
    println!("draw time per frame at 200x60, {ITERS} iterations, {FRAMES} frames per tab");
    for tab in [Tab::Dashboard, Tab::Schedules, Tab::Checkpoints, Tab::Log] {
        app.shell.tab = tab;
        let mut times = Vec::with_capacity(FRAMES);
        for _ in 0..FRAMES {
            let t0 = Instant::now();
            term.draw(|f| draw(app, f))?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:<12} median {:.3} ms  p95 {:.3} ms  max {:.3} ms",
            tab.title(),
            times[FRAMES / 2],
            times[FRAMES * 95 / 100],
            times[FRAMES - 1]
        );
    }
    // The preview path renders a whole edited curve per frame; measure it too.
    app.shell.tab = Tab::Schedules;
    app.schedule_tab.form.active = true;
    app.schedule_tab.form.value = "2".into();
    app.schedule_tab.form.kind = 1;
    let mut times = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        let t0 = Instant::now();
        term.draw(|f| draw(app, f))?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!("{:<12} median {:.3} ms  p95 {:.3} ms", "edit preview", times[FRAMES / 2], times[FRAMES * 95 / 100]);
    Ok(())
}

/// A busy GPU machine, so the dashboard draws every panel.
fn telemetry() -> Telemetry {
    Telemetry {
        gpus: GpuStatus::Gpus(vec![GpuSample {
            index: 0,
            name: "GPU".into(),
            util_percent: Some(90),
            mem_used: Some(1 << 34),
            mem_total: Some(1 << 36),
            temperature_c: Some(60),
            power_w: Some(300.0),
        }]),
        host: HostSample { cpu_percent: 30.0, cpu_count: 16, ram_used: 1 << 34, ram_total: 1 << 37, process_mem: 1 << 32 },
    }
}
