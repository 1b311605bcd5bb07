//! The accounts panel: one row per listed account (filtered and sorted as
//! the view says) with its host, connection state, forward state, last
//! fetch, a small trend of its recent compression ratios, and what waits on
//! the server. Click or wheel to select; the table scrolls to keep the
//! selection in view.

use ratatui::crossterm::event::{Event as Input, MouseButton, MouseEventKind};
use ratatui::layout::{Constraint, Flex, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Row, Table, TableState};
use ratatui::Frame;

use super::log::clock;
use super::{panel, Component, Context, Handled, Intent};
use crate::engine::event::LinkState;
use crate::engine::event::{Stage, TunnelState};
use crate::ui::format;
use crate::ui::model::{AccountView, Outcome};
use crate::ui::stats;
use crate::ui::theme::Theme;
use crate::ui::view_options::SortOrder;

/// The accounts list.
#[derive(Debug, Default)]
pub struct AccountsPanel {
    state: TableState,
    /// Where the data rows were drawn last, for mouse hits.
    rows_area: Rect,
}

/// A stage's name as the panels show it.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Connecting => "connecting",
        Stage::Recovering => "recovering",
        Stage::Claiming => "claiming",
        Stage::Transferring => "transferring",
        Stage::Verifying => "verifying",
        Stage::Delivering => "delivering",
        Stage::Done => "done",
        Stage::Failed => "error",
    }
}

/// The connection state of an account, styled: the fetch's stage while one
/// runs, else what keeps the link (`watching 12m`: the server's watcher
/// reports changes, for 12 minutes; `polling 3m`; `connecting`; `retry
/// 14:05` while backing off; `sending`; `stopped`), else `idle`; `short`
/// leaves room for a mark after it (`watch 12m`, `poll 3m`, `wait 14:05`).
/// Ages are to the minute and the retry is a clock time, so an idle screen
/// stays still.
pub fn connection_state(
    account: &AccountView,
    asking: bool,
    short: bool,
    ctx: &Context,
) -> Span<'static> {
    let theme = ctx.theme;
    if asking {
        return Span::styled("host key?", theme.warn());
    }
    match account.fetch.stage {
        Some(Stage::Transferring) if account.fetch.progress.raw_total > 0 => {
            let p = &account.fetch.progress;
            let percent = p.raw_done.saturating_mul(100) / p.raw_total;
            return Span::styled(format!("transfer {percent}%"), theme.busy());
        }
        Some(stage) if account.fetch.is_active() => {
            return Span::styled(stage_name(stage), theme.busy())
        }
        _ => {}
    }
    let Some(link) = &account.link else {
        return Span::styled("idle", theme.dim());
    };
    let aged = |word: &str| match format::age(ctx.now_unix().saturating_sub(link.since)) {
        Some(age) => format!("{word} {age}"),
        None => word.to_string(),
    };
    match &link.state {
        LinkState::Connecting => Span::styled("connecting", theme.busy()),
        LinkState::Watching(_) => {
            Span::styled(aged(if short { "watch" } else { "watching" }), theme.ok())
        }
        LinkState::Polling { .. } => {
            Span::styled(aged(if short { "poll" } else { "polling" }), theme.label())
        }
        LinkState::BackingOff { until, .. } => Span::styled(
            format!(
                "{} {}",
                if short { "wait" } else { "retry" },
                &clock(*until, ctx.utc_offset)[..5]
            ),
            theme.warn(),
        ),
        LinkState::Fetching => Span::styled("fetching", theme.busy()),
        LinkState::Sending => Span::styled("sending", theme.busy()),
        LinkState::Stopped(None) => Span::styled("stopped", theme.dim()),
        LinkState::Stopped(Some(_)) => Span::styled("stopped", theme.error()),
    }
}

/// The last fetch's result and age (`ok 50 msgs 5m ago`, or `ok 5m ago`
/// when `compact`), styled.
pub fn last_fetch(account: &AccountView, ctx: &Context, compact: bool) -> Span<'static> {
    match &account.last {
        None => Span::styled("never", ctx.theme.dim()),
        Some(last) => {
            let mut ago = format::ago(last.age(ctx.now));
            if compact && ago == "just now" {
                ago = "now".into();
            }
            match &last.outcome {
                Outcome::Done(_) if compact => Span::styled(format!("ok {ago}"), ctx.theme.ok()),
                Outcome::Failed { .. } if compact => {
                    Span::styled(format!("err {ago}"), ctx.theme.error())
                }
                Outcome::Done(s) => {
                    Span::styled(format!("ok {} {ago}", messages(s.messages)), ctx.theme.ok())
                }
                Outcome::Failed { .. } => Span::styled(format!("error {ago}"), ctx.theme.error()),
            }
        }
    }
}

/// `1 msg`, `315 msgs`.
fn messages(n: u64) -> String {
    if n == 1 {
        "1 msg".to_string()
    } else {
        format!("{n} msgs")
    }
}

/// The detailed form if it fits `width` columns, else the compact one, so
/// that a cell is never cut.
fn fitting(width: u16, detailed: bool, make: impl Fn(bool) -> Span<'static>) -> Line<'static> {
    let span = make(!detailed);
    if detailed && span.width() > usize::from(width) {
        Line::from(make(true))
    } else {
        Line::from(span)
    }
}

/// What marks the selected row, and its width.
const SELECTION_SYMBOL: &str = "▶ ";
const SELECTION_MARK: u16 = 2;

/// Ratios shown in the trend column (fewer on a narrow table).
const TREND: usize = 8;
const TREND_NARROW: usize = 5;

/// Width of the detailed "last fetch" column (`ok 315 msgs 59m ago`).
const LAST_DETAILED: u16 = 20;
/// Width of the detailed "on server" column (`new: 7885 msgs 32.5 MB`).
const WAITING_DETAILED: u16 = 22;
/// Width of the outbox column (`12 queued 2 failed`).
const OUTBOX_WIDTH: u16 = 18;
/// The narrowest a host is shown before columns are given up for it.
const HOST_MIN: u16 = 16;

/// Which columns the table shows at a width: the richest set of these, in
/// order, that leaves the host its room.
#[derive(Debug, Clone, Copy)]
struct Columns {
    /// Message counts in "last fetch" and "on server".
    detailed: bool,
    /// The forward's state.
    forward: bool,
    /// Ratios in the trend column (0: no column).
    trend_len: usize,
    /// Bytes saved in all.
    saved: bool,
    /// The outbox's queue.
    outbox: bool,
    /// Blank columns between columns.
    spacing: u16,
}

impl Columns {
    /// `outbox`: whether any outbox was counted (else the column would be
    /// blank).
    fn fitting(width: u16, name: u16, host: u16, outbox: bool) -> Columns {
        let c = |detailed, forward, trend_len, saved, spacing| Columns {
            detailed,
            forward,
            trend_len,
            saved,
            outbox: false,
            spacing,
        };
        let with_outbox = |columns: Columns| Columns { outbox, ..columns };
        let candidates = [
            with_outbox(c(true, true, TREND, true, 2)),
            with_outbox(c(true, true, TREND, false, 2)),
            c(true, true, TREND, true, 2),
            c(true, true, TREND, false, 2),
            c(true, true, TREND, false, 1),
            c(true, false, TREND_NARROW, false, 1),
            c(false, true, TREND_NARROW, false, 1),
            c(false, false, TREND_NARROW, false, 1),
        ];
        candidates
            .into_iter()
            .find(|c| c.others(name) + host.min(HOST_MIN) <= width)
            .unwrap_or(c(false, false, 0, false, 1))
    }

    /// Columns other than the host's, with the selection mark and spacing.
    fn others(&self, name: u16) -> u16 {
        let (last, state, waiting) = if self.detailed {
            (LAST_DETAILED, 13, WAITING_DETAILED)
        } else {
            (11, 12, 11)
        };
        let optional = [
            (self.forward, 5),
            (self.trend_len > 0, self.trend_len as u16 + 6),
            (self.saved, 10),
            (self.outbox, OUTBOX_WIDTH),
        ];
        let gaps = 4 + optional.iter().filter(|(on, _)| *on).count() as u16;
        2 + name
            + state
            + last
            + waiting
            + optional
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, w)| w)
                .sum::<u16>()
            + gaps * self.spacing
    }
}

/// The SMTP forward's state in a few letters, styled.
pub fn forward_state(account: &AccountView, theme: Theme) -> Span<'static> {
    match account.forward.state {
        TunnelState::Off if account.forward.last_error.is_some() => {
            Span::styled("err", theme.error())
        }
        TunnelState::Off => Span::styled("off", theme.dim()),
        TunnelState::Connecting => Span::styled("conn", theme.busy()),
        TunnelState::Listening(_) => Span::styled("on", theme.ok()),
        TunnelState::Reconnecting { .. } => Span::styled("retry", theme.warn()),
    }
}

/// The outbox's queue (`2 queued 1 failed`, `1 sending`), styled; `-`
/// when nothing waits or failed.
pub fn outbox_queue(account: &AccountView, theme: Theme) -> Line<'static> {
    let Some(c) = account.outbox else {
        return Line::styled("-", theme.dim());
    };
    let mut spans = Vec::new();
    if c.sending > 0 {
        spans.push(Span::styled(format!("{} sending", c.sending), theme.busy()));
    } else if c.queued > 0 {
        spans.push(Span::styled(format!("{} queued", c.queued), theme.warn()));
    }
    if c.failed > 0 {
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(format!("{} failed", c.failed), theme.error()));
    }
    if spans.is_empty() {
        return Line::styled("-", theme.dim());
    }
    Line::from(spans)
}

/// What waits in the server's spool (`new: 3 msgs 12 kB`, or `new 12 kB`
/// when `compact`), styled; new mail stands out.
pub fn waiting(account: &AccountView, theme: Theme, compact: bool) -> Span<'static> {
    match account.spool {
        None => Span::styled("-", theme.dim()),
        Some(s) if s.bytes == 0 => Span::styled("empty", theme.dim()),
        Some(s) if compact => Span::styled(format!("new {}", format::bytes(s.bytes)), theme.warn()),
        Some(s) => {
            let text = match s.messages {
                Some(m) => format!("new: {} {}", messages(m), format::bytes(s.bytes)),
                None => format!("new: {}", format::bytes(s.bytes)),
            };
            Span::styled(text, theme.warn())
        }
    }
}

impl Component for AccountsPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let total = ctx.model.accounts.len();
        let mut title = vec![Span::styled(
            if ctx.order.len() == total {
                format!("Accounts ({total})")
            } else {
                format!("Accounts ({} of {total})", ctx.order.len())
            },
            theme.title(),
        )];
        if ctx.view.sort != SortOrder::Config {
            title.push(Span::styled(
                format!(" {}", ctx.view.sort.label()),
                theme.dim(),
            ));
        }
        if !ctx.view.filter.is_empty() || ctx.view.filter_editing {
            title.push(Span::styled(format!(" /{}", ctx.view.filter), theme.warn()));
        }
        let block = panel(Line::from(title), theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        self.rows_area = Rect::default();
        if ctx.model.accounts.is_empty() {
            frame.render_widget(
                Line::styled("no accounts: add [[account]] to the config", theme.warn()),
                inner,
            );
            return;
        }
        if ctx.order.is_empty() {
            frame.render_widget(
                Line::styled(
                    format!("no account name contains {:?}", ctx.view.filter),
                    theme.dim(),
                ),
                inner,
            );
            return;
        }
        let listed: Vec<&AccountView> = ctx.order.iter().map(|&i| &ctx.model.accounts[i]).collect();
        let with_header = inner.height as usize > listed.len().min(2);
        let name_width = listed
            .iter()
            .map(|a| a.name.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(if with_header { 7 } else { 4 }, 16) as u16;
        let longest_host = listed
            .iter()
            .map(|a| a.host.chars().count())
            .max()
            .unwrap_or(4) as u16;
        let outbox_known = listed.iter().any(|a| a.outbox.is_some());
        let columns = Columns::fitting(inner.width, name_width, longest_host.min(16), outbox_known);
        let Columns {
            detailed,
            forward: with_forward,
            trend_len,
            saved: very_wide,
            outbox: with_outbox,
            spacing,
        } = columns;
        let wide = detailed;
        let roomy = trend_len > 0;
        let name_width = name_width.min(if detailed { 16 } else { 10 });
        // The host gets what the other columns leave, at most the longest
        // host and 40; longer ones lose their middle.
        let host_width = longest_host
            .min(inner.width.saturating_sub(columns.others(name_width)))
            .clamp(4, 40);
        let rows = listed.iter().map(|a| {
            let asking = ctx.model.host_keys.iter().any(|p| p.account == a.name);
            let trend = stats::trend_glyphs(a.digest.last_ratios(trend_len));
            let last_ratio = a
                .digest
                .last_ratio()
                .map_or(String::new(), |r| format!(" {r:.1}x"));
            let mut cells = vec![
                Line::raw(a.name.clone()),
                Line::raw(format::elide_middle(&a.host, usize::from(host_width))),
                if with_forward || matches!(a.forward.state, TunnelState::Off) {
                    Line::from(connection_state(a, asking, false, ctx))
                } else {
                    // No forward column: a mark that the forward is up.
                    let mark = forward_state(a, theme);
                    Line::from(vec![
                        connection_state(a, asking, true, ctx),
                        Span::styled(" ⇄", mark.style),
                    ])
                },
            ];
            if with_forward {
                cells.push(Line::from(forward_state(a, theme)));
            }
            cells.push(fitting(LAST_DETAILED, wide, |compact| {
                last_fetch(a, ctx, compact)
            }));
            if roomy {
                cells.push(Line::from(vec![
                    Span::styled(trend, theme.gauge()),
                    Span::styled(last_ratio, theme.dim()),
                ]));
            }
            if very_wide {
                cells.push(Line::styled(
                    format::bytes(a.digest.totals.saved_all),
                    theme.dim(),
                ));
            }
            if with_outbox {
                cells.push(outbox_queue(a, theme));
            }
            cells.push(fitting(WAITING_DETAILED, wide, |compact| {
                waiting(a, theme, compact)
            }));
            Row::new(cells)
        });
        let host = Constraint::Length(host_width);
        let mut widths = vec![
            Constraint::Length(name_width),
            host,
            Constraint::Length(if wide { 13 } else { 12 }),
        ];
        let mut header = vec!["account", "host", "state"];
        if with_forward {
            widths.push(Constraint::Length(5));
            header.push("fwd");
        }
        widths.push(Constraint::Length(if wide { LAST_DETAILED } else { 11 }));
        header.push("last fetch");
        if roomy {
            widths.push(Constraint::Length(trend_len as u16 + 6));
            header.push("ratio trend");
        }
        if very_wide {
            widths.push(Constraint::Length(10));
            header.push("saved");
        }
        if with_outbox {
            widths.push(Constraint::Length(OUTBOX_WIDTH));
            header.push("outbox");
        }
        widths.push(Constraint::Length(if wide { WAITING_DETAILED } else { 11 }));
        header.push("on server");
        let trend_column = roomy.then(|| header.iter().position(|&h| h == "ratio trend"));
        let column_areas = Layout::horizontal(widths.clone())
            .flex(Flex::Start)
            .spacing(spacing)
            .split(Rect {
                x: inner.x + SELECTION_MARK,
                width: inner.width.saturating_sub(SELECTION_MARK),
                ..inner
            });
        let mut table = Table::new(rows, widths)
            .column_spacing(spacing)
            .flex(Flex::Start)
            .row_highlight_style(theme.selected())
            .highlight_symbol(SELECTION_SYMBOL);
        if with_header {
            table = table.header(Row::new(header).style(theme.label()));
        }
        self.state
            .select(ctx.order.iter().position(|&i| i == ctx.selected));
        frame.render_stateful_widget(table, inner, &mut self.state);
        let header = u16::from(with_header);
        self.rows_area = Rect {
            y: inner.y + header,
            height: inner.height.saturating_sub(header),
            ..inner
        };
        // The selection's colours (white on blue, or reverse video without
        // colour) would turn the bars into one solid block: on the selected
        // row they keep the look they have on every other row.
        let trend_area = trend_column.flatten().and_then(|k| column_areas.get(k));
        let row = self
            .state
            .selected()
            .and_then(|s| s.checked_sub(self.state.offset()));
        if let (Some(column), Some(row)) = (trend_area, row) {
            let y = self.rows_area.y + row as u16;
            if y < self.rows_area.bottom() {
                let buffer = frame.buffer_mut();
                for x in column.x..column.right().min(inner.right()) {
                    let cell = &mut buffer[(x, y)];
                    if stats::is_trend_glyph(cell.symbol()) {
                        cell.set_style(theme.trend_on_selection());
                    }
                }
            }
        }
    }

    fn handle_input(&mut self, input: &Input, ctx: &Context) -> Handled {
        let Input::Mouse(mouse) = input else {
            return Handled::Ignored;
        };
        if !self
            .rows_area
            .contains(Position::new(mouse.column, mouse.row))
        {
            return Handled::Ignored;
        }
        let listed = ctx.order.len();
        let position = ctx
            .order
            .iter()
            .position(|&i| i == ctx.selected)
            .unwrap_or(0);
        let row = match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                self.state.offset() + usize::from(mouse.row - self.rows_area.y)
            }
            MouseEventKind::ScrollUp => position.saturating_sub(1),
            MouseEventKind::ScrollDown => position + 1,
            _ => return Handled::Consumed,
        };
        match ctx.order.get(row.min(listed.saturating_sub(1))) {
            Some(&index) if row < listed || mouse.kind == MouseEventKind::ScrollDown => {
                Handled::Intent(Intent::Select(index))
            }
            _ => Handled::Consumed,
        }
    }
}
