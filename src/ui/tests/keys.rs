//! Keys and clicks into engine calls and overlays: the keymap, fetch and
//! forward keys, details, quitting, host-key prompts, sorting and filtering.

use super::*;

#[test]
fn help_lists_every_key_of_the_keymap() {
    let mut h = idle();
    assert!(h.key(KeyCode::Char('?')));
    assert_eq!(h.app.overlay(), Some(Overlay::Help));
    let screen = text(h.render(100, 30).backend().buffer());
    for binding in BINDINGS {
        assert!(screen.contains(&keys_label(binding)), "{binding:?}");
        assert!(screen.contains(binding.description), "{binding:?}");
    }
    // The overlay swallows main-screen keys, and Esc closes it.
    h.key(KeyCode::Char('f'));
    assert!(h.engine.calls.is_empty());
    assert!(h.key(KeyCode::Esc));
    assert_eq!(h.app.overlay(), None);
}

#[test]
fn keys_become_engine_calls_for_the_selected_account() {
    let mut h = idle();
    h.key(KeyCode::Char('f'));
    h.key(KeyCode::Char('t'));
    h.key(KeyCode::Char('o'));
    assert!(h.key(KeyCode::Char('j')));
    assert_eq!(h.app.selected(), 1);
    assert!(!h.key(KeyCode::Down), "already on the last account");
    h.key(KeyCode::Char('f'));
    h.key(KeyCode::Char('F'));
    h.key(KeyCode::Char('o'));
    assert!(h.key(KeyCode::Up));
    h.key(KeyCode::Char('t'));
    assert_eq!(
        h.engine.calls,
        [
            "fetch home",
            "toggle_forward home",
            "flush_outbox home",
            "fetch work",
            "fetch_all",
            "flush_outbox work",
            "toggle_forward home"
        ]
    );
}

#[test]
fn enter_toggles_the_details_of_the_selected_account() {
    let mut h = failed();
    assert!(h.key(KeyCode::Enter));
    assert_eq!(h.app.overlay(), Some(Overlay::Details));
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("failed at 09:06:47 (just now), exit 7 Transfer"),
        "{screen}"
    );
    assert!(
        screen.contains("fetched first next time"),
        "full error shown:\n{screen}"
    );
    assert!(h.key(KeyCode::Enter));
    assert_eq!(h.app.overlay(), None);
}

#[test]
fn quitting_when_idle_shuts_the_engine_down_at_once() {
    let mut h = idle();
    h.key(KeyCode::Char('q'));
    assert!(h.app.should_quit());
    assert_eq!(h.engine.calls, ["shutdown"]);
}

#[test]
fn quitting_during_a_fetch_asks_first() {
    let mut h = transferring();
    h.key(KeyCode::Char('q'));
    assert!(!h.app.should_quit());
    assert_eq!(h.app.overlay(), Some(Overlay::ConfirmQuit));
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(screen.contains("Fetching now: home."), "{screen}");
    h.key(KeyCode::Char('n'));
    assert_eq!(h.app.overlay(), None);
    assert!(!h.app.should_quit());
    assert!(h.engine.calls.is_empty());

    h.key(KeyCode::Char('q'));
    h.fetch(
        409.0,
        "home",
        FetchEvent::Ended {
            summary: Some(summary(3, 4_970_000, 1_000_000, 8_000)),
            failure: None,
        },
    );
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(screen.contains("No fetch runs any more."), "{screen}");
    h.key(KeyCode::Char('y'));
    assert!(h.app.should_quit());
    assert_eq!(h.engine.calls, ["shutdown"]);
}

#[test]
fn an_unknown_host_key_is_asked_about_and_answered() {
    let mut h = asking_host_key();
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(
        screen.contains("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"),
        "{screen}"
    );
    assert!(
        screen.contains("host key?"),
        "accounts row shows the question:\n{screen}"
    );
    // Main-screen keys wait until it is answered.
    h.key(KeyCode::Char('f'));
    assert!(h.engine.calls.is_empty());
    assert!(h.key(KeyCode::Char('y')));
    assert_eq!(h.engine.calls, ["answer_host_key home true"]);
    assert!(h.app.model.host_keys.is_empty());

    let mut h = asking_host_key();
    h.key(KeyCode::Esc);
    assert_eq!(h.engine.calls, ["answer_host_key home false"]);
}

#[test]
fn a_changed_host_key_cannot_be_accepted_only_dismissed() {
    let mut h = idle();
    h.fetch(
        400.0,
        "home",
        FetchEvent::HostKeyChanged {
            key: host_key_unknown(),
            detail: CHANGED_DETAIL.into(),
        },
    );
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("HOST KEY CHANGED: refused"), "{screen}");
    assert!(!screen.contains("Accept"), "{screen}");
    h.key(KeyCode::Char('y'));
    assert_eq!(h.app.model.host_keys.len(), 1, "y does not accept");
    h.key(KeyCode::Esc);
    assert!(h.app.model.host_keys.is_empty());
    assert!(h.engine.calls.is_empty(), "nothing is sent to the engine");
}

#[test]
fn clicking_an_account_selects_it() {
    let mut h = idle();
    h.render(100, 30);
    // Wide layout: border row 0, header row 1, `home` row 2, `work` row 3.
    let click = |row| {
        Input::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 10,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    assert!(h.app.handle_input(&click(3), &mut h.engine));
    assert_eq!(h.app.selected(), 1);
    assert!(h.app.handle_input(&click(2), &mut h.engine));
    assert_eq!(h.app.selected(), 0);
    assert!(
        !h.app.handle_input(&click(25), &mut h.engine),
        "outside the list"
    );
    assert_eq!(h.app.selected(), 0);
}

#[test]
fn twenty_accounts_sort_filter_and_keep_the_selection() {
    let mut h = many();
    assert_eq!(h.app.model.accounts[h.app.selected()].name, "acct07");
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("Accounts (20)"), "{screen}");
    let table = panel_rows(&screen, "Accounts (20)").join("\n");
    for needle in [
        "▶ acct07",
        "transfer 48%",
        "error just now",
        "new: 3 msgs 40.0 kB",
        " on ",
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }
    // Sort by activity: the two fetching accounts first, then the failed
    // one, then those with mail waiting.
    assert!(h.key(KeyCode::Char('s')));
    assert!(h.key(KeyCode::Char('s')));
    let order: Vec<String> = h
        .app
        .order()
        .iter()
        .map(|&i| h.app.model.accounts[i].name.clone())
        .collect();
    assert_eq!(
        order[..6],
        ["acct07", "acct12", "acct05", "acct03", "acct11", "acct17"]
    );
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("Accounts (20) by activity"), "{screen}");
    assert_eq!(
        h.app.model.accounts[h.app.selected()].name,
        "acct07",
        "sorting keeps the selected account"
    );
    // Down moves in the listed order.
    h.key(KeyCode::Down);
    assert_eq!(h.app.model.accounts[h.app.selected()].name, "acct12");
    // `/` filters by name; typed keys go to the filter, not to actions.
    assert!(h.key(KeyCode::Char('/')));
    for c in "ct1".chars() {
        assert!(h.key(KeyCode::Char(c)));
    }
    assert!(h.engine.calls.is_empty(), "{:?}", h.engine.calls);
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen.contains("Accounts (10 of 20) by activity /ct1"),
        "{screen}"
    );
    assert!(screen.contains("filter: ct1"), "{screen}");
    assert!(h.key(KeyCode::Char('7')));
    assert_eq!(h.app.order().len(), 1);
    assert_eq!(
        h.app.model.accounts[h.app.selected()].name,
        "acct17",
        "the selection moves to what the filter lists"
    );
    h.key(KeyCode::Enter);
    h.key(KeyCode::Char('f'));
    assert_eq!(h.engine.calls, ["fetch acct17"], "Enter ends typing");
    // A filter that matches nothing says so; Esc clears it.
    h.key(KeyCode::Char('/'));
    h.key(KeyCode::Char('x'));
    let screen = text(h.render(80, 24).backend().buffer());
    assert!(
        screen.contains("no account name contains \"ct17x\""),
        "{screen}"
    );
    h.key(KeyCode::Char('f'));
    assert_eq!(h.engine.calls.len(), 1, "typed, not fetched");
    h.key(KeyCode::Esc);
    assert_eq!(h.app.order().len(), 20);
    // By name, by ratio, back to config order.
    h.key(KeyCode::Char('s'));
    let ratios: Vec<f64> = h
        .app
        .order()
        .iter()
        .map(|&i| {
            crate::ui::stats::recent_ratios(&h.app.model.history, &h.app.model.accounts[i].name, 1)
                [0]
        })
        .collect();
    assert!(ratios.windows(2).all(|w| w[0] >= w[1]), "{ratios:?}");
    h.key(KeyCode::Char('s'));
    assert_eq!(h.app.order(), (0..20).collect::<Vec<_>>());
}
