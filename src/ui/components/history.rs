//! The history panel: a small chart of the selected account's past fetches,
//! compression ratio and wall time per fetch, one column per fetch.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Sparkline;
use ratatui::Frame;

use super::{panel, Component, Context};
use crate::ui::format;
use crate::ui::model::PastFetch;

/// The history panel (stateless).
#[derive(Debug, Default)]
pub struct HistoryPanel;

/// Width of the row labels (`ratio `, `time  `).
const LABEL: u16 = 6;

fn ratio_of(entry: &PastFetch) -> f64 {
    let s = &entry.summary;
    if s.payload_bytes == 0 {
        0.0
    } else {
        s.raw_bytes as f64 / s.payload_bytes as f64
    }
}

impl Component for HistoryPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let Some(account) = ctx.selected_account() else {
            frame.render_widget(panel("History", theme), area);
            return;
        };
        let entries: Vec<&PastFetch> = ctx
            .model
            .history
            .iter()
            .filter(|e| e.account == account.name)
            .collect();
        let block = panel(format!("History ({} fetches)", entries.len()), theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let Some(last) = entries.last() else {
            frame.render_widget(Line::styled("no fetches yet", theme.dim()), inner);
            return;
        };
        if inner.height == 0 || inner.width <= LABEL {
            return;
        }
        let summary = Line::from(vec![
            Span::styled("last ", theme.label()),
            Span::raw(format!(
                "{:.2}x {} in {}",
                ratio_of(last),
                format::bytes(last.summary.raw_bytes),
                format::duration(last.summary.elapsed)
            )),
        ]);
        let chart_rows = inner.height.saturating_sub(1).max(2);
        if inner.height < 3 {
            frame.render_widget(summary, inner);
            return;
        }
        let columns = (inner.width - LABEL) as usize;
        let shown = &entries[entries.len().saturating_sub(columns)..];
        let ratios: Vec<u64> = shown.iter().map(|e| (ratio_of(e) * 100.0) as u64).collect();
        let times: Vec<u64> = shown
            .iter()
            .map(|e| e.summary.elapsed.as_millis() as u64)
            .collect();
        let max_ratio = shown.iter().map(|e| ratio_of(e)).fold(0.0, f64::max);
        let max_time = shown
            .iter()
            .map(|e| e.summary.elapsed)
            .max()
            .unwrap_or_default();
        let ratio_rows = chart_rows.div_ceil(2);
        let time_rows = chart_rows - ratio_rows;
        let rows = [
            ("ratio", ratios, ratio_rows, format!("max {max_ratio:.1}x")),
            (
                "time",
                times,
                time_rows,
                format!("max {}", format::duration(max_time)),
            ),
        ];
        let mut y = inner.y;
        for (label, data, height, _) in &rows {
            let rect = Rect {
                y,
                height: *height,
                ..inner
            };
            frame.render_widget(
                Line::styled(*label, theme.label()),
                Rect {
                    height: 1,
                    width: LABEL,
                    ..rect
                },
            );
            frame.render_widget(
                Sparkline::default().data(data).style(theme.gauge()),
                Rect {
                    x: inner.x + LABEL,
                    width: inner.width - LABEL,
                    ..rect
                },
            );
            y += height;
        }
        let mut spans = summary.spans;
        if inner.width as usize > 40 {
            spans.push(Span::styled(
                format!("  ({}, {})", rows[0].3, rows[1].3),
                theme.dim(),
            ));
        }
        frame.render_widget(
            Line::from(spans),
            Rect {
                y,
                height: 1,
                ..inner
            },
        );
    }
}
