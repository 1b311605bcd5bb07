//! The details overlay (Enter): the selected account's settings as the
//! dashboard knows them, its spool check, its link and outbox, its last
//! outcome in full and its recent errors (newest first).

use std::time::Duration;

use ratatui::crossterm::event::{Event as Input, KeyCode};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::log::clock;
use super::{centered, field, panel, wrapped_height, Component, Context, Handled, Intent};
use crate::engine::event::LinkState;
use crate::engine::watch::WatchMode;
use crate::ui::format;
use crate::ui::model::{LinkView, Outcome};

/// The details overlay.
#[derive(Debug, Default)]
pub struct DetailsOverlay;

/// What keeps the link, in words, with when it began.
fn link_words(link: &LinkView, ctx: &Context) -> String {
    let since = format!(
        "since {} ({})",
        &clock(link.since, ctx.utc_offset)[..5],
        format::ago(Duration::from_secs(
            ctx.now_unix().saturating_sub(link.since)
        ))
    );
    match &link.state {
        LinkState::Connecting => format!("connecting {since}"),
        LinkState::Watching(mode) => format!(
            "the server's watcher reports each change ({}) {since}",
            match mode {
                WatchMode::Inotify => "inotify",
                WatchMode::Poll => "a look every second",
            }
        ),
        LinkState::Polling { every } => {
            format!(
                "no watcher there: checking every {} {since}",
                format::duration(*every)
            )
        }
        LinkState::BackingOff { until, reason } => format!(
            "down ({reason}); next try at {}",
            &clock(*until, ctx.utc_offset)[..5]
        ),
        LinkState::Fetching => format!("fetching {since}"),
        LinkState::Sending => format!("sending the outbox {since}"),
        LinkState::Stopped(None) => format!("stopped {since}"),
        LinkState::Stopped(Some(reason)) => format!("stopped: {reason}"),
    }
}

impl Component for DetailsOverlay {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let Some(a) = ctx.selected_account() else {
            return;
        };
        let mut lines = vec![
            Line::from(field("host     ", a.host.clone(), theme).to_vec()),
            Line::from(
                field(
                    "user     ",
                    a.user
                        .clone()
                        .unwrap_or_else(|| "(ssh config / local)".into()),
                    theme,
                )
                .to_vec(),
            ),
            Line::from(
                field(
                    "port     ",
                    a.port.map_or("(ssh config / 22)".into(), |p| p.to_string()),
                    theme,
                )
                .to_vec(),
            ),
            Line::from(
                field(
                    "spool    ",
                    a.spool_path
                        .clone()
                        .unwrap_or_else(|| "/var/mail/USER".into()),
                    theme,
                )
                .to_vec(),
            ),
            Line::from(
                field(
                    "on server",
                    match a.spool {
                        None => " not checked yet".to_string(),
                        Some(s) => format!(
                            " {}{}",
                            format::bytes(s.bytes),
                            s.messages
                                .map_or(String::new(), |m| format!(", {m} messages"))
                        ),
                    },
                    theme,
                )
                .to_vec(),
            ),
        ];
        if let Some(link) = &a.link {
            lines.push(Line::from(
                field("link     ", link_words(link, ctx), theme).to_vec(),
            ));
        }
        if let Some(c) = a.outbox {
            let ratio = if c.wire_bytes > 0 {
                format!(
                    " ({}, {} on the wire, {})",
                    format::bytes(c.sent_bytes),
                    format::bytes(c.wire_bytes),
                    format::ratio(c.sent_bytes, c.wire_bytes)
                )
            } else {
                String::new()
            };
            lines.push(Line::from(
                field(
                    "outbox   ",
                    format!(
                        "{} queued, {} sending, {} sent today{ratio}, {} failed",
                        c.queued, c.sending, c.sent_today, c.failed
                    ),
                    theme,
                )
                .to_vec(),
            ));
        }
        lines.push(Line::from(
            field(
                "forward  ",
                format!(
                    "{} → {}",
                    a.forward.listen,
                    a.forward
                        .target
                        .clone()
                        .unwrap_or_else(|| format!("{}:25", a.host))
                ),
                theme,
            )
            .to_vec(),
        ));
        match a
            .last
            .as_ref()
            .map(|l| (&l.outcome, l.age(ctx.now), l.unix_secs))
        {
            None => lines.push(Line::from(
                field("last     ", "no fetch recorded".into(), theme).to_vec(),
            )),
            Some((Outcome::Done(s), age, unix)) => {
                lines.push(Line::from(
                    field(
                        "last     ",
                        format!(
                            "ok at {} ({}): {} messages, {} undelivered",
                            clock(unix, ctx.utc_offset),
                            format::ago(age),
                            s.messages,
                            s.undelivered
                        ),
                        theme,
                    )
                    .to_vec(),
                ));
                lines.push(Line::from(
                    field(
                        "         ",
                        format!(
                            "{} raw, {} payload ({}), {} on the socket, {} in {}",
                            format::bytes(s.raw_bytes),
                            format::bytes(s.payload_bytes),
                            s.method,
                            format::bytes(s.socket_bytes),
                            format::ratio(s.raw_bytes, s.payload_bytes),
                            format::duration(s.elapsed)
                        ),
                        theme,
                    )
                    .to_vec(),
                ));
            }
            Some((Outcome::Failed { exit, message }, age, unix)) => {
                lines.push(Line::from(
                    field(
                        "last     ",
                        format!(
                            "failed at {} ({}), exit {} {exit:?}",
                            clock(unix, ctx.utc_offset),
                            format::ago(age),
                            exit.code()
                        ),
                        theme,
                    )
                    .to_vec(),
                ));
                lines.push(Line::styled(message.clone(), theme.error()));
            }
        }
        if !a.errors.is_empty() {
            lines.push(Line::styled("recent errors", theme.label()));
            for e in a.errors.iter().rev() {
                lines.push(Line::from(vec![
                    ratatui::text::Span::styled(
                        format!("{} ", clock(e.unix_secs, ctx.utc_offset)),
                        theme.dim(),
                    ),
                    ratatui::text::Span::styled(
                        format::tidy_paths(&e.message, ctx.view.home.as_deref(), 60),
                        theme.error(),
                    ),
                ]));
            }
        }
        let width = 76.min(area.width);
        let height = wrapped_height(&lines, width.saturating_sub(2)) + 2;
        let rect = centered(area, width, height);
        frame.render_widget(Clear, rect);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel(format!("{} (Esc closes)", a.name), theme)),
            rect,
        );
    }

    fn handle_input(&mut self, input: &Input, _ctx: &Context) -> Handled {
        match input {
            Input::Key(key) if matches!(key.code, KeyCode::Esc | KeyCode::Enter) => {
                Handled::Intent(Intent::Close)
            }
            _ => Handled::Ignored,
        }
    }
}
