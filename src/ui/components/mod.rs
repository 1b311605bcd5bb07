//! The dashboard's panels and overlays. Each is a component in the manner of
//! gitui's: it draws itself into a rectangle from the shared [`Context`] and
//! may handle input, answering with what it did ([`Handled`]); the
//! [`App`](super::app::App) decides what reaches which component.

pub mod accounts;
pub mod confirm_quit;
pub mod details;
pub mod forward;
pub mod help;
pub mod history;
pub mod host_key;
pub mod log;
pub mod outbox;
pub mod transfer;

use std::time::Instant;

use ratatui::crossterm::event::Event as Input;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};
use ratatui::Frame;

use super::model::Model;
use super::theme::Theme;
use super::view_options::{HistoryRange, SortOrder};

/// The user's view of the model: selection, sort, filter, history range and
/// how to draw. Kept by the app, read by every component.
#[derive(Debug, Clone)]
pub struct View {
    /// Index of the selected account, in config order.
    pub selected: usize,
    /// The styles.
    pub theme: Theme,
    /// Now, for elapsed times and "ago" labels.
    pub now: Instant,
    /// The local time zone's offset from UTC in seconds.
    pub utc_offset: i64,
    /// The user's home directory, shown as `~` in paths.
    pub home: Option<String>,
    /// The accounts table's order.
    pub sort: SortOrder,
    /// The filter on account names (case-insensitive substring).
    pub filter: String,
    /// Whether keys go to the filter.
    pub filter_editing: bool,
    /// How far back the history chart reaches.
    pub range: HistoryRange,
}

/// What every component may read while drawing or handling input.
pub struct Context<'a> {
    /// The model.
    pub model: &'a Model,
    /// Selection, sort, filter, range.
    pub view: &'a View,
    /// The accounts as listed: indices into `model.accounts`.
    pub order: &'a [usize],
    /// Index of the selected account (valid when there are accounts).
    pub selected: usize,
    /// The styles.
    pub theme: Theme,
    /// Now, for elapsed times and "ago" labels.
    pub now: Instant,
    /// The local time zone's offset from UTC in seconds, for log times.
    pub utc_offset: i64,
}

impl Context<'_> {
    /// The selected account, if there is one (and the filter lists it).
    pub fn selected_account(&self) -> Option<&super::model::AccountView> {
        self.order
            .contains(&self.selected)
            .then(|| self.model.accounts.get(self.selected))
            .flatten()
    }

    /// Now on the wall clock, in seconds since the Unix epoch.
    pub fn now_unix(&self) -> u64 {
        self.model.unix_at(self.now)
    }
}

/// What a component did with an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Not its business; offer it elsewhere.
    Ignored,
    /// Consumed; nothing visible changed.
    Consumed,
    /// Consumed; the screen must be redrawn.
    Redraw,
    /// Consumed, and the app must do something.
    Intent(Intent),
}

/// Something only the app can do, asked for by a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Select the account at this index.
    Select(usize),
    /// Answer the front host-key question.
    AnswerHostKey(bool),
    /// Dismiss the front host-key refusal.
    DismissHostKey,
    /// Quit now, though a fetch runs.
    ConfirmQuit,
    /// Close the overlay that asked.
    Close,
}

/// A panel or overlay.
pub trait Component {
    /// Draws into `area`; may remember the area for mouse hits.
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context);

    /// Handles a key or mouse input.
    fn handle_input(&mut self, _input: &Input, _ctx: &Context) -> Handled {
        Handled::Ignored
    }
}

/// A panel's frame with its title; borders dim, title bold.
pub fn panel<'a>(title: impl Into<Line<'a>>, theme: Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(theme.border())
        .title(title.into().style(theme.title()))
}

/// `label value` spans with the label styled as such.
pub fn field<'a>(label: &'a str, value: String, theme: Theme) -> [Span<'a>; 2] {
    [Span::styled(label, theme.label()), Span::raw(value)]
}

/// A rectangle of at most `width` x `height` centred in `area`, for overlays.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

/// Rows that `lines` take when word-wrapped at `width` (greedy, breaking at
/// spaces, as `Paragraph` with `Wrap { trim: true }` does closely enough).
pub fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let mut rows = 0usize;
    for line in lines {
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        let mut used = 0usize;
        rows += 1;
        for word in text.split(' ').filter(|w| !w.is_empty()) {
            let w = word.chars().count();
            if used > 0 && used + 1 + w <= width {
                used += 1 + w;
            } else {
                if used > 0 {
                    rows += 1;
                }
                rows += (w.max(1) - 1) / width;
                used = (w - 1) % width + 1;
            }
        }
    }
    rows.min(usize::from(u16::MAX)) as u16
}

/// A styled line word-wrapped to `width` columns: breaks at spaces, never
/// inside a word unless the word alone is wider than a row; continuation
/// rows start `indent` columns in (at most half the width). Each returned line is one row, so its
/// height is exact.
pub fn wrap_line(line: &Line<'static>, width: u16, indent: u16) -> Vec<Line<'static>> {
    let width = usize::from(width.max(1));
    let indent = usize::from(indent).min(width / 2);
    // Words with their styles; a space between words is `None`.
    let mut pieces: Vec<Option<Span<'static>>> = Vec::new();
    for span in &line.spans {
        for (i, word) in span.content.split(' ').enumerate() {
            if i > 0 {
                pieces.push(None);
            }
            if !word.is_empty() {
                pieces.push(Some(Span::styled(word.to_string(), span.style)));
            }
        }
    }
    let mut rows: Vec<Vec<Span<'static>>> = vec![Vec::new()];
    let mut used = 0usize;
    let mut row_start = 0usize;
    let mut pending_spaces = 0usize;
    for piece in pieces {
        let Some(word) = piece else {
            if used > row_start {
                pending_spaces += 1;
            }
            continue;
        };
        let mut text: String = word.content.to_string();
        let style = word.style;
        let space = pending_spaces;
        pending_spaces = 0;
        let w = Span::raw(text.as_str()).width();
        if used + space + w <= width {
            let row = rows.last_mut().expect("a row");
            if space > 0 {
                row.push(Span::raw(" ".repeat(space)));
            }
            row.push(Span::styled(text, style));
            used += space + w;
            continue;
        }
        if used > row_start {
            rows.push(vec![Span::raw(" ".repeat(indent))]);
            used = indent;
            row_start = indent;
        }
        // Hard-break a word wider than a row.
        while Span::raw(text.as_str()).width() > width - used {
            let cut: String = text.chars().take((width - used).max(1)).collect();
            text = text[cut.len()..].to_string();
            rows.last_mut()
                .expect("a row")
                .push(Span::styled(cut, style));
            rows.push(vec![Span::raw(" ".repeat(indent))]);
            used = indent;
            row_start = indent;
        }
        used += Span::raw(text.as_str()).width();
        rows.last_mut()
            .expect("a row")
            .push(Span::styled(text, style));
    }
    rows.into_iter()
        .map(|spans| Line::from(spans).style(line.style))
        .collect()
}
