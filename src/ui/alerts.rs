//! New-mail alerts (`[ui] bell_on_new_mail`, `[ui] title_on_new_mail`):
//! when a fetch files mail, the terminal bell and the window title
//! (`mailhaul: N new`, N counted since the dashboard started). Written by
//! the event loop's thread between frames, so never inside a frame's
//! escape sequences.

use std::io::Write;

use crate::config::UiSettings;
use crate::engine::event::{Event, FetchEvent};

/// The alerts a dashboard gives, and where it writes them.
pub struct Alerts {
    bell: bool,
    title: bool,
    /// Messages filed since the dashboard started.
    new_mail: u64,
    /// The title was set (and the terminal's own saved first).
    titled: bool,
    out: Box<dyn Write + Send>,
}

impl Alerts {
    /// The alerts `settings` ask for, written to `out`; `None` when none.
    pub fn new(settings: &UiSettings, out: Box<dyn Write + Send>) -> Option<Alerts> {
        (settings.bell_on_new_mail || settings.title_on_new_mail).then(|| Alerts {
            bell: settings.bell_on_new_mail,
            title: settings.title_on_new_mail,
            new_mail: 0,
            titled: false,
            out,
        })
    }

    /// Gives the alerts an event calls for (a fetch's end that filed mail).
    pub fn on_event(&mut self, event: &Event) {
        if let Event::Fetch {
            event:
                FetchEvent::Ended {
                    summary: Some(summary),
                    ..
                },
            ..
        } = event
        {
            let bytes = self.filed(summary.messages);
            if !bytes.is_empty() {
                let _ = self.out.write_all(&bytes);
                let _ = self.out.flush();
            }
        }
    }

    /// The bytes for `count` newly filed messages: BEL, and the title as
    /// OSC 2 ended by ST (not by BEL, which would ring), after saving the
    /// terminal's own title (XTWINOPS 22) the first time.
    fn filed(&mut self, count: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        if count == 0 {
            return bytes;
        }
        self.new_mail += count;
        if self.bell {
            bytes.push(0x07);
        }
        if self.title {
            if !self.titled {
                bytes.extend_from_slice(b"\x1b[22;2t");
                self.titled = true;
            }
            bytes.extend_from_slice(
                format!("\x1b]2;mailhaul: {} new\x1b\\", self.new_mail).as_bytes(),
            );
        }
        bytes
    }

    /// The dashboard is closing: gives the terminal its own title back
    /// (XTWINOPS 23) if it was changed.
    pub fn finish(&mut self) {
        if self.titled {
            let _ = self.out.write_all(b"\x1b[23;2t");
            let _ = self.out.flush();
            self.titled = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(bell: bool, title: bool) -> Option<Alerts> {
        Alerts::new(
            &UiSettings {
                bell_on_new_mail: bell,
                title_on_new_mail: title,
            },
            Box::new(std::io::sink()),
        )
    }

    #[test]
    fn no_setting_no_alerts() {
        assert!(alerts(false, false).is_none());
    }

    #[test]
    fn the_bell_rings_only_when_mail_was_filed() {
        let mut a = alerts(true, false).unwrap();
        assert_eq!(a.filed(0), b"");
        assert_eq!(a.filed(3), b"\x07");
    }

    #[test]
    fn the_title_counts_new_mail_and_saves_the_old_title_once() {
        let mut a = alerts(false, true).unwrap();
        assert_eq!(a.filed(2), b"\x1b[22;2t\x1b]2;mailhaul: 2 new\x1b\\");
        assert_eq!(a.filed(0), b"");
        assert_eq!(a.filed(1), b"\x1b]2;mailhaul: 3 new\x1b\\");
        let mut both = alerts(true, true).unwrap();
        assert!(both.filed(1).starts_with(b"\x07\x1b[22;2t"));
    }
}
