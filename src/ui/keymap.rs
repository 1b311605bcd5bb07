//! The key bindings: one table that both the key handler and the help
//! overlay read, so that help lists every key there is.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Something the user can ask for from the main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fetch the selected account.
    FetchSelected,
    /// Fetch every account.
    FetchAll,
    /// Start or stop the selected account's SMTP forward.
    ToggleForward,
    /// Send the selected account's outbox now, its messages' backoff
    /// ignored.
    FlushOutbox,
    /// Select the account above.
    SelectPrevious,
    /// Select the account below.
    SelectNext,
    /// Select the first account.
    SelectFirst,
    /// Select the last account.
    SelectLast,
    /// Show or hide the selected account's details.
    Details,
    /// Sort the accounts by the next key (config order, name, activity,
    /// ratio).
    CycleSort,
    /// Type a filter on account names.
    Filter,
    /// Show the history of the last day, the last week or all of it.
    CycleHistoryRange,
    /// Scroll the log back.
    LogOlder,
    /// Scroll the log forward.
    LogNewer,
    /// Show or hide the help overlay.
    Help,
    /// Leave the dashboard (asks first while a fetch runs).
    Quit,
}

/// One line of the help overlay: the keys for an action and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// Key codes and the modifiers they need (Shift is implied by the
    /// character for letters and ignored).
    pub keys: &'static [(KeyCode, KeyModifiers)],
    /// The action.
    pub action: Action,
    /// What it does, for the help overlay.
    pub description: &'static str,
}

const NONE: KeyModifiers = KeyModifiers::NONE;

/// Every binding of the main screen, in the order help shows them.
pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: &[(KeyCode::Char('f'), NONE)],
        action: Action::FetchSelected,
        description: "fetch the selected account",
    },
    Binding {
        keys: &[(KeyCode::Char('F'), NONE)],
        action: Action::FetchAll,
        description: "fetch all accounts",
    },
    Binding {
        keys: &[(KeyCode::Char('t'), NONE)],
        action: Action::ToggleForward,
        description: "start/stop the SMTP forward",
    },
    Binding {
        keys: &[(KeyCode::Char('o'), NONE)],
        action: Action::FlushOutbox,
        description: "send the outbox now",
    },
    Binding {
        keys: &[(KeyCode::Up, NONE), (KeyCode::Char('k'), NONE)],
        action: Action::SelectPrevious,
        description: "select the account above",
    },
    Binding {
        keys: &[(KeyCode::Down, NONE), (KeyCode::Char('j'), NONE)],
        action: Action::SelectNext,
        description: "select the account below",
    },
    Binding {
        keys: &[(KeyCode::Home, NONE), (KeyCode::Char('g'), NONE)],
        action: Action::SelectFirst,
        description: "select the first account",
    },
    Binding {
        keys: &[(KeyCode::End, NONE), (KeyCode::Char('G'), NONE)],
        action: Action::SelectLast,
        description: "select the last account",
    },
    Binding {
        keys: &[(KeyCode::Enter, NONE)],
        action: Action::Details,
        description: "details of the selected account",
    },
    Binding {
        keys: &[(KeyCode::Char('s'), NONE)],
        action: Action::CycleSort,
        description: "sort accounts: config, name, activity, ratio",
    },
    Binding {
        keys: &[(KeyCode::Char('/'), NONE)],
        action: Action::Filter,
        description: "filter by name (Enter keeps, Esc clears)",
    },
    Binding {
        keys: &[(KeyCode::Char('r'), NONE)],
        action: Action::CycleHistoryRange,
        description: "history range: last day, week, all",
    },
    Binding {
        keys: &[(KeyCode::PageUp, NONE)],
        action: Action::LogOlder,
        description: "scroll the log back",
    },
    Binding {
        keys: &[(KeyCode::PageDown, NONE)],
        action: Action::LogNewer,
        description: "scroll the log forward",
    },
    Binding {
        keys: &[(KeyCode::Char('?'), NONE)],
        action: Action::Help,
        description: "this help",
    },
    Binding {
        keys: &[
            (KeyCode::Char('q'), NONE),
            (KeyCode::Char('c'), KeyModifiers::CONTROL),
        ],
        action: Action::Quit,
        description: "quit (asks while a fetch runs)",
    },
];

/// Keys that work inside prompts and overlays, for the help overlay.
pub const PROMPT_KEYS: &[(&str, &str)] = &[
    ("y", "accept an unknown host key / confirm quit"),
    ("n Esc", "refuse / cancel"),
    ("Esc Enter", "close an overlay or a refusal"),
    ("click", "select an account; wheel scrolls"),
];

/// The action a key asks for on the main screen, if any.
pub fn action_for(key: &KeyEvent) -> Option<Action> {
    let mods = key.modifiers - KeyModifiers::SHIFT;
    BINDINGS
        .iter()
        .find(|b| {
            b.keys
                .iter()
                .any(|&(code, need)| code == key.code && need == mods)
        })
        .map(|b| b.action)
}

/// A key's name as the help overlay shows it.
pub fn key_name(code: KeyCode, mods: KeyModifiers) -> String {
    let name = match code {
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Up => "↑".to_string(),
        KeyCode::Down => "↓".to_string(),
        KeyCode::Enter => "Enter".to_string(),
        KeyCode::Home => "Home".to_string(),
        KeyCode::End => "End".to_string(),
        KeyCode::PageUp => "PgUp".to_string(),
        KeyCode::PageDown => "PgDn".to_string(),
        KeyCode::Esc => "Esc".to_string(),
        other => format!("{other:?}"),
    };
    if mods.contains(KeyModifiers::CONTROL) {
        format!("Ctrl-{name}")
    } else {
        name
    }
}

/// All the keys of a binding, space-separated (`↑ k`).
pub fn keys_label(binding: &Binding) -> String {
    binding
        .keys
        .iter()
        .map(|&(code, mods)| key_name(code, mods))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn every_bound_key_finds_its_own_action() {
        for b in BINDINGS {
            for &(code, mods) in b.keys {
                assert_eq!(action_for(&key(code, mods)), Some(b.action), "{b:?}");
            }
        }
    }

    #[test]
    fn shifted_letters_are_reported_with_or_without_shift() {
        let plain = key(KeyCode::Char('F'), KeyModifiers::NONE);
        let shifted = key(KeyCode::Char('F'), KeyModifiers::SHIFT);
        assert_eq!(action_for(&plain), Some(Action::FetchAll));
        assert_eq!(action_for(&shifted), Some(Action::FetchAll));
        assert_eq!(
            action_for(&key(KeyCode::Char('f'), KeyModifiers::NONE)),
            Some(Action::FetchSelected)
        );
    }

    #[test]
    fn control_c_quits_but_plain_c_does_nothing() {
        assert_eq!(
            action_for(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(&key(KeyCode::Char('c'), KeyModifiers::NONE)),
            None
        );
    }
}
