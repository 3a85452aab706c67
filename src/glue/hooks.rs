//! The `extern "C"` callbacks fpio_glue.c calls from libfuse's io: each one
//! finds its session and hands the bytes to the safe core, inside a panic
//! boundary (a panic must never unwind into libfuse's loop).

use std::os::raw::{c_int, c_void};
use std::sync::Once;

use super::{set_hooks, Hooks};
use crate::session;

/// Installs the callbacks in the glue, once per process, before any session
/// wraps its io.
pub fn install_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        set_hooks(&Hooks {
            read: hook_read,
            writev: hook_writev,
            after_write: hook_after_write,
            spliced: hook_spliced,
            cloned: hook_cloned,
        })
    });
}

/// The glue read a request: let its session look at it.
unsafe extern "C" fn hook_read(fd: c_int, buf: *const c_void, len: usize, userdata: *mut c_void) {
    if buf.is_null() {
        return;
    }
    // SAFETY: the kernel just wrote len bytes into buf.
    let request = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
    let _ = std::panic::catch_unwind(|| {
        if let Some(s) = session::by_channel(fd, userdata as usize, Some(request)) {
            s.on_request(request);
        }
    });
}

/// The glue is about to send a reply: only the INIT reply, and on libfuse
/// 3.14 the open replies of high-level servers, are replaced.
unsafe extern "C" fn hook_writev(
    fd: c_int,
    iov: *const libc::iovec,
    count: c_int,
    userdata: *mut c_void,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> c_int {
    // Every reply passes here; only a few need work.
    if !session::reply_patch_pending() || iov.is_null() || count <= 0 || out.is_null() || out_len.is_null() {
        return 0;
    }
    // SAFETY: libfuse passes count valid iovecs.
    let iovs = unsafe { std::slice::from_raw_parts(iov, count as usize) };
    let parts: Vec<&[u8]> = iovs
        .iter()
        .map(|v| {
            if v.iov_base.is_null() {
                &[][..]
            } else {
                // SAFETY: each iovec describes iov_len readable bytes.
                unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }
            }
        })
        .collect();
    let replaced = std::panic::catch_unwind(|| {
        if let Some(s) = session::init_thread_session() {
            if let Some(msg) = s.patch_init_reply(&parts).filter(|m| m.len() <= out_cap) {
                s.bind_init_channel(fd, userdata as usize);
                return Some(msg);
            }
        }
        let s = session::by_channel(fd, userdata as usize, None)?;
        let msg = s
            .patch_open_reply(&parts)
            .or_else(|| s.patch_init_reply(&parts))?;
        (msg.len() <= out_cap).then_some(msg)
    });
    match replaced {
        Ok(Some(msg)) => {
            // SAFETY: the glue gave out_cap bytes at out and a valid out_len; msg fits.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), out, msg.len());
                *out_len = msg.len();
            }
            1
        }
        _ => 0,
    }
}

unsafe extern "C" fn hook_after_write(fd: c_int, userdata: *mut c_void, res: isize) {
    let _ = std::panic::catch_unwind(|| {
        if let Some(s) = session::by_channel(fd, userdata as usize, None) {
            s.replaced_reply_sent(res);
        }
    });
}

unsafe extern "C" fn hook_spliced(fd: c_int, userdata: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        if let Some(s) = session::by_channel(fd, userdata as usize, None) {
            s.on_spliced();
        }
    });
}

unsafe extern "C" fn hook_cloned(master_fd: c_int, clone_fd: c_int) {
    let _ = std::panic::catch_unwind(|| session::channel_cloned(master_fd, clone_fd));
}

/// With FPIO_LOG, the counters of sessions never freed are printed as the
/// process exits (registered once, at the first attach).
pub fn log_counters_at_exit_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a function that lives as long as the process.
        unsafe { libc::atexit(at_exit) };
    });
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(session::log_live_sessions_at_exit);
}
