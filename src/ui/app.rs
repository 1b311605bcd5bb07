//! The dashboard's state machine: the model plus selection, overlays and the
//! components; turns inputs into engine calls and lays the panels out for any
//! terminal size from 60x20 up.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{Event as Input, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::alerts::Alerts;
use super::components::accounts::AccountsPanel;
use super::components::confirm_quit::ConfirmQuit;
use super::components::details::DetailsOverlay;
use super::components::forward::ForwardPanel;
use super::components::help::HelpOverlay;
use super::components::history::HistoryPanel;
use super::components::host_key::HostKeyPrompt;
use super::components::log::LogPanel;
use super::components::outbox::OutboxPanel;
use super::components::transfer::TransferPanel;
use super::components::{Component, Context, Handled, Intent, View};
use super::engine::Engine;
use super::keymap::{action_for, Action};
use super::model::{AccountView, Model, Moment, PastFetch};
use super::theme::Theme;
use super::view_options::{HistoryRange, SortOrder};
use crate::config::Config;
use crate::engine::event::{Event, LinkState, TunnelState};

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
    view: View,
    overlay: Option<Overlay>,
    quit: bool,
    accounts: AccountsPanel,
    transfer: TransferPanel,
    forward: ForwardPanel,
    history: HistoryPanel,
    log: LogPanel,
    outbox: OutboxPanel,
    help: HelpOverlay,
    host_key: HostKeyPrompt,
    confirm_quit: ConfirmQuit,
    details: DetailsOverlay,
    /// The bell and title on new mail, if the config asks for them.
    alerts: Option<Alerts>,
}

/// From this width on, transfer and history sit side by side.
const WIDE_WIDTH: u16 = 100;

/// From this height of the panels' area on, the outbox is a panel with
/// borders; below it, one row.
const OUTBOX_PANEL_HEIGHT: u16 = 36;

impl App {
    /// A dashboard for the config's accounts and the stored fetch history,
    /// started at `start` (ages and chart ranges count from its wall clock).
    pub fn new(
        config: &Config,
        history: Vec<PastFetch>,
        theme: Theme,
        utc_offset: i64,
        start: Moment,
    ) -> App {
        App {
            model: Model::new(config, history, start),
            view: View {
                selected: 0,
                theme,
                now: start.instant,
                utc_offset,
                home: None,
                sort: SortOrder::default(),
                filter: String::new(),
                filter_editing: false,
                range: HistoryRange::default(),
            },
            overlay: None,
            quit: false,
            accounts: AccountsPanel::default(),
            transfer: TransferPanel,
            forward: ForwardPanel,
            history: HistoryPanel,
            log: LogPanel::default(),
            outbox: OutboxPanel,
            help: HelpOverlay,
            host_key: HostKeyPrompt,
            confirm_quit: ConfirmQuit,
            details: DetailsOverlay,
            alerts: None,
        }
    }

    /// Shows paths under this home directory as `~/...`.
    pub fn with_home(mut self, home: Option<String>) -> App {
        self.view.home = home.filter(|h| h.len() > 1);
        self
    }

    /// Index of the selected account (in config order).
    pub fn selected(&self) -> usize {
        self.view.selected
    }

    /// The accounts as the table lists them: indices into the model's
    /// accounts, filtered by name and sorted.
    pub fn order(&self) -> Vec<usize> {
        account_order(&self.model, &self.view)
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
        self.view.now = now;
    }

    /// Applies an engine event; returns whether the screen must be redrawn.
    pub fn apply(&mut self, event: Event, at: Moment) -> bool {
        if let Some(alerts) = &mut self.alerts {
            alerts.on_event(&event);
        }
        self.model.apply(event, at)
    }

    /// Gives new-mail alerts (bell, window title) as `alerts` says.
    pub fn with_alerts(mut self, alerts: Option<Alerts>) -> App {
        self.alerts = alerts;
        self
    }

    /// The dashboard is closing: the terminal's title is given back.
    pub fn finish_alerts(&mut self) {
        if let Some(alerts) = &mut self.alerts {
            alerts.finish();
        }
    }

    /// When the picture changes by itself, with no event: every second while
    /// a fetch runs (elapsed time), else when an "ago" label or a link's age
    /// turns the minute; `None` when nothing on screen depends on time.
    pub fn next_timed_redraw(&self) -> Option<Instant> {
        let now = self.view.now;
        if self.model.any_fetch_active() {
            return Some(now + Duration::from_secs(1));
        }
        let now_unix = self.model.unix_at(now);
        let fetch_ages = self
            .model
            .accounts
            .iter()
            .filter_map(|a| a.last.as_ref())
            .map(|last| last.age(now).as_secs());
        // `watching 12m`, `polling 3m`.
        let link_ages = self
            .model
            .accounts
            .iter()
            .filter_map(|a| a.link.as_ref())
            .filter(|l| matches!(l.state, LinkState::Watching(_) | LinkState::Polling { .. }))
            .map(|l| now_unix.saturating_sub(l.since));
        fetch_ages
            .chain(link_ages)
            .map(|age| now + Duration::from_secs(60 - age % 60))
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
        let order = self.order();
        let ctx = Context {
            model: &self.model,
            view: &self.view,
            order: &order,
            selected: self.view.selected,
            theme: self.view.theme,
            now: self.view.now,
            utc_offset: self.view.utc_offset,
        };
        let mut handled = Handled::Ignored;
        if !ctx.model.host_keys.is_empty() {
            handled = self.host_key.handle_input(input, &ctx);
        }
        if handled == Handled::Ignored && self.view.filter_editing && self.overlay.is_none() {
            if let Input::Key(key) = input {
                return self.edit_filter(key.code);
            }
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
                let changed = index != self.view.selected;
                self.view.selected = index;
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

    /// A key while the filter is being typed: characters extend it,
    /// Backspace shortens it, Enter keeps it, Esc clears it.
    fn edit_filter(&mut self, code: KeyCode) -> bool {
        match code {
            KeyCode::Char(c) => self.view.filter.push(c),
            KeyCode::Backspace => {
                self.view.filter.pop();
            }
            KeyCode::Enter => self.view.filter_editing = false,
            KeyCode::Esc => {
                self.view.filter.clear();
                self.view.filter_editing = false;
            }
            _ => return false,
        }
        self.keep_selection_visible();
        true
    }

    /// After the filter or the sort changed: the selection stays on its
    /// account if that is listed, else moves to the first one listed.
    fn keep_selection_visible(&mut self) {
        let order = self.order();
        if !order.contains(&self.view.selected) {
            if let Some(&first) = order.first() {
                self.view.selected = first;
            }
        }
    }

    fn act(&mut self, action: Action, engine: &mut dyn Engine) -> bool {
        let order = self.order();
        let position = order.iter().position(|&i| i == self.view.selected);
        let name = self
            .model
            .accounts
            .get(self.view.selected)
            .filter(|_| position.is_some())
            .map(|a| a.name.clone());
        let before = (
            self.view.selected,
            self.overlay,
            self.log.scroll,
            self.view.sort,
            self.view.range,
            self.view.filter_editing,
        );
        let step = |delta: isize| -> Option<usize> {
            let last = order.len().checked_sub(1)?;
            let at = position.unwrap_or(0) as isize + delta;
            Some(order[at.clamp(0, last as isize) as usize])
        };
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
            Action::FlushOutbox => {
                if let Some(name) = name {
                    engine.flush_outbox(&name);
                }
            }
            Action::SelectPrevious => {
                if let Some(i) = step(-1) {
                    self.view.selected = i;
                }
            }
            Action::SelectNext => {
                if let Some(i) = step(1) {
                    self.view.selected = i;
                }
            }
            Action::SelectFirst => {
                if let Some(&i) = order.first() {
                    self.view.selected = i;
                }
            }
            Action::SelectLast => {
                if let Some(&i) = order.last() {
                    self.view.selected = i;
                }
            }
            Action::Details => {
                self.overlay = match self.overlay {
                    Some(Overlay::Details) => None,
                    _ if name.is_some() => Some(Overlay::Details),
                    other => other,
                }
            }
            Action::CycleSort => {
                self.view.sort = self.view.sort.next();
            }
            Action::Filter => self.view.filter_editing = true,
            Action::CycleHistoryRange => self.view.range = self.view.range.next(),
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
        before
            != (
                self.view.selected,
                self.overlay,
                self.log.scroll,
                self.view.sort,
                self.view.range,
                self.view.filter_editing,
            )
    }

    /// Draws the whole screen.
    pub fn draw(&mut self, frame: &mut Frame) {
        let area = frame.area();
        self.model
            .refresh_totals(self.model.unix_at(self.view.now), self.view.utc_offset);
        let order = self.order();
        let ctx = Context {
            model: &self.model,
            view: &self.view,
            order: &order,
            selected: self.view.selected,
            theme: self.view.theme,
            now: self.view.now,
            utc_offset: self.view.utc_offset,
        };
        let panels = layout(area, &ctx, &self.log);
        self.accounts.draw(frame, panels.accounts, &ctx);
        self.transfer.draw(frame, panels.transfer, &ctx);
        if panels.forward.area() > 0 {
            self.forward.draw(frame, panels.forward, &ctx);
        }
        self.history.draw(frame, panels.history, &ctx);
        if panels.outbox.area() > 0 {
            self.outbox.draw(frame, panels.outbox, &ctx);
        }
        self.log.draw(frame, panels.log, &ctx);
        frame.render_widget(footer(&ctx, panels.footer.width), panels.footer);
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

/// The accounts the table lists, in its order: those whose name contains
/// the filter (ignoring case), sorted as the view says.
fn account_order(model: &Model, view: &View) -> Vec<usize> {
    let needle = view.filter.to_lowercase();
    let mut order: Vec<usize> = (0..model.accounts.len())
        .filter(|&i| needle.is_empty() || model.accounts[i].name.to_lowercase().contains(&needle))
        .collect();
    let accounts = &model.accounts;
    match view.sort {
        SortOrder::Config => {}
        SortOrder::Name => order.sort_by(|&a, &b| accounts[a].name.cmp(&accounts[b].name)),
        SortOrder::Activity => order.sort_by_key(|&i| activity_rank(&accounts[i], view.now)),
        SortOrder::Ratio => {
            let last_ratio = |i: usize| accounts[i].digest.last_ratio().unwrap_or(0.0);
            order.sort_by(|&a, &b| last_ratio(b).total_cmp(&last_ratio(a)));
        }
    }
    order
}

/// Fetching first, then failed, then mail waiting (each in config order),
/// then by how recently the last fetch ended.
fn activity_rank(account: &AccountView, now: Instant) -> (u8, Duration) {
    let class = if account.fetch.is_active() {
        0
    } else if account.fetch.error.is_some() {
        1
    } else if account.spool.is_some_and(|s| s.bytes > 0) {
        2
    } else if account.last.is_some() {
        3
    } else {
        4
    };
    let age = match class {
        3 => account.last.as_ref().map_or(Duration::MAX, |l| l.age(now)),
        _ => Duration::ZERO,
    };
    (class, age)
}

/// Where each panel goes.
struct Panels {
    accounts: Rect,
    transfer: Rect,
    forward: Rect,
    history: Rect,
    outbox: Rect,
    log: Rect,
    footer: Rect,
}

/// Lays the panels out so that space follows the data: the accounts table
/// and the log take the rows they have (each bounded), the transfer,
/// history and forward panels share the rest. Wide screens put transfer
/// beside forward-over-history; narrow ones put transfer above
/// history-beside-forward; before the first fetch of this session the
/// history takes the width under a strip of transfer and forward. An idle
/// forward takes three rows. The outbox, while it has something to show,
/// takes three rows across the width above the log (one on a short screen).
fn layout(area: Rect, ctx: &Context, log: &LogPanel) -> Panels {
    let [body, footer] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    let listed = ctx.order.len().max(1) as u16;
    let accounts_height = (listed + 3).min((body.height * 2 / 5).max(4));
    // The log: the rows its lines need, at most a fifth of the screen, but
    // always room for the newest line whole (up to a third).
    let log_width = body.width.saturating_sub(2);
    let log_cap = (body.height / 5)
        .max(log.newest_rows(ctx, log_width) + 2)
        .min(body.height / 3)
        .max(3);
    let log_height = (log.rows_wanted(ctx, log_width) + 2).clamp(3, log_cap);
    // The outbox: a panel, or one row where the screen is short.
    let outbox_height = match (OutboxPanel::wanted(ctx), body.height >= OUTBOX_PANEL_HEIGHT) {
        (false, _) => 0,
        (true, true) => 3,
        (true, false) => 1,
    };
    let [accounts, middle, outbox, log] = Layout::vertical([
        Constraint::Length(accounts_height),
        Constraint::Min(0),
        Constraint::Length(outbox_height),
        Constraint::Length(log_height),
    ])
    .areas(body);
    let forward_busy = ctx.selected_account().is_some_and(|a| {
        !matches!(a.forward.state, TunnelState::Off)
            || a.forward.last_error.is_some()
            || a.forward.stats.total > 0
    });
    let no_fetch_yet = ctx
        .selected_account()
        .is_none_or(|a| a.fetch.stage.is_none());
    if area.width >= WIDE_WIDTH && no_fetch_yet {
        // Nothing fetched in this session: the transfer is one line, beside
        // the forward, and the history takes the width.
        let strip = if forward_busy { 7 } else { 3 }.min(middle.height / 2);
        let [top, history] =
            Layout::vertical([Constraint::Length(strip), Constraint::Min(0)]).areas(middle);
        let [transfer, forward] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);
        Panels {
            accounts,
            transfer,
            forward,
            history,
            outbox,
            log,
            footer,
        }
    } else if area.width >= WIDE_WIDTH {
        // The transfer's chart wants width while a fetch runs; otherwise
        // the history has more to show.
        let charting = ctx
            .selected_account()
            .is_some_and(|a| a.fetch.rate.per_second.len() > 1);
        let share = match (charting, area.width >= 160) {
            (true, false) => 50,
            (true, true) | (false, false) => 40,
            (false, true) => 34,
        };
        // At least the width of the transfer's byte counts line.
        let transfer_width = (middle.width * share / 100).max(46);
        let [transfer, right] =
            Layout::horizontal([Constraint::Length(transfer_width), Constraint::Min(0)])
                .areas(middle);
        let forward_height = if forward_busy {
            7.min(right.height / 2)
        } else {
            3
        };
        let [forward, history] =
            Layout::vertical([Constraint::Length(forward_height), Constraint::Min(0)]).areas(right);
        Panels {
            accounts,
            transfer,
            forward,
            history,
            outbox,
            log,
            footer,
        }
    } else {
        // The panel that changes takes the room: the transfer while the
        // selected account fetches or after it failed, else the history (its chart wants ten
        // rows, two thirds of a short middle), the transfer keeping at least
        // its first line.
        let wanted = TransferPanel::rows_wanted(ctx, middle.width.saturating_sub(2)) + 2;
        // A failed fetch's error counts as news, like a running fetch.
        let news = ctx
            .selected_account()
            .is_some_and(|a| a.fetch.is_active() || a.fetch.error.is_some());
        let transfer_height = if news {
            wanted.min(middle.height.saturating_sub(4))
        } else {
            let history = middle
                .height
                .saturating_sub(wanted)
                .max(10.min(middle.height * 2 / 3));
            middle.height.saturating_sub(history)
        }
        .max(3.min(middle.height));
        let [transfer, lower] =
            Layout::vertical([Constraint::Length(transfer_height), Constraint::Min(0)])
                .areas(middle);
        // An idle forward is a word in the accounts table; the history
        // takes the width.
        let forward_share = if forward_busy { 40 } else { 0 };
        let [history, forward] = Layout::horizontal([
            Constraint::Percentage(100 - forward_share),
            Constraint::Percentage(forward_share),
        ])
        .areas(lower);
        Panels {
            accounts,
            transfer,
            forward,
            history,
            outbox,
            log,
            footer,
        }
    }
}

/// The bottom line: the new-mail notice first, then key hints as far as
/// they fit.
fn footer(ctx: &Context, width: u16) -> Line<'static> {
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
    if ctx.view.filter_editing {
        spans.push(Span::styled("filter: ", theme.label()));
        spans.push(Span::raw(format!("{}▏", ctx.view.filter)));
        spans.push(Span::styled("  ⏎ keep  Esc clear", theme.dim()));
        return Line::from(spans);
    }
    // Help first; the rest only as far as it fits whole.
    let width = usize::from(width);
    let mut used = Line::from(spans.clone()).width();
    for (key, what) in [
        ("?", "help"),
        ("f", "fetch"),
        ("F", "all"),
        ("t", "forward"),
        ("⏎", "details"),
        ("/", "filter"),
        ("s", "sort"),
        ("r", "range"),
        ("q", "quit"),
    ] {
        let wide = key.chars().count() + what.len() + 2;
        if used + wide > width {
            break;
        }
        used += wide;
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Line::from(spans)
}
