//! What each panel shows, at every size from 60x20 to 250x70: the
//! transfer gauge and stage track, the forward, new mail, colourless themes,
//! long log lines, details, tiny sizes and configs without accounts.

use super::*;
use crate::engine::event::OutboxCounts;
use ratatui::style::Modifier;

#[test]
fn every_panel_stays_legible_from_60x20_to_250x70() {
    for (w, h) in [(60, 20), (80, 24), (100, 30), (160, 45), (250, 70)] {
        let mut harness = transferring();
        let screen = text(harness.render(w, h).backend().buffer());
        for needle in [
            "Accounts",
            "Transfer",
            "History",
            "Log",
            "home",
            if w >= 80 { "mail.example" } else { "…" },
            "transferring",
            "ratio 4.",
            "ETA",
            "raw 2.28 MB",
            "? help",
        ] {
            assert!(
                screen.contains(needle),
                "{w}x{h}: {needle:?} missing:\n{screen}"
            );
        }
        // Mail in the outbox and watched accounts, at every size.
        let screen = text(outbox_mail().render(w, h).backend().buffer());
        for needle in [
            "Outbox",
            if w >= 80 { "queued 2" } else { "2 queued" },
            if w >= 80 { "failed 1" } else { "1 failed" },
            "History",
            "Log",
            if w >= 80 { "watching 4" } else { "watch" },
            "retry 09:06",
        ] {
            assert!(
                screen.contains(needle),
                "{w}x{h}: {needle:?} missing:\n{screen}"
            );
        }
        // A forward that is on gets its panel at every size.
        let screen = text(forward_on().render(w, h).backend().buffer());
        for needle in ["SMTP forward", "on 127.0.0.1:2525", "History"] {
            assert!(
                screen.contains(needle),
                "{w}x{h}: {needle:?} missing:\n{screen}"
            );
        }
    }
}

#[test]
fn transfer_panel_shows_gauge_bytes_ratio_rate_and_eta() {
    let mut h = transferring();
    let screen = text(h.render(100, 30).backend().buffer());
    // 24 steps of 95 kB in 6 s: 2.28 MB of 4.97 MB, 45 %, about 380 kB/s.
    assert!(screen.contains(" 45% 2.28 MB of 4.97 MB"), "{screen}");
    assert!(screen.contains("█"), "gauge fill missing:\n{screen}");
    assert!(
        screen.contains("raw 2.28 MB  payload 485 kB  socket 491 kB"),
        "{screen}"
    );
    assert!(screen.contains("ratio 4.70x"), "{screen}");
    assert!(screen.contains("380 kB/s"), "{screen}");
    assert!(screen.contains("ETA 7.1s"), "{screen}");
}

#[test]
fn no_color_theme_draws_without_any_colour() {
    for make in [transferring as fn() -> Harness, failed, forward_on] {
        let mut h = make();
        h.app = {
            let config = Config::parse(CONFIG, Path::new("t.toml")).expect("parses");
            let mut app = App::new(&config, history(), Theme::new(false), 0, start(h.t0));
            // Replay the same model into a colourless app.
            std::mem::swap(&mut app.model, &mut h.app.model);
            app.set_now(h.t0 + Duration::from_secs_f64(h.secs));
            app
        };
        let terminal = h.render(100, 30);
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.fg, Color::Reset, "{cell:?}");
            assert_eq!(cell.bg, Color::Reset, "{cell:?}");
        }
    }
    let mut coloured = failed();
    let terminal = coloured.render(100, 30);
    assert!(
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg == Color::Red),
        "the colour theme shows errors in red"
    );
}

#[test]
fn the_stage_track_marks_done_current_and_failed_stages() {
    let mut h = transferring();
    let screen = text(h.render(200, 60).backend().buffer());
    assert!(
        screen.contains("✓connect 800ms ✓claim 200ms ▶transfer 6.0s ·verify ·deliver"),
        "{screen}"
    );
    let mut h = failed();
    let screen = text(h.render(200, 60).backend().buffer());
    assert!(
        screen.contains("✓connect 800ms ✓claim 200ms ✗transfer 6.5s ·verify ·deliver"),
        "{screen}"
    );
    let mut h = asking_host_key();
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("▶connect 300ms ·claim"), "{screen}");
    assert!(
        !screen.contains("0 B of 0 B"),
        "no zeros before the transfer:
{screen}"
    );
}

#[test]
fn a_transfer_without_counters_for_five_seconds_shows_as_stalled() {
    let mut h = transferring();
    h.at(409.0);
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("ETA") && !screen.contains("stalled"),
        "{screen}"
    );
    h.at(412.5);
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("stalled 5s") && !screen.contains("ETA"),
        "{screen}"
    );
}

#[test]
fn new_mail_waiting_shows_on_the_account_and_the_footer() {
    let mut h = idle();
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("new: 3 msgs 12.4 kB"), "{screen}");
    assert!(screen.contains("new mail waiting: work"), "{screen}");
}

#[test]
fn forward_panel_shows_state_connections_bytes_and_errors() {
    let mut h = forward_on();
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(screen.contains("on 127.0.0.1:2525"), "{screen}");
    assert!(screen.contains("→ mail.example.org:25"), "{screen}");
    assert!(screen.contains("conn 1 live/12 total"), "{screen}");
    assert!(screen.contains("up 48.2 kB  down 3.10 kB"), "{screen}");
    h.tunnel(
        340.0,
        "home",
        TunnelEvent::Error("channel open refused by server".into()),
    );
    let screen = text(h.render(100, 30).backend().buffer());
    assert!(
        screen.contains("error: channel open refused by server"),
        "{screen}"
    );
    assert!(!h.tunnel(
        341.0,
        "home",
        TunnelEvent::State(TunnelState::Listening("127.0.0.1:2525".parse().unwrap()))
    ));
}

#[test]
fn tiny_and_odd_sizes_draw_without_panicking() {
    type Make = fn() -> Harness;
    let states: [Make; 5] = [idle, transferring, failed, forward_on, asking_host_key];
    for make in states {
        for (w, h) in [
            (1, 1),
            (10, 3),
            (20, 5),
            (40, 10),
            (59, 19),
            (99, 23),
            (300, 90),
        ] {
            let mut harness = make();
            harness.key(KeyCode::Char('?'));
            harness.render(w, h);
            harness.key(KeyCode::Esc);
            harness.key(KeyCode::Enter);
            harness.render(w, h);
        }
    }
}

#[test]
fn a_config_without_accounts_still_draws_and_ignores_account_keys() {
    let config = Config::parse("", Path::new("empty.toml")).expect("an empty config parses");
    let mut h = Harness::new(true);
    h.app = App::new(&config, Vec::new(), Theme::new(true), 0, start(h.t0));
    for key in ['f', 't', 'j', 'k', 'G'] {
        h.key(KeyCode::Char(key));
    }
    h.key(KeyCode::Enter);
    assert_eq!(h.app.overlay(), None, "no details without an account");
    let screen = text(h.render(60, 20).backend().buffer());
    assert!(screen.contains("no accounts: add [[account]]"), "{screen}");
    h.key(KeyCode::Char('F'));
    assert_eq!(h.engine.calls, ["fetch_all"]);
}

#[test]
fn long_log_lines_wrap_at_spaces_with_home_as_tilde_and_short_paths() {
    let mut h = done();
    for (w, height) in [(80, 24), (120, 40), (200, 60)] {
        let screen = text(h.render(w, height).backend().buffer());
        let log = panel_rows(&screen, "Log");
        let first = log
            .iter()
            .position(|r| r.starts_with("09:06:48"))
            .unwrap_or_else(|| panic!("{w}x{height}: the newest line is missing:\n{screen}"));
        // Rows joined again at single spaces give the line back exactly:
        // it was broken only at spaces, and nothing was cut.
        let rejoined: Vec<&str> = log[first..].iter().map(|r| r.trim()).collect();
        let max_path = (usize::from(w - 2) * 2 / 3).max(24);
        let expected = format!(
            "09:06:48 info  home: {}",
            crate::ui::format::tidy_paths(FILED_LINE, Some("/home/ann"), max_path)
        );
        assert_eq!(
            rejoined.join(" "),
            expected,
            "{w}x{height}:\n{}",
            log.join("\n")
        );
        assert!(expected.contains("~/Mail;") && !expected.contains("/home/ann"));
        let rows = log.len() - first;
        match w {
            80 => {
                assert_eq!(rows, 3, "{}", log.join("\n"));
                assert!(
                    expected.contains("…"),
                    "the long path is elided: {expected}"
                );
            }
            120 => assert_eq!(rows, 2, "{}", log.join("\n")),
            _ => assert_eq!(rows, 1, "{}", log.join("\n")),
        }
    }
}

#[test]
fn details_list_the_accounts_recent_errors_newest_first() {
    let mut h = many();
    h.key(KeyCode::Char('g'));
    for _ in 0..4 {
        h.key(KeyCode::Down);
    }
    assert_eq!(h.app.model.accounts[h.app.selected()].name, "acct05");
    h.tunnel(
        36.0,
        "acct05",
        TunnelEvent::Error("listen address 127.0.0.1:2525 is in use".into()),
    );
    h.key(KeyCode::Enter);
    let screen = text(h.render(120, 40).backend().buffer());
    let details = panel_rows(&screen, "acct05 (Esc closes)").join("\n");
    assert!(details.contains("recent errors"), "{details}");
    let forward = details
        .find("09:00:36 forward: listen address 127.0.0.1:2525 is in use")
        .unwrap_or_else(|| panic!("{details}"));
    let connect = details
        .find("09:00:21 cannot connect to m5.example port 22")
        .unwrap_or_else(|| panic!("{details}"));
    assert!(forward < connect, "newest first:\n{details}");
    assert_eq!(
        details.matches("cannot connect").count(),
        2,
        "the last outcome and one recent error (the log line repeats it):\n{details}"
    );
}

/// On the selected row the trend's bars keep the look they have on other
/// rows (green on the terminal's background; without colour, not reversed)
/// instead of merging into one block, while the rest of the row shows the
/// selection.
#[test]
fn the_selected_rows_trend_stays_readable() {
    for color in [true, false] {
        let mut h = idle();
        let mut app = {
            let config = Config::parse(CONFIG, Path::new("t.toml")).expect("parses");
            App::new(&config, history(), Theme::new(color), 0, start(h.t0))
        };
        std::mem::swap(&mut app.model, &mut h.app.model);
        app.set_now(h.t0 + Duration::from_secs_f64(h.secs));
        h.app = app;
        for (width, height) in [(80, 24), (120, 40), (200, 60)] {
            let terminal = h.render(width, height);
            let buffer = terminal.backend().buffer();
            let screen = text(buffer);
            let y = screen
                .lines()
                .position(|l| l.contains("▶ home"))
                .expect("home selected") as u16;
            let row: Vec<&ratatui::buffer::Cell> = (0..width).map(|x| &buffer[(x, y)]).collect();
            let bars: Vec<_> = row
                .iter()
                .filter(|c| crate::ui::stats::is_trend_glyph(c.symbol()))
                .collect();
            assert!(bars.len() >= 5, "a trend on the row at {width}x{height}");
            let name = row
                .iter()
                .find(|c| c.symbol() == "h")
                .expect("the name's first letter");
            let reversed = |c: &ratatui::buffer::Cell| c.modifier.contains(Modifier::REVERSED);
            if color {
                assert_eq!(name.bg, Color::Blue, "the row is selected");
                for bar in bars {
                    assert_eq!((bar.fg, bar.bg), (Color::Green, Color::Reset), "{bar:?}");
                }
            } else {
                assert!(reversed(name), "the row is selected");
                for bar in bars {
                    assert!(!reversed(bar), "{bar:?} at {width}x{height}");
                }
            }
        }
    }
}

/// Every link state in the accounts table, in full where the forward has
/// its column and short where a `⇄` follows; the table's outbox column
/// where the width allows, and the details' link and outbox lines.
#[test]
fn link_states_and_outbox_queues_show_per_account() {
    let mut h = many_watching();
    let screen = text(h.render(120, 40).backend().buffer());
    let accounts = panel_rows(&screen, "Accounts (20)").join("\n");
    for state in [
        "acct03   mail.host3.example.net   watching 14m",
        "acct04   mx4.example.org          connecting",
        "acct06   m6.example               polling 58m",
        "acct09   shell.de…ty.example.edu  retry 09:05",
        "acct07   mail.host7.example.net   transfer 48%",
    ] {
        assert!(accounts.contains(state), "{state:?} in\n{accounts}");
    }
    let screen = text(h.render(80, 24).backend().buffer());
    assert!(
        screen.contains("acct02  m2.example          watch 6m ⇄"),
        "{screen}"
    );
    // The stopped account (scrolled out above) once selected.
    h.key(KeyCode::Home);
    for _ in 0..12 {
        h.key(KeyCode::Down);
    }
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("▶ acct13"), "{screen}");
    assert!(screen.contains("stopped"), "{screen}");
    h.key(KeyCode::Enter);
    let details = text(h.render(120, 40).backend().buffer());
    assert!(
        details.contains("link     stopped: authentication failed"),
        "{details}"
    );
    // The outbox column from 140 columns on, and only then.
    let wide = text(h.render(200, 60).backend().buffer());
    let accounts = panel_rows(&wide, "Accounts (20)").join("\n");
    assert!(accounts.contains("outbox"), "{accounts}");
    assert!(accounts.contains("4 queued"), "{accounts}");
    assert!(accounts.contains("2 failed"), "{accounts}");
    let narrow = text(h.render(120, 40).backend().buffer());
    assert!(!panel_rows(&narrow, "Accounts (20)")
        .join("\n")
        .contains("outbox"));
}

/// The outbox: no panel while no outbox has anything; a panel of three rows
/// on a tall screen and one row on a short one, with the selected
/// account's counts (bytes, wire bytes and ratio when there is room) and
/// what waits or failed elsewhere; the details' outbox line.
#[test]
fn the_outbox_shows_while_it_holds_something() {
    let mut h = idle();
    for (w, ht) in [(80, 24), (120, 40), (200, 60)] {
        let screen = text(h.render(w, ht).backend().buffer());
        assert!(!screen.contains("Outbox"), "{screen}");
    }
    h.outbox(300.0, "home", OutboxCounts::default());
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(!screen.contains("Outbox"), "an empty outbox takes no room");
    h.outbox(
        300.0,
        "work",
        OutboxCounts {
            queued: 1,
            ..OutboxCounts::default()
        },
    );
    let screen = text(h.render(120, 40).backend().buffer());
    let rows = panel_rows(&screen, "Outbox · other accounts: 1 queued");
    assert_eq!(
        rows[0].trim_end(),
        "queued 0 · sending 0 · sent today 0 · failed 0",
        "another account's queue shows"
    );
    let mut h = outbox_mail();
    let screen = text(h.render(120, 40).backend().buffer());
    let rows = panel_rows(&screen, "Outbox · other accounts: 1 queued");
    assert_eq!(
        rows[0].trim_end(),
        "queued 2 · sending 1 · sent today 5: 183 kB → 41.5 kB on the wire, 4.41x · failed 1"
    );
    let screen = text(h.render(80, 24).backend().buffer());
    assert!(
        screen.contains(
            "\nOutbox queued 2 · sending 1 · sent today 5 (4.41x) · failed 1 · others: 1 queued"
        ),
        "{screen}"
    );
    h.key(KeyCode::Enter);
    let details = text(h.render(120, 40).backend().buffer());
    assert!(
        details
            .contains("outbox   2 queued, 1 sending, 5 sent today (183 kB, 41.5 kB on the wire,"),
        "{details}"
    );
    assert!(
        details.contains("link     the server's watcher reports each change (inotify) since 08:21"),
        "{details}"
    );
}
