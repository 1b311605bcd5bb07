//! The transfer panel: the selected account's fetch — stage, a gauge of raw
//! bytes, raw/payload/socket bytes, ratio, throughput with a sparkline, ETA
//! and messages filed per folder. Lines are laid out by priority, so a short
//! panel keeps the most telling ones.

use std::time::Duration;

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph, Sparkline, Wrap};
use ratatui::Frame;

use super::accounts::stage_name;
use super::{field, panel, Component, Context};
use crate::engine::event::{Stage, TransferProgress};
use crate::ui::format;
use crate::ui::model::AccountView;

/// How long without new counters before a transfer is shown as stalled.
const STALL: Duration = Duration::from_secs(5);

/// The transfer panel (stateless: everything comes from the model).
#[derive(Debug, Default)]
pub struct TransferPanel;

/// What one row of the panel shows.
enum Part {
    Text(Line<'static>),
    Error(String),
    Gauge,
    RateWithSpark(Line<'static>),
    Spark,
}

fn header(account: &AccountView, ctx: &Context) -> Line<'static> {
    let theme = ctx.theme;
    let fetch = &account.fetch;
    let Some(stage) = fetch.stage else {
        return Line::from(vec![
            Span::styled(account.name.clone(), theme.title()),
            Span::styled(": no fetch yet; f fetches it", theme.dim()),
        ]);
    };
    let style = match stage {
        Stage::Done => theme.ok(),
        Stage::Failed => theme.error(),
        _ => theme.busy(),
    };
    let elapsed = match (fetch.started, fetch.ended) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        (Some(start), None) => ctx.now.saturating_duration_since(start),
        _ => Duration::ZERO,
    };
    let mut spans = vec![
        Span::styled(account.name.clone(), theme.title()),
        Span::raw(" "),
        Span::styled(stage_name(stage), style),
        Span::styled(format!(" {}", format::duration(elapsed)), theme.dim()),
    ];
    if let Some(summary) = &fetch.summary {
        spans.push(Span::styled(format!(" · {}", summary.method), theme.dim()));
    }
    Line::from(spans)
}

/// The stages in a row, each marked done (`✓`), current (`▶`), failed
/// (`✗`) or to come (`·`); recovery shows only while it runs.
fn track(account: &AccountView, ctx: &Context) -> Line<'static> {
    let theme = ctx.theme;
    let fetch = &account.fetch;
    let reached = fetch.reached.unwrap_or(Stage::Connecting);
    let order = |s: Stage| s as u8;
    let mut spans = Vec::new();
    for stage in [
        Stage::Connecting,
        Stage::Recovering,
        Stage::Claiming,
        Stage::Transferring,
        Stage::Verifying,
        Stage::Delivering,
    ] {
        if stage == Stage::Recovering && fetch.stage != Some(Stage::Recovering) {
            continue;
        }
        let (mark, style) = match fetch.stage {
            Some(Stage::Done) => ("✓", theme.ok()),
            Some(Stage::Failed) if stage == reached => ("✗", theme.error()),
            _ if stage == reached && fetch.is_active() => ("▶", theme.busy()),
            _ if order(stage) < order(reached) => ("✓", theme.ok()),
            _ => ("·", theme.dim()),
        };
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(format!("{mark}{}", stage_verb(stage)), style));
    }
    Line::from(spans)
}

/// A stage's short name for the track.
fn stage_verb(stage: Stage) -> &'static str {
    match stage {
        Stage::Connecting => "connect",
        Stage::Recovering => "recover",
        Stage::Claiming => "claim",
        Stage::Transferring => "transfer",
        Stage::Verifying => "verify",
        Stage::Delivering => "deliver",
        Stage::Done => "done",
        Stage::Failed => "error",
    }
}

fn parts(account: &AccountView, ctx: &Context) -> Vec<Part> {
    let theme = ctx.theme;
    let fetch = &account.fetch;
    let mut parts = vec![Part::Text(header(account, ctx))];
    if fetch.stage.is_none() {
        return parts;
    }
    if let Some((exit, message)) = &fetch.error {
        parts.push(Part::Error(format!("{exit:?}: {message}")));
    }
    let p = fetch.progress;
    let summary = fetch.summary.as_ref();
    if p == TransferProgress::default() && summary.is_none() {
        // Nothing transferred yet: the stages say more than zeros would.
        parts.push(Part::Text(track(account, ctx)));
        return parts;
    }
    let raw = summary.map_or(p.raw_done, |s| s.raw_bytes.max(p.raw_done));
    let payload = summary.map_or(p.payload_bytes, |s| s.payload_bytes.max(p.payload_bytes));
    let socket = summary.map_or(p.socket_bytes, |s| s.socket_bytes.max(p.socket_bytes));
    parts.push(Part::Gauge);
    let mut bytes = Vec::new();
    bytes.extend(field("raw ", format::bytes(raw), theme));
    bytes.extend(field("  payload ", format::bytes(payload), theme));
    bytes.extend(field("  socket ", format::bytes(socket), theme));
    parts.push(Part::Text(Line::from(bytes)));

    let mut rate = Vec::new();
    rate.extend(field("ratio ", format::ratio(raw, payload), theme));
    let speed = match (fetch.is_active(), summary) {
        (false, Some(s)) if !s.elapsed.is_zero() => {
            Some(s.raw_bytes as f64 / s.elapsed.as_secs_f64())
        }
        _ => fetch.rate.bytes_per_sec(),
    };
    // No counters for a while in the middle of a transfer: say so rather
    // than show the last rate as if it held.
    let stalled = fetch
        .rate
        .last_sample()
        .filter(|_| fetch.stage == Some(Stage::Transferring))
        .map(|t| ctx.now.saturating_duration_since(t))
        .filter(|quiet| *quiet >= STALL);
    if let Some(quiet) = stalled {
        let quiet = quiet.as_secs();
        rate.push(Span::styled(format!("  stalled {quiet}s"), theme.warn()));
    } else if let Some(speed) = speed {
        rate.extend(field("  ", format::rate(speed), theme));
        let remaining = p.raw_total.saturating_sub(p.raw_done);
        if fetch.is_active() && speed > 0.0 && remaining > 0 {
            let eta = Duration::from_secs_f64(remaining as f64 / speed);
            rate.extend(field("  ETA ", format::duration(eta), theme));
        }
    }
    rate.push(Span::raw(" "));
    parts.push(Part::RateWithSpark(Line::from(rate)));

    if !fetch.filed.is_empty() || summary.is_some() {
        let mut filed = vec![Span::styled("filed ", theme.label())];
        if fetch.filed.is_empty() {
            filed.push(Span::raw("nothing"));
        }
        for (i, (folder, count)) in fetch.filed.iter().enumerate() {
            if i > 0 {
                filed.push(Span::styled(", ", theme.dim()));
            }
            filed.push(Span::raw(format!("{folder} {count}")));
        }
        if let Some(s) = summary.filter(|s| s.undelivered > 0) {
            filed.push(Span::styled(
                format!("  {} undelivered (kept)", s.undelivered),
                theme.error(),
            ));
        }
        parts.push(Part::Text(Line::from(filed)));
    }
    parts.push(Part::Text(track(account, ctx)));
    if fetch.rate.per_second.len() > 1 {
        parts.push(Part::Spark);
    }
    parts
}

impl Component for TransferPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let block = panel("Transfer", theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let Some(account) = ctx.selected_account() else {
            return;
        };
        let fetch = &account.fetch;
        let spark_data: Vec<u64> = fetch.rate.per_second.iter().copied().collect();
        let mut y = inner.y;
        let bottom = inner.y + inner.height;
        for part in parts(account, ctx) {
            if y >= bottom {
                break;
            }
            let row = Rect {
                y,
                height: 1,
                ..inner
            };
            match part {
                Part::Text(line) => frame.render_widget(line, row),
                Part::Error(message) => {
                    // Up to two rows, more when the panel is tall.
                    let spare = bottom - y;
                    let height = if spare > 6 { 3 } else { spare.min(2) };
                    let rect = Rect { height, ..row };
                    frame.render_widget(
                        Paragraph::new(message)
                            .style(theme.error())
                            .wrap(Wrap { trim: true }),
                        rect,
                    );
                    y += height - 1;
                }
                Part::Gauge => {
                    let p = fetch.progress;
                    let ratio = if fetch.stage == Some(Stage::Done) {
                        1.0
                    } else if p.raw_total > 0 {
                        (p.raw_done as f64 / p.raw_total as f64).min(1.0)
                    } else {
                        0.0
                    };
                    let label = format!(
                        "{:>3}% {} of {}",
                        (ratio * 100.0).floor() as u32,
                        format::bytes(p.raw_done),
                        format::bytes(p.raw_total)
                    );
                    frame.render_widget(
                        LineGauge::default()
                            .ratio(ratio)
                            .label(label)
                            .filled_symbol("█")
                            .unfilled_symbol("░")
                            .filled_style(theme.gauge())
                            .unfilled_style(theme.dim()),
                        row,
                    );
                }
                Part::RateWithSpark(line) => {
                    let used = line.width() as u16;
                    frame.render_widget(line, row);
                    let spare = row.width.saturating_sub(used);
                    if spare >= 6 && spark_data.len() > 1 {
                        let width = spare.min(40);
                        let tail = &spark_data[spark_data.len().saturating_sub(width as usize)..];
                        frame.render_widget(
                            Sparkline::default().data(tail).style(theme.gauge()),
                            Rect {
                                x: row.x + used,
                                width,
                                ..row
                            },
                        );
                    }
                }
                Part::Spark => {
                    let height = bottom - y;
                    if height < 3 {
                        break;
                    }
                    let label = Line::styled("throughput per second", theme.label());
                    frame.render_widget(label, row);
                    let width = inner.width as usize;
                    let tail = &spark_data[spark_data.len().saturating_sub(width)..];
                    frame.render_widget(
                        Sparkline::default().data(tail).style(theme.gauge()),
                        Rect {
                            y: y + 1,
                            height: height - 1,
                            ..inner
                        },
                    );
                    y = bottom;
                }
            }
            y += 1;
        }
    }
}
