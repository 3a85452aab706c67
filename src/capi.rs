//! The C API (include/fpio.h is generated from this file by cbindgen).
//!
//! Rules for every function here: arguments are checked first (NULL, unknown
//! flags and ids give -EINVAL, bad fds -EBADF, ...), every body runs inside
//! `ffi_panic_boundary!`, outputs are written only on success, and errors are
//! negative errno values. Session handles are validated against the table of
//! live sessions before use, so a freed or foreign handle gives -EINVAL
//! instead of undefined behaviour.

#![allow(non_camel_case_types)]
// These functions are called from C, where every pointer is raw; each one is
// checked before it is dereferenced.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::Cell;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

use crate::counters::Counter;
use crate::glue::{
    self, fuse_config, fuse_conn_info, fuse_entry_param, fuse_file_info, fuse_req, fuse_req_t, fuse_session,
};
use crate::iomode::{self, KernelRule};
use crate::negotiate::Status;
use crate::session::{self, NewError, Session, SessionFlags, Transport};

/// Runs a body, turning a panic into the given value: a panic must never
/// unwind into the C server.
macro_rules! ffi_panic_boundary {
    ($on_panic:expr; $($body:tt)*) => {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(_) => $on_panic,
        }
    };
}

/// Early return of `$err` when a pointer argument is NULL.
macro_rules! check_not_null {
    ($err:expr; $($p:expr),+) => {
        $(if $p.is_null() { return $err; })+
    };
}

/// The opaque session handle. Create with `fpio_session_new`, free with
/// `fpio_session_free`.
pub struct fpio_session {
    _private: [u8; 0],
}

fn handle(s: &Arc<Session>) -> *mut fpio_session {
    Arc::as_ptr(s) as *mut fpio_session
}

/// The live session behind a handle, or None for NULL, freed or foreign
/// pointers (checked against the table of live sessions, never dereferenced).
fn session(p: *const fpio_session) -> Option<Arc<Session>> {
    if p.is_null() {
        return None;
    }
    session::by_handle(p as usize)
}

// ---- version ----

/// Major version of the fpio API this header describes.
pub const FPIO_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const FPIO_VERSION_MINOR: u32 = 3;
/// Patch version.
pub const FPIO_VERSION_PATCH: u32 = 0;

/// The version of the loaded library, e.g. "0.2.0". Never NULL; static storage.
#[no_mangle]
pub extern "C" fn fpio_version() -> *const c_char {
    ffi_panic_boundary! { c"?".as_ptr();
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    }
}

/// The libfuse version fpio was built against, as major * 100 + minor
/// (e.g. 314 for 3.14, 317 for 3.17), decided at build time from its headers.
#[no_mangle]
pub extern "C" fn fpio_libfuse_version_built() -> u32 {
    ffi_panic_boundary! { 0; glue::version_built() }
}

/// The version of the libfuse loaded at run time, as major * 100 + minor.
#[no_mangle]
pub extern "C" fn fpio_libfuse_version_runtime() -> u32 {
    ffi_panic_boundary! { 0; glue::version_runtime() }
}

// ---- open flags and io modes ----

/// FOPEN_DIRECT_IO: reads and writes go to the server, bypassing the page cache.
pub const FPIO_FOPEN_DIRECT_IO: u32 = 1 << 0;
/// FOPEN_KEEP_CACHE: keep cached data on open.
pub const FPIO_FOPEN_KEEP_CACHE: u32 = 1 << 1;
/// FOPEN_NONSEEKABLE: the file is not seekable.
pub const FPIO_FOPEN_NONSEEKABLE: u32 = 1 << 2;
/// FOPEN_CACHE_DIR: cache directory contents (opendir only).
pub const FPIO_FOPEN_CACHE_DIR: u32 = 1 << 3;
/// FOPEN_STREAM: the file is a stream (no file position).
pub const FPIO_FOPEN_STREAM: u32 = 1 << 4;
/// FOPEN_NOFLUSH: no FLUSH on close.
pub const FPIO_FOPEN_NOFLUSH: u32 = 1 << 5;
/// FOPEN_PARALLEL_DIRECT_WRITES: direct writes to the file may run in parallel.
pub const FPIO_FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
/// FOPEN_PASSTHROUGH: reads and writes go to the backing file (with backing_id).
pub const FPIO_FOPEN_PASSTHROUGH: u32 = 1 << 7;

/// FOPEN_IOMODE(): the bits of `open_flags` that select the io mode
/// (DIRECT_IO | PASSTHROUGH).
#[no_mangle]
pub extern "C" fn fpio_iomode(open_flags: u32) -> u32 {
    ffi_panic_boundary! { 0; iomode::iomode_bits(open_flags) }
}

/// FOPEN_IOMODE_IS_CACHED(): neither DIRECT_IO nor PASSTHROUGH.
#[no_mangle]
pub extern "C" fn fpio_iomode_is_cached(open_flags: u32) -> bool {
    ffi_panic_boundary! { false; iomode::io_mode(open_flags) == iomode::IoMode::Cached }
}

/// FOPEN_IOMODE_IS_DIRECT(): DIRECT_IO set (PASSTHROUGH may be set too: then
/// only mmap uses the backing file).
#[no_mangle]
pub extern "C" fn fpio_iomode_is_direct(open_flags: u32) -> bool {
    ffi_panic_boundary! { false; iomode::io_mode(open_flags) == iomode::IoMode::Direct }
}

/// FOPEN_IOMODE_IS_PASSTHROUGH(): PASSTHROUGH without DIRECT_IO.
#[no_mangle]
pub extern "C" fn fpio_iomode_is_passthrough(open_flags: u32) -> bool {
    ffi_panic_boundary! { false; iomode::io_mode(open_flags) == iomode::IoMode::Passthrough }
}

/// Every released kernel: FOPEN_PARALLEL_DIRECT_WRITES is dropped unless
/// FOPEN_DIRECT_IO is set.
pub const FPIO_RULE_LEGACY: u32 = 0;
/// The "preserve FOPEN_PARALLEL_DIRECT_WRITES for passthrough opens" series:
/// the flag is dropped only in cached mode.
pub const FPIO_RULE_SERIES: u32 = 1;

/// The open flags a kernel following `rule` keeps from a reply carrying
/// `open_flags`, written to `*kept_out`.
/// Returns 0; -EINVAL for an unknown rule or NULL `kept_out`; -EIO when the
/// kernel would fail the open (PASSTHROUGH next to a flag it refuses).
#[no_mangle]
pub extern "C" fn fpio_effective_open_flags(open_flags: u32, rule: u32, kept_out: *mut u32) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; kept_out);
        let Some(rule) = KernelRule::from_raw(rule) else { return -libc::EINVAL };
        match iomode::effective_flags(open_flags, rule) {
            Some(kept) => {
                // SAFETY: checked non-NULL; the caller provides a u32.
                unsafe { *kept_out = kept };
                0
            }
            None => -libc::EIO,
        }
    }
}

/// Whether `open_flags` is a legal passthrough reply: PASSTHROUGH set, and
/// nothing else but DIRECT_IO, PARALLEL_DIRECT_WRITES and NOFLUSH.
#[no_mangle]
pub extern "C" fn fpio_passthrough_flags_valid(open_flags: u32) -> bool {
    ffi_panic_boundary! { false; iomode::passthrough_flags_valid(open_flags) }
}

// ---- session ----

/// Never negotiate passthrough: every open falls back (for comparisons and tests).
pub const FPIO_SESSION_NO_PASSTHROUGH: u32 = 1 << 0;
/// Negotiate max_stack_depth 2, so backing files may live on a stacked
/// filesystem (overlayfs, another FUSE passthrough mount).
pub const FPIO_SESSION_STACK_DEPTH_2: u32 = 1 << 3;
/// Negotiate FUSE_HANDLE_KILLPRIV_V2 (removes the per-write GETXATTR round
/// trip) where fpio sees every request (libfuse 3.14); elsewhere it is not
/// negotiated. The server must then clear set-uid/set-gid itself when
/// `fpio_request_kills_suidgid()` is true in its write, setattr and open
/// handlers. Without this flag the kernel keeps set-uid semantics itself and
/// the server needs no code for them.
pub const FPIO_SESSION_KILLPRIV_V2: u32 = 1 << 4;

/// Attaches fpio to a mounted libfuse session: call after
/// fuse_session_mount() and before the session loop starts (before or after
/// fuse_daemonize()). Where libfuse allows it, wraps the session's io
/// (fuse_session_custom_io, with splice and clone_fd kept working) to see
/// INIT and count requests; libfuse 3.18.3+ refuses that by default, and fpio
/// then works without it. On success `*session_out` gets a handle the caller
/// owns; on error it is left alone (keep it NULL: every fpio call then behaves
/// like plain libfuse). Returns 0; -EINVAL for NULL arguments or unknown
/// flags; -ENOTCONN if `se` is not mounted yet; -EALREADY if fpio is already
/// attached to `se`.
///
/// Thread safety: call from one thread, before the loop.
#[no_mangle]
pub extern "C" fn fpio_session_new(
    se: *mut fuse_session,
    flags: u32,
    session_out: *mut *mut fpio_session,
) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; se, session_out);
        let Some(flags) = SessionFlags::from_bits(flags) else { return -libc::EINVAL };
        // SAFETY: se is non-NULL and, per the API contract, a live session.
        match unsafe { Session::attach(se, flags) } {
            Ok(s) => {
                // SAFETY: checked non-NULL.
                unsafe { *session_out = handle(&s) };
                0
            }
            Err(NewError::NotMounted) => -libc::ENOTCONN,
            Err(NewError::AlreadyAttached) => -libc::EALREADY,
            Err(NewError::Io(e)) => -e,
        }
    }
}

/// Detaches and frees a session: closes every backing id fpio registered.
/// Call after the session loop has returned (before or after
/// fuse_session_destroy()). NULL and already-freed handles are ignored.
#[no_mangle]
pub extern "C" fn fpio_session_free(session: *mut fpio_session) {
    ffi_panic_boundary! { ();
        if let Some(s) = self::session(session) {
            s.detach();
        }
    }
}

/// Call at the end of the server's init(), with its `conn`: asks libfuse
/// (3.17+) or fpio's INIT reply (3.14) for passthrough where the kernel
/// offers it and the server has CAP_SYS_ADMIN, and for shared mmap of
/// direct-io files. If passthrough can be live and the server asked for the
/// writeback cache, the writeback cache is dropped (the kernel refuses both);
/// where passthrough cannot be live the server keeps what it asked for. A
/// server that wants to choose itself calls this first and asks for writeback
/// only when it returned 0.
///
/// Returns 1 if passthrough will be live (the first open proves it: see
/// fpio_session_status()), 0 if not (also for a NULL session), -EINVAL for
/// a freed handle or NULL `conn`.
///
/// Thread safety: call only from init(), on the thread libfuse runs it on.
#[no_mangle]
pub extern "C" fn fpio_session_init(session: *mut fpio_session, conn: *mut fuse_conn_info) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        if session.is_null() {
            return 0;
        }
        check_not_null!(-libc::EINVAL; conn);
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        // SAFETY: conn is non-NULL and, per the API contract, init()'s own.
        c_int::from(unsafe { s.init(conn) })
    }
}

/// Requests arrive by read() on /dev/fuse (or a clone of it).
pub const FPIO_TRANSPORT_DEVICE: u32 = 1;
/// Requests arrive over io_uring (libfuse 3.18+, `-o io_uring`).
pub const FPIO_TRANSPORT_IO_URING: u32 = 2;

/// How requests reach the server, known from the first open fpio answered:
/// writes FPIO_TRANSPORT_* to `*transport_out`. Returns 0; -EAGAIN before
/// the first open; -EINVAL for bad arguments.
#[no_mangle]
pub extern "C" fn fpio_session_transport(session: *const fpio_session, transport_out: *mut u32) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; transport_out);
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        match s.transport() {
            Transport::Unknown => -libc::EAGAIN,
            t => {
                // SAFETY: checked non-NULL.
                unsafe { *transport_out = t as u32 };
                0
            }
        }
    }
}

/// Passthrough is negotiated and usable.
pub const FPIO_STATUS_LIVE: u32 = 0;
/// Not decided yet: INIT not answered, or (libfuse 3.17+) negotiated and
/// to be proven by the first open.
pub const FPIO_STATUS_PENDING: u32 = 1;
/// The kernel did not offer FUSE_PASSTHROUGH (older than 6.9, or
/// CONFIG_FUSE_PASSTHROUGH off).
pub const FPIO_STATUS_KERNEL_LACKS: u32 = 2;
/// The server lacks CAP_SYS_ADMIN, which registering backing files needs.
pub const FPIO_STATUS_NO_CAP_SYS_ADMIN: u32 = 3;
/// The server asked for the writeback cache after fpio_session_init(), or
/// without calling it (libfuse 3.14); the kernel refuses it together with
/// passthrough, and fpio leaves the server's choice alone.
pub const FPIO_STATUS_WRITEBACK_CACHE: u32 = 4;
/// FPIO_SESSION_NO_PASSTHROUGH was given.
pub const FPIO_STATUS_DISABLED: u32 = 5;
/// INIT was missed (fpio attached after the loop started) or the kernel
/// did not accept passthrough.
pub const FPIO_STATUS_NOT_NEGOTIATED: u32 = 6;
/// libfuse 3.17+ negotiates passthrough only inside the server's init(),
/// which did not call fpio_session_init().
pub const FPIO_STATUS_INIT_NOT_CALLED: u32 = 7;

/// Whether passthrough is live on the session's mount (FPIO_STATUS_LIVE), or
/// why not, written to `*status_out`. Returns 0 or -EINVAL.
#[no_mangle]
pub extern "C" fn fpio_session_status(session: *const fpio_session, status_out: *mut u32) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; status_out);
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        // SAFETY: checked non-NULL.
        unsafe { *status_out = s.status() as u32 };
        0
    }
}

/// A short English description of a status. Never NULL; static storage;
/// "unknown status" for values that are not FPIO_STATUS_*.
#[no_mangle]
pub extern "C" fn fpio_status_str(status: u32) -> *const c_char {
    ffi_panic_boundary! { c"unknown status".as_ptr();
        match Status::from_raw(status) {
            Some(s) => s.describe().as_ptr().cast(),
            None => c"unknown status".as_ptr(),
        }
    }
}

/// What the kernel offered in its INIT request: the 64-bit INIT flags
/// (flags | flags2 << 32) and the protocol minor version. Where fpio does not
/// see the request (libfuse refuses custom io), the flags are rebuilt from
/// what libfuse reports in init(): FUSE_PASSTHROUGH, FUSE_DIRECT_IO_ALLOW_MMAP,
/// FUSE_HANDLE_KILLPRIV_V2 and FUSE_WRITEBACK_CACHE only.
/// Returns 0; -EINVAL for bad arguments; -EAGAIN before INIT.
#[no_mangle]
pub extern "C" fn fpio_session_kernel_offer(
    session: *const fpio_session,
    flags_out: *mut u64,
    minor_out: *mut u32,
) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; flags_out, minor_out);
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        let Some(offer) = s.offer() else { return -libc::EAGAIN };
        // SAFETY: checked non-NULL.
        unsafe {
            *flags_out = offer.flags;
            *minor_out = offer.minor;
        }
        0
    }
}

/// The errno of the last failed backing registration (EPERM, EMFILE, ELOOP,
/// ...), which libfuse's own fuse_passthrough_open() loses; 0 if none failed.
/// Returns 0 or -EINVAL.
#[no_mangle]
pub extern "C" fn fpio_session_register_errno(session: *const fpio_session, errno_out: *mut c_int) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; errno_out);
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        // SAFETY: checked non-NULL.
        unsafe { *errno_out = s.last_register_errno() };
        0
    }
}

// ---- replies ----

/// Answers a request inside a reply function; on a panic, answers it with
/// EIO unless it was already answered (answering twice would free it twice).
fn reply_boundary(req: fuse_req_t, f: impl FnOnce(&Cell<bool>) -> c_int) -> c_int {
    let answered = Cell::new(false);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&answered))) {
        Ok(v) => v,
        Err(_) => {
            if !answered.get() {
                // SAFETY: req is an unanswered request (checked non-NULL by the caller).
                unsafe { glue::reply_err(req, libc::EIO) };
            }
            -libc::EIO
        }
    }
}

/// Drop-in replacement for fuse_reply_open(req, fi). Answers the OPEN
/// request with FOPEN_PASSTHROUGH|FOPEN_PARALLEL_DIRECT_WRITES and the
/// inode's shared backing id when it can, registering `backing_fd` for the
/// inode's first passthrough open.
///
/// `backing_fd` is the server's own open fd of the file this open reads and
/// writes, opened for (at least) the open's access mode; fpio keeps no
/// reference to it. -1 declines passthrough for this open: it then gets the
/// server's own reply, unless the inode already has a backing file (the
/// kernel then insists on passthrough): if the server opened that same file
/// for this access for an open still live, the open gets
/// FOPEN_PASSTHROUGH|FOPEN_DIRECT_IO (read and write reach the server, mmap
/// the backing file), otherwise it fails with EBUSY.
///
/// An open without passthrough (not live, declined, bad or non-regular fd,
/// fd lacking the access, cached opens on the inode, ...) is answered
/// exactly as fuse_reply_open(req, fi) would (fi->direct_io, keep_cache,
/// cache_readdir, nonseekable, noflush, parallel_direct_writes), plus
/// FOPEN_PARALLEL_DIRECT_WRITES where that reply is direct io; the reason is
/// counted. `fi->fh` is sent as the file handle. On libfuse 3.17+ a
/// `fi->backing_id` the server registered itself is used and never closed.
/// A NULL session answers with fuse_reply_open(req, fi) itself.
///
/// Whenever `req` is not NULL, the request has been answered exactly once
/// on return. Returns 0 and writes the FOPEN_* flags sent to
/// `*open_flags_out` (may be NULL; not written for a NULL session);
/// -ESTALE if `backing_fd` is another file than the inode's live backing
/// file (the open was answered ESTALE, so the kernel looks the name up again
/// and retries the open once: give the new file a new node id in that
/// lookup, or pass -1 for files whose backing file can change under live
/// opens); -EBUSY (answered EBUSY, see -1 above); -EINVAL for a NULL `fi`
/// (answered EIO); or the negative errno of a reply that could not be sent
/// (e.g. -ENOENT: the open was interrupted), in which case the registration
/// is undone. A freed handle is answered as with a NULL session.
///
/// The open exists (and a release will come) exactly when the result is >= 0:
/// on < 0, close the fd you opened for it.
///
/// Thread safety: any thread, concurrently with other opens and releases.
#[no_mangle]
pub extern "C" fn fpio_reply_open(
    session: *mut fpio_session,
    req: *mut fuse_req,
    ino: u64,
    backing_fd: c_int,
    fi: *const fuse_file_info,
    open_flags_out: *mut u32,
) -> c_int {
    check_not_null!(-libc::EINVAL; req);
    reply_boundary(req, |answered| {
        if fi.is_null() {
            answered.set(true);
            // SAFETY: req is a non-NULL unanswered request.
            unsafe { glue::reply_err(req, libc::EIO) };
            return -libc::EINVAL;
        }
        let Some(s) = self::session(session) else {
            answered.set(true);
            // SAFETY: req is unanswered and fi is the server's valid file info.
            let rc = unsafe { glue::reply_open_plain(req, fi) };
            return plain_result(session.is_null(), rc);
        };
        // SAFETY: fi is non-NULL and points to the request's file info.
        let fi = unsafe { glue::read_fi(fi) };
        // SAFETY: req is unanswered; reply_open answers it.
        let r = unsafe { s.reply_open(req, ino, backing_fd, &fi, None, answered) };
        finish_reply(r, open_flags_out)
    })
}

/// Drop-in replacement for fuse_reply_create(req, e, fi): like
/// `fpio_reply_open`, with the new entry `e` (whose `ino` is the inode the
/// open belongs to). A NULL session answers with fuse_reply_create() itself.
///
/// Thread safety: any thread, concurrently with other opens and releases.
#[no_mangle]
pub extern "C" fn fpio_reply_create(
    session: *mut fpio_session,
    req: *mut fuse_req,
    e: *const fuse_entry_param,
    backing_fd: c_int,
    fi: *const fuse_file_info,
    open_flags_out: *mut u32,
) -> c_int {
    check_not_null!(-libc::EINVAL; req);
    reply_boundary(req, |answered| {
        if fi.is_null() || e.is_null() {
            answered.set(true);
            // SAFETY: req is a non-NULL unanswered request.
            unsafe { glue::reply_err(req, libc::EIO) };
            return -libc::EINVAL;
        }
        let Some(s) = self::session(session) else {
            answered.set(true);
            // SAFETY: req is unanswered; e and fi are the server's valid structs.
            let rc = unsafe { glue::reply_create_plain(req, e, fi) };
            return plain_result(session.is_null(), rc);
        };
        // SAFETY: e and fi are non-NULL and belong to this request.
        let (entry, fi) = unsafe { (glue::read_entry(e), glue::read_fi(fi)) };
        // SAFETY: req is unanswered; reply_open answers it.
        let r = unsafe { s.reply_open(req, entry.ino, backing_fd, &fi, Some(&entry), answered) };
        finish_reply(r, open_flags_out)
    })
}

/// The result of a reply fpio left to libfuse. Whether the open exists
/// must be clear from the sign alone (a release follows exactly when the
/// result is >= 0), so a freed handle answered plainly is not an error here;
/// FPIO_LOG reports it.
fn plain_result(null_session: bool, rc: c_int) -> c_int {
    if rc >= 0 && !null_session {
        crate::log::unknown_handle();
    }
    rc.min(0)
}

fn finish_reply(r: Result<u32, i32>, open_flags_out: *mut u32) -> c_int {
    match r {
        Ok(flags) => {
            if !open_flags_out.is_null() {
                // SAFETY: checked non-NULL.
                unsafe { *open_flags_out = flags };
            }
            0
        }
        Err(e) => -e,
    }
}

/// Call from the release handler, before closing `fi->fh`: forgets the open
/// (`ino`, `fi->fh`) fpio answered, and closes the inode's backing id at its
/// last reference. Returns 0 (also for a NULL session); -ENOENT if fpio has
/// no such open (a double release, or an open fpio did not answer); -EINVAL
/// for a NULL `fi` or a freed handle.
///
/// Thread safety: any thread, concurrently with other opens and releases.
#[no_mangle]
pub extern "C" fn fpio_release(session: *mut fpio_session, ino: u64, fi: *const fuse_file_info) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; fi);
        if session.is_null() {
            return 0;
        }
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        // SAFETY: fi is non-NULL and points to the request's file info.
        let fi = unsafe { glue::read_fi(fi) };
        match s.release(ino, fi.fh) {
            Ok(()) => 0,
            Err(e) => -e,
        }
    }
}

/// The inode's current backing id. Returns 0; -ENOENT if it has none;
/// -EINVAL for bad arguments.
#[no_mangle]
pub extern "C" fn fpio_backing_id(session: *const fpio_session, ino: u64, backing_id_out: *mut i32) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; backing_id_out);
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        match s.backing_id(ino) {
            Some(id) => {
                // SAFETY: checked non-NULL.
                unsafe { *backing_id_out = id as i32 };
                0
            }
            None => -libc::ENOENT,
        }
    }
}

/// With FPIO_SESSION_KILLPRIV_V2: whether the request the calling thread is
/// handling asked the server to clear set-uid/set-gid (a WRITE, a truncating
/// or chown SETATTR, or an O_TRUNC OPEN/CREATE from a writer without
/// CAP_FSETID). Call it in those handlers.
#[no_mangle]
pub extern "C" fn fpio_request_kills_suidgid() -> bool {
    ffi_panic_boundary! { false; session::current_request_kills_suidgid() }
}

// ---- counters ----

/// Opens answered with FOPEN_PASSTHROUGH.
pub const FPIO_COUNTER_OPENS_PASSTHROUGH: u32 = 0;
/// Opens answered with FOPEN_DIRECT_IO and no backing file.
pub const FPIO_COUNTER_OPENS_DIRECT: u32 = 1;
/// Opens answered in cached mode.
pub const FPIO_COUNTER_OPENS_CACHED: u32 = 2;
/// Opens answered FOPEN_DIRECT_IO|FOPEN_PASSTHROUGH on a shared backing
/// file that cannot serve their access mode.
pub const FPIO_COUNTER_OPENS_SHARED_DIRECT: u32 = 3;
/// Fallbacks: passthrough not live on the mount.
pub const FPIO_COUNTER_FALLBACK_NOT_LIVE: u32 = 4;
/// Fallbacks: the server passed -1 as backing fd.
pub const FPIO_COUNTER_FALLBACK_DECLINED: u32 = 5;
/// Fallbacks: a bad backing fd.
pub const FPIO_COUNTER_FALLBACK_BAD_FD: u32 = 6;
/// Fallbacks: the backing fd is not a regular file.
pub const FPIO_COUNTER_FALLBACK_NOT_REGULAR: u32 = 7;
/// Fallbacks: the backing fd's access mode differs from the open's.
pub const FPIO_COUNTER_FALLBACK_ACCESS: u32 = 8;
/// Fallbacks: the inode has cached opens (passthrough would fail ETXTBSY).
pub const FPIO_COUNTER_FALLBACK_CACHED_OPENS: u32 = 9;
/// Fallbacks: the kernel refused the registration.
pub const FPIO_COUNTER_FALLBACK_REGISTER_FAILED: u32 = 10;
/// Opens refused with EBUSY: another file than the inode's backing file.
pub const FPIO_COUNTER_BUSY_REFUSED: u32 = 11;
/// Backing ids fpio holds now.
pub const FPIO_COUNTER_BACKING_IDS_LIVE: u32 = 12;
/// Backing ids fpio registered.
pub const FPIO_COUNTER_BACKING_OPENED: u32 = 13;
/// Backing ids fpio closed.
pub const FPIO_COUNTER_BACKING_CLOSED: u32 = 14;
/// Open replies that could not be sent (and were undone).
pub const FPIO_COUNTER_REPLY_FAILED: u32 = 15;
/// FUSE_READ requests that reached the server.
pub const FPIO_COUNTER_REQ_READ: u32 = 16;
/// FUSE_WRITE requests that reached the server.
pub const FPIO_COUNTER_REQ_WRITE: u32 = 17;
/// FUSE_GETXATTR requests that reached the server.
pub const FPIO_COUNTER_REQ_GETXATTR: u32 = 18;
/// All requests that reached the server.
pub const FPIO_COUNTER_REQ_TOTAL: u32 = 19;
/// Fallbacks: the inode has direct opens, which the kernel would fail once
/// the inode had a backing file.
pub const FPIO_COUNTER_FALLBACK_DIRECT_OPENS: u32 = 20;
/// Opens refused with ESTALE: the server's fd is another file than the
/// inode's live backing file.
pub const FPIO_COUNTER_STALE_REFUSED: u32 = 21;
/// Fallbacks: a high-level server's open that would have passed through but
/// whose request fpio did not see (libfuse 3.14, which needs fpio to patch
/// the reply: a request read before fpio wrapped the io, or spliced past it).
/// An open kept from passthrough by anything else counts for that reason.
pub const FPIO_COUNTER_FALLBACK_REQUEST_UNSEEN: u32 = 22;
/// The number of counters.
pub const FPIO_COUNTER_COUNT: u32 = 23;

/// Reads one counter into `*value_out`. Returns 0; -EINVAL for a bad
/// session, NULL `value_out` or a counter >= FPIO_COUNTER_COUNT; -ENODATA for
/// the FPIO_COUNTER_REQ_* counters where fpio does not see every request
/// (custom io refused, splice, io_uring, or channels it could not place).
#[no_mangle]
pub extern "C" fn fpio_session_counter(
    session: *const fpio_session,
    counter: u32,
    value_out: *mut u64,
) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; value_out);
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        let Some(c) = Counter::from_raw(counter) else { return -libc::EINVAL };
        if c.is_request() && !s.requests_observed() {
            return -libc::ENODATA;
        }
        // SAFETY: checked non-NULL.
        unsafe { *value_out = s.counters.get(c) };
        0
    }
}

/// The name of a counter ("opens_passthrough", ...); NULL for values >=
/// FPIO_COUNTER_COUNT. Static storage.
#[no_mangle]
pub extern "C" fn fpio_counter_name(counter: u32) -> *const c_char {
    ffi_panic_boundary! { std::ptr::null();
        Counter::from_raw(counter).map_or(std::ptr::null(), |c| c.name().as_ptr().cast())
    }
}

/// Writes every counter as a "name value" line to `fd` ("name n/a" for
/// request counters fpio cannot see), then "status <fpio_status_str>",
/// "register_errno <n>" and "transport dev|io_uring|unknown". Returns 0; -EINVAL
/// for a bad session; -EBADF or the write's errno.
#[no_mangle]
pub extern "C" fn fpio_session_write_counters(session: *const fpio_session, fd: c_int) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        let Some(s) = self::session(session) else { return -libc::EINVAL };
        if fd < 0 {
            return -libc::EBADF;
        }
        let text = s.render_counters();
        match crate::sys::write_all(fd, text.as_bytes()) {
            Ok(()) => 0,
            Err(e) => -e,
        }
    }
}

// ---- high-level (fuse.h) servers ----

/// Call at the end of a high-level server's init(conn, cfg), with its
/// arguments (after the server has set its own `conn` wants and `cfg`
/// options). Attaches fpio to the `struct fuse` whose init() the calling
/// thread runs, and negotiates as fpio_session_init() does. Where
/// passthrough can be live, fpio takes over the `cfg` options libfuse would
/// turn into open flags after open() returned (`kernel_cache`, `auto_cache`,
/// `direct_io`: the kernel refuses FOPEN_KEEP_CACHE next to passthrough),
/// and gives each open that does not pass through what they would have
/// given it; elsewhere `cfg` is left as it is. On libfuse 3.14, where fpio
/// reads each OPEN request to add the backing id to its reply, it also turns
/// off splice reads where passthrough can be live. `flags` are FPIO_SESSION_*.
///
/// Returns 1 if passthrough will be live (the first open, or the probe when
/// INIT is answered, proves it: see fpio_session_status()), 0 if not,
/// -EINVAL for NULL arguments or unknown flags, -ENOTCONN if the calling
/// thread runs no high-level init(), -EALREADY if fpio is attached to this
/// session already. On an error the server runs as without fpio.
///
/// fpio owns the session: get its handle with fpio_fuse_session() (for the
/// status and counters); free it with fpio_session_free() from destroy() or
/// after the loop, or leave it to process exit.
///
/// Thread safety: call only from a high-level server's init() (elsewhere
/// libfuse's fuse_get_context() may not be set up).
#[no_mangle]
pub extern "C" fn fpio_fuse_init(conn: *mut fuse_conn_info, cfg: *mut fuse_config, flags: u32) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; conn, cfg);
        let Some(flags) = SessionFlags::from_bits(flags) else { return -libc::EINVAL };
        // SAFETY: per the API contract this is a high-level server's init(),
        // so libfuse's context is set up on this thread.
        let se = unsafe { glue::context_session() };
        if se.is_null() {
            return -libc::ENOTCONN;
        }
        // SAFETY: se is the live session whose init() this thread runs; conn
        // and cfg are that init()'s arguments (API contract).
        match unsafe { Session::attach_high_level(se, flags, conn, cfg) } {
            Ok((_, live)) => c_int::from(live),
            Err(NewError::NotMounted) => -libc::ENOTCONN,
            Err(NewError::AlreadyAttached) => -libc::EALREADY,
            Err(NewError::Io(e)) => -e,
        }
    }
}

/// Call at the end of a high-level server's open() and create(), after
/// setting `fi->fh`, with `backing_fd`: the server's own open fd of the file
/// this open reads and writes (opened for at least the open's access mode;
/// fpio keeps no reference to it), or -1 to decline passthrough for this
/// open. Sets the fields of `fi` that libfuse's reply carries: passthrough
/// with the backing file's shared backing id where it can, otherwise
/// exactly what the server and its options asked for (plus
/// parallel_direct_writes where that is direct io).
///
/// Opens are keyed by their backing file (high-level opens carry no inode
/// number): all opens of one file share one backing id. Decline either all
/// opens of a file or none. Under `auto_cache` a declined open drops the page
/// cache (fpio cannot look at a file it got no fd for).
///
/// Returns 0; -EINVAL for a NULL `fi`. Without fpio attached (no
/// fpio_fuse_init(), or it failed) it changes nothing and returns 0. If the
/// server's open() fails after this call, call fpio_fuse_release().
///
/// Thread safety: from open()/create() on the thread running them, on any
/// number of threads at once.
#[no_mangle]
pub extern "C" fn fpio_fuse_open(backing_fd: c_int, fi: *mut fuse_file_info) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; fi);
        let Some(s) = session::for_this_thread() else { return 0 };
        // SAFETY: fi is non-NULL and, per the API contract, the open's own.
        let info = unsafe { glue::read_fi(fi) };
        if let Some(set) = s.open_high_level(backing_fd, &info) {
            // SAFETY: as above.
            unsafe { glue::write_fi(fi, &set) };
        }
        0
    }
}

/// Call from a high-level server's release(), before closing `fi->fh`:
/// forgets the open fpio_fuse_open() saw, and closes its backing id at its
/// file's last release. Returns 0 (also without fpio attached); -ENOENT if
/// fpio has no such open; -EINVAL for a NULL `fi`.
///
/// Thread safety: from release() on the thread running it, on any number of
/// threads at once.
#[no_mangle]
pub extern "C" fn fpio_fuse_release(fi: *const fuse_file_info) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; fi);
        let Some(s) = session::for_this_thread() else { return 0 };
        // SAFETY: fi is non-NULL and, per the API contract, the open's own.
        let info = unsafe { glue::read_fi(fi) };
        match s.release_high_level(info.fh) {
            Ok(()) => 0,
            Err(e) => -e,
        }
    }
}

/// The session fpio_fuse_init() attached to the `struct fuse` whose request
/// or init() the calling thread runs, written to `*session_out`: for
/// fpio_session_status(), the counters, and fpio_session_free(). It stays
/// valid until freed. Returns 0; -EINVAL for NULL `session_out`; -ENOENT
/// if there is none (outside the server's handlers, or fpio not attached).
#[no_mangle]
pub extern "C" fn fpio_fuse_session(session_out: *mut *mut fpio_session) -> c_int {
    ffi_panic_boundary! { -libc::EIO;
        check_not_null!(-libc::EINVAL; session_out);
        let Some(s) = session::for_this_thread() else { return -libc::ENOENT };
        // SAFETY: checked non-NULL.
        unsafe { *session_out = handle(&s) };
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_constants_match_the_core() {
        let statuses = [
            FPIO_STATUS_LIVE,
            FPIO_STATUS_PENDING,
            FPIO_STATUS_KERNEL_LACKS,
            FPIO_STATUS_NO_CAP_SYS_ADMIN,
            FPIO_STATUS_WRITEBACK_CACHE,
            FPIO_STATUS_DISABLED,
            FPIO_STATUS_NOT_NEGOTIATED,
            FPIO_STATUS_INIT_NOT_CALLED,
        ];
        assert_eq!(statuses.len(), Status::ALL.len());
        for (s, c) in Status::ALL.iter().zip(statuses) {
            assert_eq!(*s as u32, c);
        }
        let counters = [
            FPIO_COUNTER_OPENS_PASSTHROUGH,
            FPIO_COUNTER_OPENS_DIRECT,
            FPIO_COUNTER_OPENS_CACHED,
            FPIO_COUNTER_OPENS_SHARED_DIRECT,
            FPIO_COUNTER_FALLBACK_NOT_LIVE,
            FPIO_COUNTER_FALLBACK_DECLINED,
            FPIO_COUNTER_FALLBACK_BAD_FD,
            FPIO_COUNTER_FALLBACK_NOT_REGULAR,
            FPIO_COUNTER_FALLBACK_ACCESS,
            FPIO_COUNTER_FALLBACK_CACHED_OPENS,
            FPIO_COUNTER_FALLBACK_REGISTER_FAILED,
            FPIO_COUNTER_BUSY_REFUSED,
            FPIO_COUNTER_BACKING_IDS_LIVE,
            FPIO_COUNTER_BACKING_OPENED,
            FPIO_COUNTER_BACKING_CLOSED,
            FPIO_COUNTER_REPLY_FAILED,
            FPIO_COUNTER_REQ_READ,
            FPIO_COUNTER_REQ_WRITE,
            FPIO_COUNTER_REQ_GETXATTR,
            FPIO_COUNTER_REQ_TOTAL,
            FPIO_COUNTER_FALLBACK_DIRECT_OPENS,
            FPIO_COUNTER_STALE_REFUSED,
            FPIO_COUNTER_FALLBACK_REQUEST_UNSEEN,
        ];
        assert_eq!(counters.len() as u32, FPIO_COUNTER_COUNT);
        for (c, v) in Counter::ALL.iter().zip(counters) {
            assert_eq!(*c as u32, v);
        }
        assert_eq!(Counter::ALL.len() as u32, FPIO_COUNTER_COUNT);
    }

    #[test]
    fn flag_constants_match_the_core() {
        use crate::iomode::OpenFlags;
        assert_eq!(FPIO_FOPEN_DIRECT_IO, OpenFlags::DIRECT_IO.bits());
        assert_eq!(FPIO_FOPEN_PASSTHROUGH, OpenFlags::PASSTHROUGH.bits());
        assert_eq!(
            FPIO_FOPEN_PARALLEL_DIRECT_WRITES,
            OpenFlags::PARALLEL_DIRECT_WRITES.bits()
        );
        assert_eq!(FPIO_SESSION_KILLPRIV_V2, SessionFlags::KILLPRIV_V2.bits());
        assert_eq!(FPIO_SESSION_NO_PASSTHROUGH, SessionFlags::NO_PASSTHROUGH.bits());
        assert_eq!(FPIO_SESSION_STACK_DEPTH_2, SessionFlags::STACK_DEPTH_2.bits());
    }

    #[test]
    fn version_constants_match_cargo() {
        let v = format!("{FPIO_VERSION_MAJOR}.{FPIO_VERSION_MINOR}.{FPIO_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn bad_arguments_give_errors_not_crashes() {
        let mut v = 7u32;
        assert_eq!(fpio_effective_open_flags(0, 9, &mut v), -libc::EINVAL);
        assert_eq!(v, 7);
        assert_eq!(
            fpio_effective_open_flags(0, 0, std::ptr::null_mut()),
            -libc::EINVAL
        );
        let bogus = 0x1000 as *mut fpio_session;
        assert_eq!(fpio_session_status(bogus, &mut v), -libc::EINVAL);
        assert_eq!(fpio_session_status(std::ptr::null(), &mut v), -libc::EINVAL);
        fpio_session_free(std::ptr::null_mut());
        fpio_session_free(bogus);
        assert_eq!(fpio_release(bogus, 1, std::ptr::null()), -libc::EINVAL);
        assert!(fpio_counter_name(FPIO_COUNTER_COUNT).is_null());
        assert_eq!(
            fpio_session_new(std::ptr::null_mut(), 0, std::ptr::null_mut()),
            -libc::EINVAL
        );
        assert_eq!(
            fpio_reply_open(
                bogus,
                std::ptr::null_mut(),
                1,
                -1,
                std::ptr::null(),
                std::ptr::null_mut()
            ),
            -libc::EINVAL
        );
    }
}
