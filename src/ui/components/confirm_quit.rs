//! The quit confirmation, shown when `q` is pressed while a fetch runs.

use ratatui::crossterm::event::{Event as Input, KeyCode};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, panel, wrapped_height, Component, Context, Handled, Intent};

/// The "quit while fetching?" question.
#[derive(Debug, Default)]
pub struct ConfirmQuit;

impl Component for ConfirmQuit {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let busy: Vec<&str> = ctx
            .model
            .accounts
            .iter()
            .filter(|a| a.fetch.is_active())
            .map(|a| a.name.as_str())
            .collect();
        let mut lines = if busy.is_empty() {
            // The fetch ended while the question was open.
            vec![Line::raw("No fetch runs any more.")]
        } else {
            vec![
                Line::raw(format!("Fetching now: {}.", busy.join(", "))),
                Line::raw(
                    "Quitting stops it at a safe point; nothing is lost and the next fetch \
                     resumes it.",
                ),
            ]
        };
        lines.extend([
            Line::raw(""),
            Line::from(vec![
                Span::raw("Quit anyway? "),
                Span::styled("y", theme.key()),
                Span::raw(" yes, "),
                Span::styled("n", theme.key()),
                Span::raw(" no"),
            ]),
        ]);
        let width = 56.min(area.width);
        let height = wrapped_height(&lines, width.saturating_sub(2)) + 2;
        let rect = centered(area, width, height);
        frame.render_widget(Clear, rect);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .block(panel(Line::styled("Quit?", theme.warn()), theme)),
            rect,
        );
    }

    fn handle_input(&mut self, input: &Input, _ctx: &Context) -> Handled {
        match input {
            Input::Key(key) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => Handled::Intent(Intent::ConfirmQuit),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                    Handled::Intent(Intent::Close)
                }
                _ => Handled::Consumed,
            },
            _ => Handled::Ignored,
        }
    }
}
