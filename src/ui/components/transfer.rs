//! The transfer panel: the selected account's fetch — stage, a gauge of raw
//! bytes, raw/payload/socket bytes, ratio, throughput with a sparkline, ETA,
//! messages filed per folder, the stages with their durations, and a
//! throughput chart with labelled axes (now, peak, average). Lines are laid
//! out by priority, so a short panel keeps the most telling ones.

use std::time::Duration;

use ratatui::layout::Rect;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, LineGauge, Paragraph, Sparkline, Wrap};
use ratatui::Frame;

use super::accounts::stage_name;
use super::{field, panel, wrap_line, Component, Context};
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
/// (`✗`) or to come (`·`), with how long each took (the current one so
/// far); recovery shows only when it ran.
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
        let entered = fetch.stages.iter().position(|&(s, _)| s == stage);
        if stage == Stage::Recovering && entered.is_none() {
            continue;
        }
        let took = entered.map(|i| {
            let start = fetch.stages[i].1;
            let end = fetch
                .stages
                .get(i + 1)
                .map(|&(_, t)| t)
                .or(fetch.ended)
                .unwrap_or(ctx.now);
            end.saturating_duration_since(start)
        });
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
        if let Some(took) = took {
            spans.push(Span::styled(
                format!(" {}", format::duration(took)),
                theme.dim(),
            ));
        }
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
        let message = format::tidy_paths(message, ctx.view.home.as_deref(), 48);
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
    let bytes = Line::from(bytes);

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
    // The ratio and speed come before the byte counts: a short panel keeps
    // what tells most.
    parts.push(Part::RateWithSpark(Line::from(rate)));
    parts.push(Part::Text(bytes));

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

/// The smallest throughput chart worth drawing: a title row, three plot
/// rows, the axis and its labels.
const CHART_ROWS: u16 = 6;

impl TransferPanel {
    /// Rows the panel's contents need (without its border), the chart at
    /// its smallest.
    pub fn rows_wanted(ctx: &Context, width: u16) -> u16 {
        let Some(account) = ctx.selected_account() else {
            return 1;
        };
        parts(account, ctx)
            .iter()
            .map(|part| match part {
                Part::Error(_) => 2,
                Part::Spark => CHART_ROWS,
                Part::Text(line) => wrap_line(line, width, 1).len() as u16,
                _ => 1,
            })
            .sum()
    }
}

/// `throughput  now 380 kB/s  peak 400 kB/s  avg 380 kB/s` (now only while
/// the fetch runs), shortened from the left to fit `width`: without the
/// word `throughput`, then without `now`.
fn throughput_title(account: &AccountView, ctx: &Context, width: u16) -> Line<'static> {
    let theme = ctx.theme;
    let rate = &account.fetch.rate;
    let now = rate
        .bytes_per_sec()
        .filter(|_| account.fetch.is_active())
        .map(|now| field("now ", format::rate(now), theme));
    let peak = field(
        "peak ",
        format::rate(rate.peak_per_sec().unwrap_or(0) as f64),
        theme,
    );
    let avg = rate
        .average_per_sec()
        .map(|avg| field("avg ", format::rate(avg), theme));
    let join = |label: bool, with_now: bool| {
        let mut spans = Vec::new();
        if label {
            spans.push(Span::styled("throughput", theme.label()));
        }
        let parts = [
            now.clone().filter(|_| with_now),
            Some(peak.clone()),
            avg.clone(),
        ];
        for part in parts.into_iter().flatten() {
            if !spans.is_empty() {
                spans.push(Span::raw("  "));
            }
            spans.extend(part);
        }
        Line::from(spans)
    };
    [join(true, true), join(false, true), join(false, false)]
        .into_iter()
        .find(|line| line.width() <= usize::from(width))
        .unwrap_or_else(|| join(false, false))
}

/// Throughput over the transfer's seconds as a chart: bytes per second on
/// the y axis (0, half the peak, the peak), seconds since the transfer
/// began on the x axis, and a title line with now / peak / average.
fn throughput_chart(frame: &mut Frame, area: Rect, account: &AccountView, ctx: &Context) {
    let theme = ctx.theme;
    let rate = &account.fetch.rate;
    let first = rate.first_second();
    let points: Vec<(f64, f64)> = rate
        .per_second
        .iter()
        .enumerate()
        .map(|(i, &b)| ((first + i as u64) as f64, b as f64))
        .collect();
    let peak = rate.peak_per_sec().unwrap_or(0).max(1) as f64;
    frame.render_widget(
        throughput_title(account, ctx, area.width),
        Rect { height: 1, ..area },
    );
    let plot = Rect {
        y: area.y + 1,
        height: area.height.saturating_sub(1),
        ..area
    };
    let last = (first + rate.per_second.len() as u64)
        .saturating_sub(1)
        .max(first + 1);
    let y_max = peak * 1.1;
    let y_labels: Vec<Span> = [0.0, peak / 2.0, peak]
        .iter()
        .map(|&v| Span::styled(format::rate(v), theme.dim()))
        .collect();
    let x_labels: Vec<Span> = [first, (first + last) / 2, last]
        .iter()
        .map(|&s| Span::styled(format!("{s}s"), theme.dim()))
        .collect();
    let dataset = Dataset::default()
        .graph_type(GraphType::Line)
        .marker(Marker::Braille)
        .style(theme.gauge())
        .data(&points);
    let chart = Chart::new(vec![dataset])
        .x_axis(
            Axis::default()
                .bounds([first as f64, last as f64])
                .labels(x_labels)
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, y_max])
                .labels(y_labels)
                .style(theme.dim()),
        );
    frame.render_widget(chart, plot);
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
                Part::Text(line) => {
                    // Wrapped at spaces (the stage track on a narrow panel).
                    let rows = wrap_line(&line, inner.width, 1);
                    let last = rows.len() - 1;
                    for (i, text) in rows.into_iter().enumerate() {
                        if y + i as u16 >= bottom {
                            break;
                        }
                        frame.render_widget(
                            text,
                            Rect {
                                y: y + i as u16,
                                ..row
                            },
                        );
                    }
                    y += last as u16;
                }
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
                    let mut p = fetch.progress;
                    if let Some(s) = &fetch.summary {
                        p.raw_done = p.raw_done.max(s.raw_bytes);
                        p.raw_total = p.raw_total.max(p.raw_done);
                    }
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
                    if height >= CHART_ROWS - 1 {
                        throughput_chart(frame, Rect { y, height, ..inner }, account, ctx);
                    } else {
                        // No room for axes: the figures, and bars below.
                        frame.render_widget(throughput_title(account, ctx, row.width), row);
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
                    }
                    y = bottom;
                }
            }
            y += 1;
        }
    }
}
