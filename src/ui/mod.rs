//! The dashboard (ratatui + crossterm): consumes engine events, does no I/O.
