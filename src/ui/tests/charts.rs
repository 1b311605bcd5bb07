//! The history and throughput charts: axes, units, labels and totals, and
//! the room they take.

use super::*;

#[test]
fn history_chart_has_axes_with_times_and_units_and_the_totals() {
    let mut h = idle();
    let screen = text(h.render(120, 40).backend().buffer());
    let history = panel_rows(&screen, "History").join("\n");
    // 13 fetches of `home` from the file, every 5 h until 5 h before the
    // start (Tuesday 11:00 UTC on; the axis starts a twentieth earlier), and the one of this session.
    assert!(screen.contains("History · all (13 fetches)"), "{screen}");
    for needle in [
        "saved today 2.12 MB · 7 days 9.79 MB · all 9.79 MB",
        "compression ratio per fetch",
        "6.0x",
        "bytes on the wire per fetch",
        "522 kB",
        "0 B",
        "Tue 07h",
        "Fri 09h",
        "last 4.70x  wire 283 kB  of 1.25 MB  in 2.6s",
    ] {
        assert!(history.contains(needle), "{needle:?} missing:\n{history}");
    }
    let wide = text(h.render(200, 60).backend().buffer());
    assert!(
        wide.contains(
            "saved today 2.12 MB · 7 days 9.79 MB · all 9.79 MB · 836 msgs in 13 fetches"
        ),
        "{wide}"
    );
    // `r` narrows to the last day: times of day on the axis.
    assert!(h.key(KeyCode::Char('r')));
    let screen = text(h.render(120, 40).backend().buffer());
    let history = panel_rows(&screen, "History").join("\n");
    assert!(
        screen.contains("History · last day (5 fetches)"),
        "{screen}"
    );
    assert!(
        history.contains("09:05") && history.contains("21:05") && !history.contains("Tue"),
        "{history}"
    );
    h.key(KeyCode::Char('r'));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen.contains("History · last week (13 fetches)"),
        "{screen}"
    );
    h.key(KeyCode::Char('r'));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(screen.contains("History · all"), "{screen}");
}

#[test]
fn the_history_of_an_account_without_fetches_in_range_says_so() {
    let mut h = idle();
    h.key(KeyCode::Char('j'));
    h.key(KeyCode::Char('r'));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen.contains("no fetches in the last day (r: range)"),
        "work's fetches are older than a day:\n{screen}"
    );
}

#[test]
fn throughput_chart_is_labelled_with_now_peak_average_and_axes() {
    let mut h = transferring();
    let screen = text(h.render(120, 40).backend().buffer());
    let transfer = panel_rows(&screen, "Transfer").join("\n");
    for needle in [
        "throughput  now 380 kB/s  peak 400 kB/s  avg 380 kB/s",
        "400 kB/s│",
        "0 B/s",
        "0s",
        "6s",
    ] {
        assert!(transfer.contains(needle), "{needle:?} missing:\n{transfer}");
    }
    // A narrower panel drops the word, never a figure's end.
    let screen = text(h.render(100, 30).backend().buffer());
    let transfer = panel_rows(&screen, "Transfer").join("\n");
    assert!(
        transfer.contains("now 380 kB/s  peak 400 kB/s  avg 380 kB/s")
            && !transfer.contains("throughput"),
        "{transfer}"
    );
    // Once done, "now" goes; peak and average stay.
    let mut h = done();
    let screen = text(h.render(120, 40).backend().buffer());
    let transfer = panel_rows(&screen, "Transfer").join("\n");
    assert!(
        transfer.contains("throughput  peak 400 kB/s  avg 380 kB/s"),
        "{transfer}"
    );
    let screen = text(h.render(200, 60).backend().buffer());
    assert!(
        screen.contains("✓verify 400ms ✓deliver 800ms"),
        "{transfer}"
    );
}

#[test]
fn before_the_first_fetch_the_history_takes_the_width() {
    let mut h = Harness::new(true);
    let screen = text(h.render(120, 40).backend().buffer());
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("╭Transfer") && l.contains("╭SMTP forward")),
        "transfer and forward share a strip:\n{screen}"
    );
    let history = lines
        .iter()
        .find(|l| l.contains("╭History"))
        .expect("a history panel");
    assert!(
        history.starts_with("╭History") && history.ends_with('╮'),
        "the history spans the width:\n{screen}"
    );
    // Once a fetch starts, the transfer gets its column back.
    h.fetch(1.0, "home", FetchEvent::Stage(Stage::Connecting));
    let screen = text(h.render(120, 40).backend().buffer());
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("╭Transfer") && l.contains("╭SMTP forward")),
        "{screen}"
    );
    assert!(
        !screen.lines().any(|l| l.starts_with("╭History")),
        "{screen}"
    );
}
