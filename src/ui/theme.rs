//! Styles for every part of the dashboard, with a colourless variant for
//! `NO_COLOR` (<https://no-color.org>) that keeps states distinguishable
//! through bold, underline and reverse video alone.

use ratatui::style::{Color, Modifier, Style};

/// The styles the panels draw with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Whether colours may be used.
    pub color: bool,
}

impl Theme {
    /// The theme the environment asks for: no colours when `NO_COLOR` is set
    /// to a non-empty value.
    pub fn from_env() -> Theme {
        Theme::new(std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
    }

    /// A theme with or without colours.
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// Panel borders and titles.
    pub fn border(self) -> Style {
        self.fg(Color::DarkGray)
    }

    /// Panel titles.
    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The selected row of a list.
    pub fn selected(self) -> Style {
        if self.color {
            Style::new().bg(Color::Blue).fg(Color::White)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// Labels in front of values.
    pub fn label(self) -> Style {
        self.fg(Color::Gray)
    }

    /// Something finished well.
    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }

    /// Work in progress.
    pub fn busy(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// Something a user should look at.
    pub fn warn(self) -> Style {
        if self.color {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::UNDERLINED)
        }
    }

    /// A failure.
    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Unimportant text.
    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    /// Key names in hints and help.
    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The filled part of gauges and sparklines.
    pub fn gauge(self) -> Style {
        self.fg(Color::Green)
    }

    /// Patched over a trend's bars on the selected row: the bars as on any
    /// other row (their colour on the terminal's background; without
    /// colour, not reversed), so that they do not merge into a block.
    pub fn trend_on_selection(self) -> Style {
        if self.color {
            Style::new().fg(Color::Green).bg(Color::Reset)
        } else {
            Style::new().remove_modifier(Modifier::REVERSED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colourless_theme_sets_no_colour_anywhere() {
        let t = Theme::new(false);
        for style in [
            t.border(),
            t.title(),
            t.selected(),
            t.label(),
            t.ok(),
            t.busy(),
            t.warn(),
            t.error(),
            t.dim(),
            t.key(),
            t.gauge(),
            t.trend_on_selection(),
        ] {
            assert_eq!(style.fg, None);
            assert_eq!(style.bg, None);
        }
        assert!(t.selected().add_modifier.contains(Modifier::REVERSED));
    }
}
