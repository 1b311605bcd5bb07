//! mailhaul: bring mail home from Unix mail servers over SSH.
//!
//! The library holds everything but the terminal entry point: the engine
//! (`engine`, which never touches the UI), the configuration (`config`), the
//! command-line definition (`cli`), the subcommands (`commands`) and the
//! dashboard (`ui`). `main.rs` only parses the command line and dispatches.

pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod exit;
pub mod ui;
