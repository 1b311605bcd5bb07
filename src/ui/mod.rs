//! The dashboard (ratatui + crossterm): consumes engine events, does no I/O
//! of its own beyond the terminal.
//!
//! Contract of [`run`]: the caller builds the engine, hands over the
//! receiving end of the engine's one event channel and the fetch history read
//! from the stats file, and calls `run` on the main thread with a terminal on
//! stdout. `run` puts the terminal in raw mode on the alternate screen with
//! mouse capture (restored on return, on error and on panic), then loops:
//! key/mouse/resize input (read on a small thread) and engine events arrive on
//! two channels; each event updates the [`model::Model`]; user requests become
//! [`Engine`] calls. The screen is redrawn only when something shown changed,
//! at most [`FRAME_RATE`] times a second, and not at all while idle (apart
//! from a minute tick while an "ago" label is on screen and a second tick
//! during a fetch, for its elapsed time). `run` returns when the user quits
//! (after calling [`Engine::shutdown`] once) or when the engine drops its
//! sender (the engine is gone; `shutdown` is then not called).

pub mod alerts;
pub mod app;
pub mod components;
pub mod engine;
pub mod format;
pub mod keymap;
pub mod model;
pub mod stats;
pub mod terminal;
pub mod theme;
pub mod view_options;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{select, Receiver};
use ratatui::crossterm::event as input;

pub use engine::Engine;

use crate::config::Config;
use crate::engine::event::Event;
use app::App;
use model::Moment;
pub use model::PastFetch;
use theme::Theme;

/// The most frames drawn per second, however fast events come.
pub const FRAME_RATE: u32 = 30;

/// How many events are applied in one go before the screen is considered.
const EVENT_BATCH: usize = 4096;

/// What a dashboard session did, for measurements and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Frames drawn.
    pub frames: u64,
    /// Engine events applied.
    pub events: u64,
    /// Terminal inputs (keys, mouse, resizes) handled.
    pub inputs: u64,
}

/// Runs the dashboard until the user quits or the engine's sender is
/// dropped; see the module docs for the full contract.
pub fn run(
    config: &Config,
    history: Vec<PastFetch>,
    mut engine: impl Engine,
    events: Receiver<Event>,
) -> anyhow::Result<RunStats> {
    let mut session = terminal::Session::enter().context("cannot set up the terminal")?;
    let (input_tx, input_rx) = crossbeam_channel::bounded(256);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("mailhaul-input".into())
            .spawn(move || -> std::io::Result<()> {
                // poll with a timeout so that the thread notices `stop` and
                // never steals input after the dashboard closed.
                while !stop.load(Ordering::Relaxed) {
                    if input::poll(Duration::from_millis(200))?
                        && input_tx.send(input::read()?).is_err()
                    {
                        break;
                    }
                }
                Ok(())
            })?
    };
    let mut app = App::new(
        config,
        history,
        Theme::from_env(),
        terminal::local_utc_offset(),
        Moment::now(),
    )
    .with_home(std::env::var("HOME").ok())
    .with_alerts(alerts::Alerts::new(&config.ui, Box::new(std::io::stdout())));
    let result = event_loop(
        &mut session.terminal,
        &mut app,
        &mut engine,
        &input_rx,
        &events,
    );
    app.finish_alerts();
    stop.store(true, Ordering::Relaxed);
    drop(input_rx);
    let reader_result = reader.join();
    drop(session);
    // A failed input reader is the cause of a loop error, so it comes first.
    match reader_result {
        Ok(Ok(())) => result,
        Ok(Err(e)) => Err(e).context("reading terminal input"),
        Err(_) => anyhow::bail!("the terminal input thread panicked"),
    }
}

/// The dashboard's loop on any ratatui backend (the terminal in [`run`], a
/// `TestBackend` in tests): applies inputs and events, draws coalesced
/// frames, returns on quit or when the engine's sender is gone.
fn event_loop<B: ratatui::backend::Backend>(
    terminal: &mut ratatui::Terminal<B>,
    app: &mut App,
    engine: &mut dyn Engine,
    inputs: &Receiver<input::Event>,
    events: &Receiver<Event>,
) -> anyhow::Result<RunStats> {
    let frame_interval = Duration::from_secs(1) / FRAME_RATE;
    let mut stats = RunStats::default();
    let mut dirty = true;
    let mut last_frame: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if dirty && last_frame.is_none_or(|t| now >= t + frame_interval) {
            app.set_now(now);
            terminal
                .draw(|frame| app.draw(frame))
                .map_err(|e| anyhow::anyhow!("drawing the dashboard: {e}"))?;
            stats.frames += 1;
            last_frame = Some(now);
            dirty = false;
        }
        if app.should_quit() {
            return Ok(stats);
        }
        let wake = if dirty {
            last_frame.map(|t| t + frame_interval)
        } else {
            app.next_timed_redraw()
        };
        let timer = wake.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        select! {
            recv(inputs) -> received => {
                let input = received.context("the terminal input thread stopped")?;
                stats.inputs += 1;
                dirty |= app.handle_input(&input, engine);
            }
            recv(events) -> received => {
                let Ok(event) = received else {
                    return Ok(stats);
                };
                let at = Moment::now();
                stats.events += 1;
                dirty |= app.apply(event, at);
                // Take whatever else is queued: one frame shows it all.
                for event in events.try_iter().take(EVENT_BATCH) {
                    stats.events += 1;
                    dirty |= app.apply(event, at);
                }
            }
            recv(timer) -> _ => dirty = true,
        }
    }
}
