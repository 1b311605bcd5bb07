//! The dashboard's boundary to the engine: the calls the UI makes when the
//! user asks for something. Answers come back as [`Event`]s on the channel
//! given to [`run`](super::run); no call here waits for the work it starts.
//!
//! [`Event`]: crate::engine::event::Event

/// What the dashboard asks the engine to do. Every method must return
/// promptly (start a worker, send on a channel); progress, results and errors
/// are reported as events, tagged with the account's name.
pub trait Engine {
    /// Starts a fetch of one account; a fetch already running for it is left
    /// alone (the engine may log that it ignored the request).
    fn fetch(&mut self, account: &str);
    /// Starts a fetch of every account that is not fetching already.
    fn fetch_all(&mut self);
    /// Starts the account's SMTP forward when it is off, stops it otherwise.
    fn toggle_forward(&mut self, account: &str);
    /// Sends the account's outbox now, ignoring its messages' backoff (once
    /// the account's link is up, if it is down).
    fn flush_outbox(&mut self, account: &str);
    /// The user's answer to `FetchEvent::HostKeyUnknown`: `true` records the
    /// key in known_hosts and lets the fetch go on, `false` aborts it.
    fn answer_host_key(&mut self, account: &str, accept: bool);
    /// The dashboard is closing: stop workers and forwards (a fetch stops at
    /// a safe point; the journal resumes it next time). Called exactly once,
    /// before [`run`](super::run) returns because the user quit.
    fn shutdown(&mut self);
}
