//! The log panel: the newest engine log lines at the bottom, with local
//! times, word-wrapped (home shown as `~`, long paths shortened in the
//! middle); PgUp/PgDn and the mouse wheel scroll back through older ones.
//! It asks the layout for the rows its lines need, so a quiet log stays
//! small.

use ratatui::crossterm::event::{Event as Input, MouseEventKind};
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{panel, wrap_line, Component, Context, Handled};
use crate::engine::event::Level;
use crate::ui::model::LogLine;
use crate::ui::theme::Theme;

/// The log panel; remembers how far back it is scrolled.
#[derive(Debug, Default)]
pub struct LogPanel {
    /// Lines scrolled back from the newest (0: following the tail).
    pub scroll: usize,
    area: Rect,
    page: usize,
}

/// The most rows the layout is asked for (it bounds them further).
const ROWS_WANTED_MAX: u16 = 40;

/// Continuation rows start under the message, after `HH:MM:SS level `.
const INDENT: u16 = 15;

impl LogPanel {
    /// Rows the newest line needs at `width` columns (0 without lines).
    pub fn newest_rows(&self, ctx: &Context, width: u16) -> u16 {
        ctx.model
            .log
            .back()
            .map_or(0, |line| rows_of(line, ctx, width).len() as u16)
    }

    /// Rows the newest lines need at `width` columns (at least one).
    pub fn rows_wanted(&self, ctx: &Context, width: u16) -> u16 {
        let mut rows = 0u16;
        for line in ctx.model.log.iter().rev() {
            rows = rows.saturating_add(rows_of(line, ctx, width).len() as u16);
            if rows >= ROWS_WANTED_MAX {
                return ROWS_WANTED_MAX;
            }
        }
        rows.max(1)
    }

    /// Scrolls one page back, not beyond the oldest line.
    pub fn older(&mut self, total: usize) {
        self.scroll = (self.scroll + self.page.max(1)).min(total.saturating_sub(1));
    }

    /// Scrolls one page forward, back to following the tail at most.
    pub fn newer(&mut self) {
        self.scroll = self.scroll.saturating_sub(self.page.max(1));
    }
}

/// `HH:MM:SS` of a Unix time shifted by a UTC offset.
pub fn clock(unix_secs: u64, utc_offset: i64) -> String {
    let local = (unix_secs as i64 + utc_offset).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        local / 3600,
        (local % 3600) / 60,
        local % 60
    )
}

fn render_line(line: &LogLine, ctx: &Context, theme: Theme) -> Line<'static> {
    let (tag, style) = match line.level {
        Level::Debug => ("debug", theme.dim()),
        Level::Info => ("info ", theme.dim()),
        Level::Warn => ("WARN ", theme.warn()),
        Level::Error => ("ERROR", theme.error()),
    };
    let mut spans = vec![
        Span::styled(clock(line.unix_secs, ctx.utc_offset), theme.dim()),
        Span::raw(" "),
        Span::styled(tag, style),
        Span::raw(" "),
    ];
    if let Some(account) = &line.account {
        spans.push(Span::styled(format!("{account}: "), theme.label()));
    }
    let text_style = if line.level >= Level::Warn {
        style
    } else {
        ratatui::style::Style::new()
    };
    spans.push(Span::styled(line.message.clone(), text_style));
    Line::from(spans)
}

/// A log line as the rows it takes at `width`.
fn rows_of(line: &LogLine, ctx: &Context, width: u16) -> Vec<Line<'static>> {
    let max_path = (usize::from(width) * 2 / 3).max(24);
    let tidy = LogLine {
        message: crate::ui::format::tidy_paths(&line.message, ctx.view.home.as_deref(), max_path),
        ..line.clone()
    };
    wrap_line(&render_line(&tidy, ctx, ctx.theme), width, INDENT)
}

impl Component for LogPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let log = &ctx.model.log;
        self.scroll = self.scroll.min(log.len().saturating_sub(1));
        let title = if self.scroll > 0 {
            format!("Log ({} newer below)", self.scroll)
        } else {
            "Log".to_string()
        };
        let block = panel(title, theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        self.area = area;
        self.page = (inner.height as usize).max(1);
        if log.is_empty() {
            frame.render_widget(Line::styled("nothing logged yet", theme.dim()), inner);
            return;
        }
        // The newest whole lines that fit, wrapped; a line taller than the
        // panel shows its first rows.
        let end = log.len() - self.scroll;
        let height = usize::from(inner.height);
        let mut shown: Vec<Vec<Line>> = Vec::new();
        let mut rows = 0;
        for line in log.range(..end).rev() {
            let wrapped = rows_of(line, ctx, inner.width);
            if rows + wrapped.len() > height && !shown.is_empty() {
                break;
            }
            rows += wrapped.len();
            shown.push(wrapped);
            if rows >= height {
                break;
            }
        }
        let lines: Vec<Line> = shown.into_iter().rev().flatten().collect();
        frame.render_widget(Paragraph::new(lines), inner);
    }

    fn handle_input(&mut self, input: &Input, ctx: &Context) -> Handled {
        let Input::Mouse(mouse) = input else {
            return Handled::Ignored;
        };
        if !self.area.contains(Position::new(mouse.column, mouse.row)) {
            return Handled::Ignored;
        }
        let before = self.scroll;
        match mouse.kind {
            MouseEventKind::ScrollUp => {
                self.scroll = (self.scroll + 3).min(ctx.model.log.len().saturating_sub(1))
            }
            MouseEventKind::ScrollDown => self.scroll = self.scroll.saturating_sub(3),
            _ => return Handled::Consumed,
        }
        if before == self.scroll {
            Handled::Consumed
        } else {
            Handled::Redraw
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn clock_applies_the_offset_and_wraps_midnight() {
        assert_eq!(clock(0, 0), "00:00:00");
        assert_eq!(clock(3661, 0), "01:01:01");
        assert_eq!(clock(3600, -7200), "23:00:00");
    }
}
