//! What the user chose to see, which the app keeps and the panels follow:
//! the order of the accounts table and the reach of the history chart.

/// The order the accounts table lists accounts in (`s` cycles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// As in the config file.
    #[default]
    Config,
    /// By name.
    Name,
    /// Busy first, then mail waiting, then the most recent fetch.
    Activity,
    /// Best compression ratio of the last fetch first.
    Ratio,
}

impl SortOrder {
    /// The next choice, as the key cycles them.
    pub fn next(self) -> SortOrder {
        match self {
            SortOrder::Config => SortOrder::Name,
            SortOrder::Name => SortOrder::Activity,
            SortOrder::Activity => SortOrder::Ratio,
            SortOrder::Ratio => SortOrder::Config,
        }
    }

    /// Its name in the accounts panel's title.
    pub fn label(self) -> &'static str {
        match self {
            SortOrder::Config => "config order",
            SortOrder::Name => "by name",
            SortOrder::Activity => "by activity",
            SortOrder::Ratio => "by ratio",
        }
    }
}

/// How far back the history chart reaches (`r` cycles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryRange {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// Everything in the history file.
    #[default]
    All,
}

impl HistoryRange {
    /// The next choice, as the key cycles them.
    pub fn next(self) -> HistoryRange {
        match self {
            HistoryRange::Day => HistoryRange::Week,
            HistoryRange::Week => HistoryRange::All,
            HistoryRange::All => HistoryRange::Day,
        }
    }

    /// Seconds it reaches back, `None` for all.
    pub fn seconds(self) -> Option<u64> {
        match self {
            HistoryRange::Day => Some(86_400),
            HistoryRange::Week => Some(7 * 86_400),
            HistoryRange::All => None,
        }
    }

    /// Its name in the history panel's title.
    pub fn label(self) -> &'static str {
        match self {
            HistoryRange::Day => "last day",
            HistoryRange::Week => "last week",
            HistoryRange::All => "all",
        }
    }
}
