//! Whole frames of the main states, snapshotted with insta (idle,
//! transferring, done, 20 accounts, help, mail in the outbox, 20 accounts
//! in every link state, error, forward on, host-key prompts; at the sizes
//! the dashboard is made for).

use super::*;

/// Snapshots of the main states at the three sizes the dashboard is made
/// for, and of prompts and errors at the smallest supported size and one
/// in between.
#[test]
fn whole_frames_match_their_snapshots() {
    type Make = fn() -> Harness;
    let help: Make = || {
        let mut h = idle();
        h.key(KeyCode::Char('?'));
        h
    };
    let changed: Make = || {
        let mut h = idle();
        h.fetch(400.0, "home", FetchEvent::Stage(Stage::Connecting));
        h.fetch(
            400.3,
            "home",
            FetchEvent::HostKeyChanged {
                key: host_key_unknown(),
                detail: CHANGED_DETAIL.into(),
            },
        );
        h
    };
    let main: [(&str, Make); 7] = [
        ("idle", idle),
        ("transferring", transferring),
        ("done", done),
        ("many", many),
        ("help", help),
        ("outbox", outbox_mail),
        ("watching", many_watching),
    ];
    for (name, make) in main {
        for (w, h) in [(80, 24), (120, 40), (200, 60)] {
            let terminal = make().render(w, h);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
        }
    }
    let others: [(&str, Make); 4] = [
        ("error", failed),
        ("forward_on", forward_on),
        ("host_key_prompt", asking_host_key),
        ("host_key_changed", changed),
    ];
    for (name, make) in others {
        for (w, h) in [(100, 30), (60, 20)] {
            let terminal = make().render(w, h);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
        }
    }
}
