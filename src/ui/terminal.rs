//! Terminal setup and teardown for the dashboard: raw mode, the alternate
//! screen, mouse capture and a hidden cursor, undone on drop and by a panic
//! hook, so that a crash never leaves the user's shell unusable.

use std::io::{stdout, Stdout};
use std::sync::Once;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;

/// The terminal while the dashboard owns it.
pub struct Session {
    /// The ratatui terminal drawing to stdout.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

static PANIC_HOOK: Once = Once::new();

impl Session {
    /// Takes over the terminal.
    pub fn enter() -> std::io::Result<Session> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        enable_raw_mode()?;
        if let Err(e) = execute!(stdout(), EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(e);
        }
        let mut terminal = match Terminal::new(CrosstermBackend::new(stdout())) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
        terminal.hide_cursor()?;
        terminal.clear()?;
        Ok(Session { terminal })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Gives the terminal back: cooked mode, main screen, no mouse capture.
/// Safe to call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), DisableMouseCapture, LeaveAlternateScreen);
}

/// The local time zone's offset from UTC now, in seconds (0 if unknown),
/// for showing log times in local time.
pub fn local_utc_offset() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r writes only into the tm we pass and reads `now`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}
