//! The dashboard's state machine: the model plus selection, overlays and the
//! components; turns inputs into engine calls and lays the panels out for any
//! terminal size from 60x20 up.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{Event as Input, KeyEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::components::accounts::AccountsPanel;
use super::components::confirm_quit::ConfirmQuit;
use super::components::details::DetailsOverlay;
use super::components::forward::ForwardPanel;
use super::components::help::HelpOverlay;
use super::components::history::HistoryPanel;
use super::components::host_key::HostKeyPrompt;
use super::components::log::LogPanel;
use super::components::transfer::TransferPanel;
use super::components::{Component, Context, Handled, Intent};
use super::engine::Engine;
use super::keymap::{action_for, Action};
use super::model::{Model, Moment, PastFetch};
use super::theme::Theme;
use crate::config::Config;
use crate::engine::event::Event;

/// Which overlay covers the panels (the host-key prompt is separate: it is
/// driven by the model's queue and comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    /// The key list.
    Help,
    /// The selected account's details.
    Details,
    /// "Quit while fetching?"
    ConfirmQuit,
}

/// The whole dashboard state.
pub struct App {
    /// What the engine reported.
    pub model: Model,
    selected: usize,
    overlay: Option<Overlay>,
    quit: bool,
    theme: Theme,
    utc_offset: i64,
    now: Instant,
    accounts: AccountsPanel,
    transfer: TransferPanel,
    forward: ForwardPanel,
    history: HistoryPanel,
    log: LogPanel,
    help: HelpOverlay,
    host_key: HostKeyPrompt,
    confirm_quit: ConfirmQuit,
    details: DetailsOverlay,
}

/// Below this width or height the panels stack instead of sitting side by side.
const WIDE: (u16, u16) = (100, 24);

impl App {
    /// A dashboard for the config's accounts and the stored fetch history.
    pub fn new(
        config: &Config,
        history: Vec<PastFetch>,
        theme: Theme,
        utc_offset: i64,
        now: Instant,
    ) -> App {
        App {
            model: Model::new(config, history),
            selected: 0,
            overlay: None,
            quit: false,
            theme,
            utc_offset,
            now,
            accounts: AccountsPanel::default(),
            transfer: TransferPanel,
            forward: ForwardPanel,
            history: HistoryPanel,
            log: LogPanel::default(),
            help: HelpOverlay,
            host_key: HostKeyPrompt,
            confirm_quit: ConfirmQuit,
            details: DetailsOverlay,
        }
    }

    /// Index of the selected account.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// The open overlay.
    pub fn overlay(&self) -> Option<Overlay> {
        self.overlay
    }

    /// Whether the user quit (the engine has been told to shut down).
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Sets the time that elapsed times and ages are drawn against.
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// Applies an engine event; returns whether the screen must be redrawn.
    pub fn apply(&mut self, event: Event, at: Moment) -> bool {
        self.model.apply(event, at)
    }

    /// When the picture changes by itself, with no event: every second while
    /// a fetch runs (elapsed time), else when an "ago" label turns the
    /// minute; `None` when nothing on screen depends on time.
    pub fn next_timed_redraw(&self) -> Option<Instant> {
        if self.model.any_fetch_active() {
            return Some(self.now + Duration::from_secs(1));
        }
        self.model
            .accounts
            .iter()
            .filter_map(|a| a.last.as_ref())
            .map(|last| {
                let age = last.age(self.now).as_secs();
                self.now + Duration::from_secs(60 - age % 60)
            })
            .min()
    }

    /// Handles a key, mouse or resize input, calling the engine for what the
    /// user asks; returns whether the screen must be redrawn.
    pub fn handle_input(&mut self, input: &Input, engine: &mut dyn Engine) -> bool {
        if let Input::Key(key) = input {
            if key.kind == KeyEventKind::Release {
                return false;
            }
        }
        if let Input::Resize(..) = input {
            return true;
        }
        let ctx = Context {
            model: &self.model,
            selected: self.selected,
            theme: self.theme,
            now: self.now,
            utc_offset: self.utc_offset,
        };
        let mut handled = Handled::Ignored;
        if !ctx.model.host_keys.is_empty() {
            handled = self.host_key.handle_input(input, &ctx);
        }
        if handled == Handled::Ignored {
            handled = match self.overlay {
                Some(Overlay::Help) => self.help.handle_input(input, &ctx),
                Some(Overlay::Details) => self.details.handle_input(input, &ctx),
                Some(Overlay::ConfirmQuit) => self.confirm_quit.handle_input(input, &ctx),
                None => Handled::Ignored,
            };
        }
        if handled == Handled::Ignored {
            if let Input::Mouse(_) = input {
                handled = self.accounts.handle_input(input, &ctx);
                if handled == Handled::Ignored {
                    handled = self.log.handle_input(input, &ctx);
                }
            }
        }
        match handled {
            Handled::Consumed => false,
            Handled::Redraw => true,
            Handled::Intent(intent) => self.carry_out(intent, engine),
            Handled::Ignored => match input {
                Input::Key(key) => match action_for(key) {
                    Some(action) => self.act(action, engine),
                    None => false,
                },
                _ => false,
            },
        }
    }

    fn carry_out(&mut self, intent: Intent, engine: &mut dyn Engine) -> bool {
        match intent {
            Intent::Select(index) => {
                let changed = index != self.selected;
                self.selected = index;
                changed
            }
            Intent::AnswerHostKey(accept) => {
                if let Some(prompt) = self.model.host_keys.pop_front() {
                    engine.answer_host_key(&prompt.account, accept);
                }
                true
            }
            Intent::DismissHostKey => {
                self.model.host_keys.pop_front();
                true
            }
            Intent::ConfirmQuit => {
                self.overlay = None;
                self.quit_now(engine);
                true
            }
            Intent::Close => {
                self.overlay = None;
                true
            }
        }
    }

    fn quit_now(&mut self, engine: &mut dyn Engine) {
        if !self.quit {
            engine.shutdown();
            self.quit = true;
        }
    }

    fn act(&mut self, action: Action, engine: &mut dyn Engine) -> bool {
        let count = self.model.accounts.len();
        let name = self
            .model
            .accounts
            .get(self.selected)
            .map(|a| a.name.clone());
        let before = (self.selected, self.overlay, self.log.scroll);
        match action {
            Action::FetchSelected => {
                if let Some(name) = name {
                    engine.fetch(&name);
                }
            }
            Action::FetchAll => engine.fetch_all(),
            Action::ToggleForward => {
                if let Some(name) = name {
                    engine.toggle_forward(&name);
                }
            }
            Action::SelectPrevious => self.selected = self.selected.saturating_sub(1),
            Action::SelectNext => self.selected = (self.selected + 1).min(count.saturating_sub(1)),
            Action::SelectFirst => self.selected = 0,
            Action::SelectLast => self.selected = count.saturating_sub(1),
            Action::Details => {
                self.overlay = match self.overlay {
                    Some(Overlay::Details) => None,
                    _ if count > 0 => Some(Overlay::Details),
                    other => other,
                }
            }
            Action::LogOlder => self.log.older(self.model.log.len()),
            Action::LogNewer => self.log.newer(),
            Action::Help => self.overlay = Some(Overlay::Help),
            Action::Quit => {
                if self.model.any_fetch_active() {
                    self.overlay = Some(Overlay::ConfirmQuit);
                } else {
                    self.quit_now(engine);
                }
            }
        }
        before != (self.selected, self.overlay, self.log.scroll)
    }

    /// Draws the whole screen.
    pub fn draw(&mut self, frame: &mut Frame) {
        let area = frame.area();
        let ctx = Context {
            model: &self.model,
            selected: self.selected,
            theme: self.theme,
            now: self.now,
            utc_offset: self.utc_offset,
        };
        let panels = layout(area, ctx.model.accounts.len());
        self.accounts.draw(frame, panels.accounts, &ctx);
        self.transfer.draw(frame, panels.transfer, &ctx);
        self.forward.draw(frame, panels.forward, &ctx);
        self.history.draw(frame, panels.history, &ctx);
        self.log.draw(frame, panels.log, &ctx);
        frame.render_widget(footer(&ctx), panels.footer);
        match self.overlay {
            Some(Overlay::Help) => self.help.draw(frame, area, &ctx),
            Some(Overlay::Details) => self.details.draw(frame, area, &ctx),
            Some(Overlay::ConfirmQuit) => self.confirm_quit.draw(frame, area, &ctx),
            None => {}
        }
        if !ctx.model.host_keys.is_empty() {
            self.host_key.draw(frame, area, &ctx);
        }
    }
}

/// Where each panel goes.
struct Panels {
    accounts: Rect,
    transfer: Rect,
    forward: Rect,
    history: Rect,
    log: Rect,
    footer: Rect,
}

/// Lays the panels out. Wide screens: accounts across the top, transfer
/// beside forward-over-history, the log below. Narrow or short screens: all
/// stacked, forward and history side by side, each at its smallest useful
/// height, the log taking what is left.
fn layout(area: Rect, accounts: usize) -> Panels {
    let n = accounts.max(1) as u16;
    if area.width >= WIDE.0 && area.height >= WIDE.1 {
        let accounts_height = (n + 3).min(area.height / 4).max(4);
        let middle = (area.height * 2 / 5).max(10);
        let [accounts, middle, log, footer] = Layout::vertical([
            Constraint::Length(accounts_height),
            Constraint::Length(middle),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        let [transfer, right] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
                .areas(middle);
        let forward_height = if right.height >= 16 {
            7
        } else {
            right.height / 2
        };
        let [forward, history] =
            Layout::vertical([Constraint::Length(forward_height), Constraint::Min(3)]).areas(right);
        Panels {
            accounts,
            transfer,
            forward,
            history,
            log,
            footer,
        }
    } else {
        let accounts_height = (n + 2).min((area.height / 4).max(3));
        let [accounts, transfer, lower, log, footer] = Layout::vertical([
            Constraint::Length(accounts_height),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        let [forward, history] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(lower);
        Panels {
            accounts,
            transfer,
            forward,
            history,
            log,
            footer,
        }
    }
}

/// The bottom line: the new-mail notice first, then key hints as far as
/// they fit.
fn footer(ctx: &Context) -> Line<'static> {
    let theme = ctx.theme;
    let mut spans = Vec::new();
    let new_mail: Vec<&str> = ctx
        .model
        .accounts
        .iter()
        .filter(|a| a.spool.is_some_and(|s| s.bytes > 0) && !a.fetch.is_active())
        .map(|a| a.name.as_str())
        .collect();
    if !new_mail.is_empty() {
        spans.push(Span::styled(
            format!("new mail waiting: {}", new_mail.join(", ")),
            theme.warn(),
        ));
        spans.push(Span::styled(" │ ", theme.dim()));
    }
    // Help first: on a narrow screen the tail of the hints is cut.
    for (key, what) in [
        ("?", "help"),
        ("f", "fetch"),
        ("F", "all"),
        ("t", "forward"),
        ("↑↓", "select"),
        ("⏎", "details"),
        ("q", "quit"),
    ] {
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Line::from(spans)
}
