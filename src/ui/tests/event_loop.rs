//! The event loop: frames capped under a flood of events, nothing drawn
//! while nothing happens, and the engine told when the user quits.

use super::*;

fn loop_app() -> App {
    let config = Config::parse(CONFIG, Path::new("test.toml")).expect("test config parses");
    App::new(
        &config,
        history(),
        Theme::new(true),
        0,
        start(Instant::now()),
    )
}

#[test]
fn the_loop_caps_frames_at_30_a_second_under_a_flood_of_events() {
    let mut app = loop_app();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("test backend");
    let (_input_tx, input_rx) = crossbeam_channel::unbounded();
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let feeder = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(1);
        let mut sent = 0u64;
        let mut raw = 0;
        while Instant::now() < end {
            raw += 1_000;
            let event = Event::Fetch {
                account: "home".into(),
                event: FetchEvent::Progress(TransferProgress {
                    raw_done: raw,
                    raw_total: u64::MAX,
                    payload_bytes: raw / 4,
                    socket_bytes: raw / 4,
                }),
            };
            tx.send(event)
                .expect("the loop runs until the sender is dropped");
            sent += 1;
        }
        sent
    });
    let mut engine = Recorder::default();
    let start = Instant::now();
    let stats = crate::ui::event_loop(&mut terminal, &mut app, &mut engine, &input_rx, &rx)
        .expect("the loop ends cleanly");
    let secs = start.elapsed().as_secs_f64();
    let sent = feeder.join().expect("feeder");
    assert_eq!(stats.events, sent, "every event is applied");
    assert!(sent > 1_000, "a flood: {sent} events");
    assert!(
        (stats.frames as f64) <= secs * f64::from(crate::ui::FRAME_RATE) + 2.0,
        "{} frames in {secs:.2}s",
        stats.frames
    );
    assert!(
        stats.frames >= 3,
        "frames keep coming under a flood: {stats:?}"
    );
    assert!(engine.calls.is_empty());
}

#[test]
fn the_loop_draws_nothing_while_no_event_comes() {
    let mut app = loop_app();
    let mut terminal = Terminal::new(TestBackend::new(60, 20)).expect("test backend");
    let (_input_tx, input_rx) = crossbeam_channel::unbounded();
    let (tx, rx) = crossbeam_channel::bounded::<Event>(1);
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1_500));
        drop(tx);
    });
    let stats = crate::ui::event_loop(
        &mut terminal,
        &mut app,
        &mut Recorder::default(),
        &input_rx,
        &rx,
    )
    .expect("the loop ends cleanly");
    holder.join().expect("holder");
    assert_eq!(stats.frames, 1, "only the first frame: {stats:?}");
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("Accounts (2)"), "{screen}");
}

#[test]
fn the_loop_ends_when_the_user_quits_and_tells_the_engine() {
    let mut app = loop_app();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("test backend");
    let (input_tx, input_rx) = crossbeam_channel::unbounded();
    let (_tx, rx) = crossbeam_channel::bounded::<Event>(1);
    input_tx
        .send(Input::Key(KeyEvent::new(
            KeyCode::Char('q'),
            KeyModifiers::NONE,
        )))
        .expect("queue a key");
    let mut engine = Recorder::default();
    let stats = crate::ui::event_loop(&mut terminal, &mut app, &mut engine, &input_rx, &rx)
        .expect("the loop ends cleanly");
    assert_eq!(stats.inputs, 1);
    assert_eq!(engine.calls, ["shutdown"]);
}
