//! The engine: everything mailhaul does, without any UI.
//!
//! Workers run on their own threads and report on one typed channel
//! (`event::Event`); the dashboard and the headless commands both consume it.

pub mod event;
pub mod mbox;
pub mod message;
pub mod ssh;
pub mod tunnel;
