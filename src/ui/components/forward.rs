//! The SMTP forward panel: on/off, where it listens and forwards to, live
//! and total connections, bytes each way, and the last error.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{field, panel, Component, Context};
use crate::engine::event::TunnelState;
use crate::ui::format;

/// The forward panel (stateless).
#[derive(Debug, Default)]
pub struct ForwardPanel;

impl Component for ForwardPanel {
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Context) {
        let theme = ctx.theme;
        let block = panel("SMTP forward", theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let Some(account) = ctx.selected_account() else {
            return;
        };
        let fwd = &account.forward;
        let target = fwd
            .target
            .clone()
            .unwrap_or_else(|| format!("{}:25", account.host));
        let (word, style, address) = match &fwd.state {
            TunnelState::Off => ("off".to_string(), theme.dim(), fwd.listen.clone()),
            TunnelState::Connecting => ("connecting".into(), theme.busy(), fwd.listen.clone()),
            TunnelState::Listening(addr) => ("on".into(), theme.ok(), addr.to_string()),
            TunnelState::Reconnecting { in_secs } => (
                format!("reconnecting in {in_secs}s"),
                theme.warn(),
                fwd.listen.clone(),
            ),
        };
        let width = inner.width as usize;
        let mut state = vec![Span::styled(word, style), Span::raw(format!(" {address}"))];
        let arrow = format!(" → {target}");
        let target_fits = Line::from(state.clone()).width() + arrow.chars().count() <= width;
        if target_fits {
            state.push(Span::raw(arrow));
        }
        let s = fwd.stats;
        let mut conns = Vec::new();
        conns.extend(field(
            "conn ",
            format!("{} live/{} total", s.live, s.total),
            theme,
        ));
        let mut traffic = Vec::new();
        traffic.extend(field("up ", format::bytes(s.bytes_up), theme));
        traffic.extend(field("  down ", format::bytes(s.bytes_down), theme));
        // By priority: a short panel keeps the first lines.
        let mut lines = vec![Line::from(state)];
        match &fwd.last_error {
            Some(error) => lines.push(Line::styled(format!("error: {error}"), theme.error())),
            None if s.errors > 0 => {
                lines.push(Line::styled(format!("{} errors", s.errors), theme.warn()))
            }
            None => {}
        }
        let joined: Vec<Span> = conns
            .iter()
            .cloned()
            .chain([Span::raw("  ")])
            .chain(traffic.iter().cloned())
            .collect();
        if Line::from(joined.clone()).width() <= width {
            lines.push(Line::from(joined));
        } else {
            lines.push(Line::from(conns));
            lines.push(Line::from(traffic));
        }
        if !target_fits {
            lines.push(Line::styled(format!("to {target}"), theme.dim()));
        }
        if s.socket_sent > 0 || s.socket_received > 0 {
            let mut ssh = Vec::new();
            ssh.extend(field("ssh sent ", format::bytes(s.socket_sent), theme));
            ssh.extend(field(
                "  received ",
                format::bytes(s.socket_received),
                theme,
            ));
            lines.push(Line::from(ssh));
        }
        if matches!(fwd.state, TunnelState::Off) {
            lines.push(Line::styled("t starts it", theme.dim()));
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
    }
}
