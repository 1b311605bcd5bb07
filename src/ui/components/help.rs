//! The help overlay: every key of the main screen (from the one keymap
//! table) and the keys of prompts.

use ratatui::crossterm::event::{Event as Input, KeyCode};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::{centered, panel, Component, Context, Handled, Intent};
use crate::ui::keymap::{keys_label, BINDINGS, PROMPT_KEYS};

/// The help overlay.
#[derive(Debug, Default)]
pub struct HelpOverlay;

impl Component for HelpOverlay {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let key_width = 10;
        let mut lines: Vec<Line> = BINDINGS
            .iter()
            .map(|b| {
                Line::from(vec![
                    Span::styled(format!("{:<key_width$}", keys_label(b)), theme.key()),
                    Span::raw(b.description),
                ])
            })
            .collect();
        lines.push(Line::styled("in prompts and overlays", theme.label()));
        lines.extend(PROMPT_KEYS.iter().map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("{keys:<key_width$}"), theme.key()),
                Span::raw(*what),
            ])
        }));
        let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 4;
        let rect = centered(area, width, lines.len() as u16 + 2);
        frame.render_widget(Clear, rect);
        frame.render_widget(
            Paragraph::new(lines).block(panel("Keys (Esc closes)", theme)),
            rect,
        );
    }

    fn handle_input(&mut self, input: &Input, _ctx: &Context) -> Handled {
        match input {
            Input::Key(key)
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?') | KeyCode::Char('q')
                ) =>
            {
                Handled::Intent(Intent::Close)
            }
            // A modal overlay: other keys do nothing while it is open.
            Input::Key(_) => Handled::Consumed,
            _ => Handled::Ignored,
        }
    }
}
