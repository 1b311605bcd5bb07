//! The engine: everything mailhaul does, without any UI.
//!
//! Workers run on their own threads and report on one typed channel
//! (`event::Event`); the dashboard and the headless commands both consume it.

pub mod account;
pub mod civil;
pub mod claim;
pub mod deliver;
pub mod event;
pub mod failure;
pub mod fetch;
pub mod filing;
pub mod history;
pub mod hook;
pub mod journal;
pub mod mbox;
pub mod message;
pub mod os;
pub mod outbox;
pub mod peer;
pub mod pipeline;
pub mod rules;
pub mod ssh;
pub mod supervisor;
pub mod transfer;
pub mod tunnel;
pub mod watch;
