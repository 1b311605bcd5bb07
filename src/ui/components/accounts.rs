//! The accounts panel: one row per account with its host, connection state,
//! last fetch, and what waits on the server. Click or wheel to select.

use ratatui::crossterm::event::{Event as Input, MouseButton, MouseEventKind};
use ratatui::layout::{Constraint, Flex, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Row, Table, TableState};
use ratatui::Frame;

use super::{panel, Component, Context, Handled, Intent};
use crate::engine::event::Stage;
use crate::ui::format;
use crate::ui::model::{AccountView, Outcome};
use crate::ui::theme::Theme;

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

/// The connection state of an account, styled.
pub fn connection_state(account: &AccountView, asking: bool, theme: Theme) -> Span<'static> {
    if asking {
        return Span::styled("host key?", theme.warn());
    }
    match account.fetch.stage {
        Some(Stage::Transferring) if account.fetch.progress.raw_total > 0 => {
            let p = &account.fetch.progress;
            let percent = p.raw_done.saturating_mul(100) / p.raw_total;
            Span::styled(format!("transfer {percent}%"), theme.busy())
        }
        Some(stage) if account.fetch.is_active() => Span::styled(stage_name(stage), theme.busy()),
        _ => Span::styled("idle", theme.dim()),
    }
}

/// The last fetch's result and age (`ok 50 msgs 5m ago`, or `ok 5m ago`
/// when `compact`), styled.
pub fn last_fetch(account: &AccountView, ctx: &Context, compact: bool) -> Span<'static> {
    match &account.last {
        None => Span::styled("never", ctx.theme.dim()),
        Some(last) => {
            let ago = format::ago(last.age(ctx.now));
            match &last.outcome {
                Outcome::Done(_) if compact => Span::styled(format!("ok {ago}"), ctx.theme.ok()),
                Outcome::Done(s) => {
                    Span::styled(format!("ok {} msgs {ago}", s.messages), ctx.theme.ok())
                }
                Outcome::Failed { .. } => Span::styled(format!("error {ago}"), ctx.theme.error()),
            }
        }
    }
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
                Some(m) => format!("new: {m} msgs {}", format::bytes(s.bytes)),
                None => format!("new: {}", format::bytes(s.bytes)),
            };
            Span::styled(text, theme.warn())
        }
    }
}

impl Component for AccountsPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let block = panel(format!("Accounts ({})", ctx.model.accounts.len()), theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if ctx.model.accounts.is_empty() {
            frame.render_widget(
                Line::styled("no accounts: add [[account]] to the config", theme.warn()),
                inner,
            );
            self.rows_area = Rect::default();
            return;
        }
        let with_header = inner.height as usize > ctx.model.accounts.len();
        let wide = inner.width >= 90;
        let name_width = ctx
            .model
            .accounts
            .iter()
            .map(|a| a.name.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(if with_header { 7 } else { 4 }, if wide { 16 } else { 10 })
            as u16;
        let rows = ctx.model.accounts.iter().map(|a| {
            let asking = ctx.model.host_keys.iter().any(|p| p.account == a.name);
            Row::new(vec![
                Line::raw(a.name.clone()),
                Line::raw(a.host.clone()),
                Line::from(connection_state(a, asking, theme)),
                Line::from(last_fetch(a, ctx, !wide)),
                Line::from(waiting(a, theme, !wide)),
            ])
        });
        let host_width = ctx
            .model
            .accounts
            .iter()
            .map(|a| a.host.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 40) as u16;
        // Wide: every column as wide as its content, the spare room at the
        // right; narrow: the host gives way first.
        let host = if wide {
            Constraint::Length(host_width)
        } else {
            Constraint::Fill(1)
        };
        let widths = [
            Constraint::Length(name_width),
            host,
            Constraint::Length(if wide { 13 } else { 12 }),
            Constraint::Length(if wide { 22 } else { 12 }),
            Constraint::Length(if wide { 22 } else { 11 }),
        ];
        let mut table = Table::new(rows, widths)
            .column_spacing(if wide { 2 } else { 1 })
            .flex(Flex::Start)
            .row_highlight_style(theme.selected())
            .highlight_symbol("▶ ");
        if with_header {
            table = table.header(
                Row::new(["account", "host", "state", "last fetch", "on server"])
                    .style(theme.label()),
            );
        }
        self.state.select(Some(ctx.selected));
        frame.render_stateful_widget(table, inner, &mut self.state);
        let header = u16::from(with_header);
        self.rows_area = Rect {
            y: inner.y + header,
            height: inner.height.saturating_sub(header),
            ..inner
        };
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
        let count = ctx.model.accounts.len();
        match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                let index = self.state.offset() + usize::from(mouse.row - self.rows_area.y);
                if index < count {
                    Handled::Intent(Intent::Select(index))
                } else {
                    Handled::Consumed
                }
            }
            MouseEventKind::ScrollUp => {
                Handled::Intent(Intent::Select(ctx.selected.saturating_sub(1)))
            }
            MouseEventKind::ScrollDown if count > 0 => {
                Handled::Intent(Intent::Select((ctx.selected + 1).min(count - 1)))
            }
            _ => Handled::Consumed,
        }
    }
}
