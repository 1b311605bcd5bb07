//! The outbox panel: the selected account's outgoing mail as the engine
//! counted it (queued, sending, sent today with its bytes, bytes on the
//! wire and compression ratio, failed), and in the title what waits or
//! failed in the other accounts' outboxes. Shown only while there is
//! something to show (see [`OutboxPanel::wanted`]); a panel of three rows,
//! or on a short screen one row without borders.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::{panel, Component, Context};
use crate::engine::event::OutboxCounts;
use crate::ui::format;
use crate::ui::model::outbox_busy;
use crate::ui::theme::Theme;

/// The outbox panel (stateless).
#[derive(Debug, Default)]
pub struct OutboxPanel;

impl OutboxPanel {
    /// Whether the panel takes room: the selected account's outbox has
    /// something queued, going, sent today or failed, or another account's
    /// has mail waiting or refused.
    pub fn wanted(ctx: &Context) -> bool {
        let selected = ctx
            .selected_account()
            .and_then(|a| a.outbox)
            .is_some_and(|c| outbox_busy(&c));
        let others = ctx
            .model
            .accounts
            .iter()
            .filter_map(|a| a.outbox)
            .any(|c| c.queued + c.sending + c.failed > 0);
        selected || others
    }
}

/// The counts in the longest form that fits `width`: with bytes and the
/// ratio, with the ratio only, in short words, or (`terse`) in signs.
fn counts_line(c: &OutboxCounts, width: u16, terse: bool, theme: Theme) -> Option<Line<'static>> {
    let styled = |n: u64, style| if n > 0 { style } else { theme.dim() };
    let ratio = (c.wire_bytes > 0).then(|| format::ratio(c.sent_bytes, c.wire_bytes));
    let sent_long = match &ratio {
        Some(r) => format!(
            "{}: {} → {} on the wire, {r}",
            c.sent_today,
            format::bytes(c.sent_bytes),
            format::bytes(c.wire_bytes)
        ),
        None => c.sent_today.to_string(),
    };
    let sent_mid = match &ratio {
        Some(r) => format!("{} ({r})", c.sent_today),
        None => c.sent_today.to_string(),
    };
    let long = |sent: String| {
        vec![
            Span::styled("queued ", theme.label()),
            Span::styled(c.queued.to_string(), styled(c.queued, theme.warn())),
            Span::styled(" · sending ", theme.label()),
            Span::styled(c.sending.to_string(), styled(c.sending, theme.busy())),
            Span::styled(" · sent today ", theme.label()),
            Span::styled(sent, styled(c.sent_today, theme.ok())),
            Span::styled(" · failed ", theme.label()),
            Span::styled(c.failed.to_string(), styled(c.failed, theme.error())),
        ]
    };
    let short = vec![
        Span::styled(
            format!("{} queued", c.queued),
            styled(c.queued, theme.warn()),
        ),
        Span::styled(" · ", theme.dim()),
        Span::styled(
            format!("{} sending", c.sending),
            styled(c.sending, theme.busy()),
        ),
        Span::styled(" · ", theme.dim()),
        Span::styled(
            format!("{} sent", c.sent_today),
            styled(c.sent_today, theme.ok()),
        ),
        Span::styled(" · ", theme.dim()),
        Span::styled(
            format!("{} failed", c.failed),
            styled(c.failed, theme.error()),
        ),
    ];
    let fitting = [long(sent_long), long(sent_mid), short]
        .into_iter()
        .map(Line::from)
        .find(|l| l.width() <= usize::from(width));
    if fitting.is_some() || !terse {
        return fitting;
    }
    Some(Line::from(vec![
        Span::styled(format!("{}q", c.queued), styled(c.queued, theme.warn())),
        Span::raw(" "),
        Span::styled(format!("{}s", c.sending), styled(c.sending, theme.busy())),
        Span::raw(" "),
        Span::styled(
            format!("{}✓", c.sent_today),
            styled(c.sent_today, theme.ok()),
        ),
        Span::raw(" "),
        Span::styled(format!("{}✗", c.failed), styled(c.failed, theme.error())),
    ]))
}

impl Component for OutboxPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let selected = ctx.selected_account();
        // What waits or failed elsewhere, so that no account's mail hides.
        let (mut queued, mut failed) = (0, 0);
        for a in ctx.order.iter().filter_map(|&i| ctx.model.accounts.get(i)) {
            if selected.is_some_and(|s| s.name == a.name) {
                continue;
            }
            if let Some(c) = a.outbox {
                queued += c.queued + c.sending;
                failed += c.failed;
            }
        }
        let others = |label: &str| -> Option<Span<'static>> {
            let mut parts = Vec::new();
            if queued > 0 {
                parts.push(format!("{queued} queued"));
            }
            if failed > 0 {
                parts.push(format!("{failed} failed"));
            }
            (!parts.is_empty()).then(|| {
                Span::styled(
                    format!(" · {label}: {}", parts.join(", ")),
                    if failed > 0 {
                        theme.error()
                    } else {
                        theme.warn()
                    },
                )
            })
        };
        let line = |width: u16, terse: bool| match selected {
            None => Some(Line::styled("no account selected", theme.dim())),
            Some(a) => match a.outbox {
                None => Some(Line::styled(
                    format!("{}: not counted yet", a.name),
                    theme.dim(),
                )),
                Some(c) => counts_line(&c, width, terse, theme),
            },
        };
        if area.height < 3 {
            // A short screen: one row, the title in front, the other
            // accounts' part after the counts (shortened for it) when it fits.
            let head = Span::styled("Outbox ", theme.title());
            let room = area.width.saturating_sub(head.width() as u16);
            let tail = others("others");
            let tail_width = tail.as_ref().map_or(0, Span::width) as u16;
            let mut spans = vec![head];
            match line(room.saturating_sub(tail_width), false) {
                Some(counts) if counts.width() + usize::from(tail_width) <= usize::from(room) => {
                    spans.extend(counts.spans);
                    spans.extend(tail);
                }
                // Words for this account before signs for both.
                _ => spans.extend(line(room, true).map(|l| l.spans).unwrap_or_default()),
            }
            frame.render_widget(Line::from(spans), area);
            return;
        }
        let mut title = vec![Span::styled("Outbox", theme.title())];
        title.extend(others("other accounts"));
        let block = panel(Line::from(title), theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(line(inner.width, true), inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_longest_form_that_fits() {
        let c = OutboxCounts {
            queued: 3,
            sending: 1,
            sent_today: 12,
            failed: 1,
            sent_bytes: 310_000,
            wire_bytes: 70_000,
        };
        let text = |w| -> String {
            counts_line(&c, w, true, Theme::new(false))
                .expect("a terse form")
                .spans
                .iter()
                .map(|s| s.content.as_ref())
                .collect()
        };
        assert_eq!(
            text(120),
            "queued 3 · sending 1 · sent today 12: 310 kB → 70.0 kB on the wire, 4.43x · failed 1"
        );
        assert_eq!(
            text(60),
            "queued 3 · sending 1 · sent today 12 (4.43x) · failed 1"
        );
        assert_eq!(text(50), "3 queued · 1 sending · 12 sent · 1 failed");
        assert_eq!(text(20), "3q 1s 12✓ 1✗");
        assert!(counts_line(&c, 20, false, Theme::new(false)).is_none());
    }
}
