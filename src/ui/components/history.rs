//! The history panel: the selected account's past fetches as charts with
//! labelled axes — compression ratio and bytes on the wire per fetch, over
//! the time of day or the date (`r` picks the last day, week or all) — and
//! the totals a user watches: bytes saved today, in the last 7 days and in
//! all, messages fetched.

use ratatui::layout::Rect;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
use ratatui::Frame;

use super::{field, panel, Component, Context};
use crate::engine::civil::UtcTime;
use crate::ui::format;
use crate::ui::model::PastFetch;
use crate::ui::stats;
use crate::ui::theme::Theme;

/// The history panel (stateless: the range is in the view).
#[derive(Debug, Default)]
pub struct HistoryPanel;

/// Below this many rows the panel shows one chart (the ratio), from it on
/// two (ratio, then bytes on the wire).
const TWO_CHARTS: u16 = 13;

/// The shortest span the x axis covers, so that a few fetches close in time
/// do not stretch over the whole width.
const MIN_SPAN: u64 = 300;

/// A time on the x axis, as precise as the span needs: `14:05` within a
/// day, `Fri 14h` within a week, `Nov 28` beyond.
fn time_label(unix: u64, span: u64, utc_offset: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = UtcTime::from_unix(unix as i64 + utc_offset);
    if span <= 86_400 + 3600 {
        format!("{:02}:{:02}", t.hour, t.minute)
    } else if span <= 8 * 86_400 {
        format!("{} {:02}h", DAYS[t.weekday as usize], t.hour)
    } else {
        format!("{} {}", MONTHS[(t.month - 1) as usize], t.day)
    }
}

/// The totals line: bytes saved today / in 7 days / in all, messages and
/// fetches; the longest form that fits whole.
fn totals_line(t: &stats::Totals, width: u16, theme: Theme) -> Line<'static> {
    let b = format::bytes;
    let forms = [
        vec![
            ("saved today ", b(t.saved_today)),
            (" · 7 days ", b(t.saved_week)),
            (" · all ", b(t.saved_all)),
            (
                " · ",
                format!("{} msgs in {} fetches", t.messages, t.fetches),
            ),
        ],
        vec![
            ("saved today ", b(t.saved_today)),
            (" · 7 days ", b(t.saved_week)),
            (" · all ", b(t.saved_all)),
        ],
        vec![
            ("saved today ", b(t.saved_today)),
            (" · all ", b(t.saved_all)),
        ],
        vec![("saved ", b(t.saved_all))],
    ];
    let fits = |form: &Vec<(&str, String)>| {
        form.iter()
            .map(|(l, v)| l.chars().count() + v.chars().count())
            .sum::<usize>()
            <= usize::from(width)
    };
    let form = forms.iter().find(|f| fits(f)).unwrap_or(&forms[3]);
    Line::from(
        form.iter()
            .flat_map(|(label, value)| field(label, value.clone(), theme))
            .collect::<Vec<_>>(),
    )
}

/// One chart of the fetches over `[from, to]`: `value` per fetch on the y
/// axis (labelled 0, half and the top, with `unit`), the time on the x axis.
#[allow(clippy::too_many_arguments)]
fn draw_chart(
    frame: &mut Frame,
    area: Rect,
    ctx: &Context,
    entries: &[(u64, &PastFetch)],
    (from, to): (u64, u64),
    title: &'static str,
    value: fn(&PastFetch) -> f64,
    unit: fn(f64) -> String,
    graph: GraphType,
) {
    let theme = ctx.theme;
    // A title row when there is room for it and a chart below.
    let area = if area.height >= 6 {
        frame.render_widget(
            Line::styled(title, theme.label()),
            Rect { height: 1, ..area },
        );
        Rect {
            y: area.y + 1,
            height: area.height - 1,
            ..area
        }
    } else {
        area
    };
    let points: Vec<(f64, f64)> = entries
        .iter()
        .map(|&(at, p)| (at as f64, value(p)))
        .collect();
    let top = points
        .iter()
        .map(|&(_, v)| v)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let low = points.iter().map(|&(_, v)| v).fold(top, f64::min);
    // Bars stand on zero; a line of ratios uses the range they span.
    let bottom = if graph == GraphType::Bar || low <= 0.0 {
        0.0
    } else {
        (low * 0.8).floor()
    };
    let y_labels: Vec<Span> = [bottom, (bottom + top) / 2.0, top]
        .iter()
        .map(|&v| Span::styled(unit(v), theme.dim()))
        .collect();
    let span = to - from;
    let mut x_labels: Vec<Span> = vec![Span::styled(
        time_label(from, span, ctx.utc_offset),
        theme.dim(),
    )];
    if area.width >= 40 {
        x_labels.push(Span::styled(
            time_label(from + span / 2, span, ctx.utc_offset),
            theme.dim(),
        ));
    }
    x_labels.push(Span::styled(
        time_label(to, span, ctx.utc_offset),
        theme.dim(),
    ));
    // One fetch makes no line: mark it.
    let graph = if points.len() < 2 && graph == GraphType::Line {
        GraphType::Scatter
    } else {
        graph
    };
    let dataset = Dataset::default()
        .graph_type(graph)
        .marker(if graph == GraphType::Bar {
            Marker::HalfBlock
        } else {
            Marker::Braille
        })
        .style(theme.gauge())
        .data(&points);
    let chart = Chart::new(vec![dataset])
        .x_axis(
            Axis::default()
                .bounds([from as f64, to as f64])
                .labels(x_labels)
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([bottom, top + (top - bottom) * 0.1])
                .labels(y_labels)
                .style(theme.dim()),
        );
    frame.render_widget(chart, area);
}

impl Component for HistoryPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let range = ctx.view.range;
        let Some(account) = ctx.selected_account() else {
            frame.render_widget(panel("History", theme), area);
            return;
        };
        let now = ctx.now_unix();
        let all: Vec<&PastFetch> = account
            .digest
            .entries
            .iter()
            .filter_map(|&i| ctx.model.history.get(i))
            .collect();
        let since = range.seconds().map(|s| now.saturating_sub(s));
        let timed: Vec<(u64, &PastFetch)> = all
            .iter()
            .filter_map(|p| Some((p.finished_unix?, *p)))
            .filter(|&(at, _)| since.is_none_or(|s| at >= s) && at <= now)
            .collect();
        let title = Line::from(vec![
            Span::styled(format!("History · {}", range.label()), theme.title()),
            Span::styled(format!(" ({} fetches) r", timed.len()), theme.dim()),
        ]);
        let block = panel(title, theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.height == 0 {
            return;
        }
        frame.render_widget(
            totals_line(&account.digest.totals, inner.width, theme),
            Rect { height: 1, ..inner },
        );
        let body = Rect {
            y: inner.y + 1,
            height: inner.height - 1,
            ..inner
        };
        if body.height == 0 {
            return;
        }
        if timed.is_empty() {
            let text = if all.is_empty() {
                "no fetches yet".to_string()
            } else {
                format!("no fetches in the {} (r: range)", range.label())
            };
            frame.render_widget(Line::styled(text, theme.dim()), body);
            return;
        }
        let first = timed.first().map_or(now, |&(at, _)| at);
        // All: from the first fetch, with a margin of a twentieth so that
        // it does not sit on the axis.
        let from = since
            .unwrap_or_else(|| first.saturating_sub(now.saturating_sub(first) / 20))
            .min(now.saturating_sub(MIN_SPAN));
        let bounds = (from, now);
        let last = timed.last().map(|&(_, p)| p).expect("not empty");
        let last_line = Line::from(
            [
                field(
                    "last ",
                    format!("{:.2}x", stats::ratio(&last.summary)),
                    theme,
                )
                .to_vec(),
                field("  wire ", format::bytes(last.summary.socket_bytes), theme).to_vec(),
                field("  of ", format::bytes(last.summary.raw_bytes), theme).to_vec(),
                field("  in ", format::duration(last.summary.elapsed), theme).to_vec(),
            ]
            .concat(),
        );
        // The last fetch in figures when the chart keeps five rows.
        let with_last = body.height >= 6;
        let charts = Rect {
            height: body.height - u16::from(with_last),
            ..body
        };
        if with_last {
            frame.render_widget(
                last_line.clone(),
                Rect {
                    y: body.y + body.height - 1,
                    height: 1,
                    ..body
                },
            );
        }
        if charts.height < 4 {
            if !with_last {
                frame.render_widget(last_line, body);
            }
            return;
        }
        let ratio = |p: &PastFetch| stats::ratio(&p.summary);
        let wire = |p: &PastFetch| p.summary.socket_bytes as f64;
        let ratio_unit = |v: f64| format!("{v:.1}x");
        let bytes_unit = |v: f64| format::bytes(v as u64);
        if charts.height >= TWO_CHARTS {
            let upper = Rect {
                height: charts.height / 2,
                ..charts
            };
            let lower = Rect {
                y: charts.y + upper.height,
                height: charts.height - upper.height,
                ..charts
            };
            draw_chart(
                frame,
                upper,
                ctx,
                &timed,
                bounds,
                "compression ratio per fetch (raw ÷ compressed)",
                ratio,
                ratio_unit,
                GraphType::Line,
            );
            draw_chart(
                frame,
                lower,
                ctx,
                &timed,
                bounds,
                "bytes on the wire per fetch",
                wire,
                bytes_unit,
                GraphType::Bar,
            );
        } else {
            draw_chart(
                frame,
                charts,
                ctx,
                &timed,
                bounds,
                "compression ratio per fetch (raw ÷ compressed)",
                ratio,
                ratio_unit,
                GraphType::Line,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::time_label;

    #[test]
    fn time_labels_are_as_precise_as_the_span_needs() {
        // 2025-11-28 09:05 UTC, a Friday.
        let t = 1_764_320_700;
        assert_eq!(time_label(t, 3600, 0), "09:05");
        assert_eq!(time_label(t, 3600, 3600), "10:05");
        assert_eq!(time_label(t, 7 * 86_400, 0), "Fri 09h");
        assert_eq!(time_label(t, 30 * 86_400, 0), "Nov 28");
    }
}
