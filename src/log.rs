//! Opt-in diagnostics: with `FPIO_LOG=1` in the server's environment fpio
//! says on stderr how it attached, whether passthrough is live (and if not,
//! why), the first fallback of each reason, and its counters at the end, so
//! an adopter sees what happened without writing code for it. Off, each
//! call costs one relaxed load.

use std::sync::OnceLock;

use crate::counters::Counter;
use crate::negotiate::Status;

pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("FPIO_LOG").is_ok_and(|v| !v.is_empty() && v != "0"))
}

fn line(text: std::fmt::Arguments) {
    if enabled() {
        // One write per line, so lines of concurrent threads do not interleave.
        let _ = crate::sys::write_all(2, format!("fpio: {text}\n").as_bytes());
    }
}

pub fn attached(how: &str) {
    line(format_args!("attached ({how})"));
}

pub fn transport(how: &str) {
    line(format_args!("first open ({how})"));
}

pub fn status(s: Status) {
    line(format_args!(
        "passthrough: {}",
        s.describe().trim_end_matches('\0')
    ));
}

pub fn fallback(reason: Counter, errno: i32) {
    let why = if reason == Counter::FallbackDeclined {
        "the server passed -1".to_string()
    } else {
        std::io::Error::from_raw_os_error(errno).to_string()
    };
    line(format_args!(
        "open without passthrough: {} ({why}); further ones are only counted",
        reason.label(),
    ));
}

pub fn freed(how: &str, counters: &str) {
    counters_block(format_args!("session freed ({how}); counters:"), counters);
}

/// A session never freed (a high-level server without destroy(), a server
/// that exits without fpio_session_free()): its counters as the process exits.
pub fn at_exit(how: &str, counters: &str) {
    counters_block(
        format_args!("process exit, session not freed ({how}); counters:"),
        counters,
    );
}

/// A heading line, then each counter line indented.
fn counters_block(heading: std::fmt::Arguments, counters: &str) {
    if enabled() {
        line(heading);
        for l in counters.lines() {
            line(format_args!("  {l}"));
        }
    }
}

pub fn unknown_handle() {
    line(format_args!(
        "a reply got a freed or unknown session handle; answered as plain libfuse"
    ));
}
