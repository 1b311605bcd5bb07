//! The host-key prompt: on first contact with a host it shows the key's
//! SHA256 fingerprint and asks to accept it (y/n); a changed key is shown as
//! a refusal that can only be dismissed.

use ratatui::crossterm::event::{Event as Input, KeyCode};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, panel, wrapped_height, Component, Context, Handled, Intent};

/// The prompt for the oldest pending host-key question or refusal.
#[derive(Debug, Default)]
pub struct HostKeyPrompt;

impl Component for HostKeyPrompt {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let Some(prompt) = ctx.model.host_keys.front() else {
            return;
        };
        let key = &prompt.key;
        let fingerprint = Line::from(vec![
            Span::styled(format!("{} ", key.key_type), theme.label()),
            Span::styled(key.fingerprint.clone(), theme.key()),
        ]);
        let (title, lines, style, keys) = if let Some(detail) = &prompt.refusal {
            (
                "HOST KEY CHANGED: refused",
                vec![
                    Line::raw(format!(
                        "{}: {} port {} sent a key known_hosts does not have for it:",
                        prompt.account, key.host, key.port
                    )),
                    fingerprint,
                    Line::raw(""),
                    Line::styled(detail.clone(), theme.error()),
                ],
                theme.error(),
                " Esc: dismiss ",
            )
        } else {
            (
                "Unknown host key",
                vec![
                    Line::raw(format!(
                        "{}: first contact with {} port {}.",
                        prompt.account, key.host, key.port
                    )),
                    Line::raw("Its key's fingerprint:"),
                    fingerprint,
                    Line::raw(""),
                    Line::raw("Compare it with the one the server's admin gives you."),
                    Line::raw(""),
                    Line::from(vec![
                        Span::raw("Accept and remember it? "),
                        Span::styled("y", theme.key()),
                        Span::raw(" yes, "),
                        Span::styled("n", theme.key()),
                        Span::raw(" no"),
                    ]),
                ],
                theme.warn(),
                " y: accept  n: refuse ",
            )
        };
        let width = 72.min(area.width);
        let height = wrapped_height(&lines, width.saturating_sub(2)) + 2;
        let paragraph = Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            // The keys also sit on the bottom border, visible however much
            // of a long explanation a small screen cuts.
            .block(
                panel(Line::styled(title, style), theme)
                    .title_bottom(Line::styled(keys, theme.key())),
            );
        let rect = centered(area, width, height);
        frame.render_widget(Clear, rect);
        frame.render_widget(paragraph, rect);
    }

    fn handle_input(&mut self, input: &Input, ctx: &Context) -> Handled {
        let Input::Key(key) = input else {
            return Handled::Ignored;
        };
        let Some(prompt) = ctx.model.host_keys.front() else {
            return Handled::Ignored;
        };
        match (prompt.refusal.is_some(), key.code) {
            (false, KeyCode::Char('y') | KeyCode::Char('Y')) => {
                Handled::Intent(Intent::AnswerHostKey(true))
            }
            (false, KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc) => {
                Handled::Intent(Intent::AnswerHostKey(false))
            }
            (true, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('n')) => {
                Handled::Intent(Intent::DismissHostKey)
            }
            _ => Handled::Consumed,
        }
    }
}
