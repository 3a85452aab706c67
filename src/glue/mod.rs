//! The Rust side of src/glue/fpio_glue.c: libfuse's types stay opaque here,
//! and the glue flattens what fpio reads out of them.

#![allow(non_camel_case_types)]

pub mod hooks;

use std::os::raw::{c_int, c_void};

use crate::proto::{Attr, Entry};
use crate::reply::FileInfo;

/// libfuse's session (opaque).
#[repr(C)]
pub struct fuse_session {
    _private: [u8; 0],
}
/// libfuse's request (opaque).
#[repr(C)]
pub struct fuse_req {
    _private: [u8; 0],
}
/// libfuse's request handle.
pub type fuse_req_t = *mut fuse_req;
/// libfuse's inode number.
pub type fuse_ino_t = u64;
/// libfuse's open-file info (opaque here; read through the glue).
#[repr(C)]
pub struct fuse_file_info {
    _private: [u8; 0],
}
/// libfuse's lookup reply (opaque here; read through the glue).
#[repr(C)]
pub struct fuse_entry_param {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Default)]
struct GlueFi {
    fh: u64,
    flags: i32,
    backing_id: i32,
    direct_io: u32,
    keep_cache: u32,
    nonseekable: u32,
    noflush: u32,
    parallel_direct_writes: u32,
    cache_readdir: u32,
}

#[repr(C)]
struct GlueEntry {
    ino: u64,
    generation: u64,
    attr_timeout: f64,
    entry_timeout: f64,
    attr: libc::stat,
}

/// Sees each request after the glue's read() (see fpio_glue.c for why the
/// glue, not Rust, makes the system calls).
pub type OnReadFn = unsafe extern "C" fn(c_int, *const c_void, usize, *mut c_void);
/// May replace a reply: returns 1 after writing the replacement to
/// `out[..*out_len]`, 0 to send the reply as it is.
pub type OnWritevFn =
    unsafe extern "C" fn(c_int, *const libc::iovec, c_int, *mut c_void, *mut u8, usize, *mut usize) -> c_int;
/// Told the result of sending a replacement (bytes or -errno).
pub type AfterWriteFn = unsafe extern "C" fn(c_int, *mut c_void, isize);
/// Told that a request was spliced past fpio (fd, userdata).
pub type OnSpliceFn = unsafe extern "C" fn(c_int, *mut c_void);
/// Told that libfuse cloned channel `master_fd` into `clone_fd`.
pub type OnCloneFn = unsafe extern "C" fn(c_int, c_int);

/// The io callbacks, installed once for every session.
#[repr(C)]
pub struct Hooks {
    pub read: OnReadFn,
    pub writev: OnWritevFn,
    pub after_write: AfterWriteFn,
    pub spliced: OnSpliceFn,
    pub cloned: OnCloneFn,
}

/// libfuse's high-level configuration (opaque here; read and changed through the glue).
#[repr(C)]
pub struct fuse_config {
    _private: [u8; 0],
}

/// The `struct fuse_config` options that set open flags after a high-level
/// server's open() returned.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    pub kernel_cache: u32,
    pub auto_cache: u32,
    pub direct_io: u32,
}

/// What fpio writes into a high-level server's `struct fuse_file_info`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiSet {
    /// libfuse 3.17+ only (libfuse then sends FOPEN_PASSTHROUGH itself).
    pub backing_id: i32,
    pub direct_io: u32,
    pub keep_cache: u32,
    pub parallel_direct_writes: u32,
}

/// libfuse's connection info (opaque here; read and changed through the glue).
#[repr(C)]
pub struct fuse_conn_info {
    _private: [u8; 0],
}

/// What fpio reads from the connection in the server's init().
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct ConnInfo {
    pub native_api: u32,
    pub capable_passthrough: u32,
    pub capable_direct_io_allow_mmap: u32,
    pub capable_killpriv_v2: u32,
    pub want_writeback: u32,
    pub want_splice_read: u32,
    pub want_killpriv_v2: u32,
    pub proto_major: u32,
    pub proto_minor: u32,
    pub capable_writeback: u32,
}

/// What fpio changes in the connection's wants.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnChange {
    pub want_passthrough: u32,
    pub stack_depth: u32,
    pub want_direct_io_allow_mmap: u32,
    pub want_killpriv_v2: u32,
    pub drop_writeback: u32,
    pub drop_killpriv: u32,
    pub drop_killpriv_v2: u32,
    pub drop_splice_read: u32,
}

extern "C" {
    fn fpioglue_session_fd(se: *mut fuse_session) -> c_int;
    fn fpioglue_set_hooks(h: *const Hooks);
    fn fpioglue_install_io(se: *mut fuse_session) -> c_int;
    fn fpioglue_conn_read(conn: *const fuse_conn_info, out: *mut ConnInfo);
    fn fpioglue_conn_apply(conn: *mut fuse_conn_info, change: *const ConnChange);
    fn fpioglue_req_is_uring(req: fuse_req_t) -> c_int;
    fn fpioglue_reply_open_plain(req: fuse_req_t, fi: *const fuse_file_info) -> c_int;
    fn fpioglue_reply_create_plain(
        req: fuse_req_t,
        e: *const fuse_entry_param,
        fi: *const fuse_file_info,
    ) -> c_int;
    fn fpioglue_read_fi(fi: *const fuse_file_info, out: *mut GlueFi);
    fn fpioglue_read_entry(e: *const fuse_entry_param, out: *mut GlueEntry);
    fn fpioglue_write_fi(fi: *mut fuse_file_info, set: *const FiSet);
    fn fpioglue_context_session() -> *mut fuse_session;
    fn fpioglue_cfg_take(cfg: *mut fuse_config, out: *mut CacheOptions, clear: c_int);
    fn fpioglue_reply_buf(req: fuse_req_t, buf: *const c_void, len: usize) -> c_int;
    fn fpioglue_reply_err(req: fuse_req_t, err: c_int) -> c_int;
    fn fpioglue_version_built() -> u32;
    fn fpioglue_version_runtime() -> u32;
}

/// # Safety
/// `se` must be a live libfuse session.
pub unsafe fn session_fd(se: *mut fuse_session) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_session_fd(se) }
}

/// Sets the io callbacks every session shares; call once, before the first
/// `install_io`.
pub fn set_hooks(h: &Hooks) {
    // SAFETY: the glue copies the table.
    unsafe { fpioglue_set_hooks(h) }
}

/// Wraps the session's io; -ENOTSUP where libfuse refuses custom io.
/// # Safety
/// `se` must be a live, mounted libfuse session whose loop has not started.
pub unsafe fn install_io(se: *mut fuse_session) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_install_io(se) }
}

/// # Safety
/// `conn` must be the connection libfuse passed to the server's init().
pub unsafe fn conn_read(conn: *const fuse_conn_info) -> ConnInfo {
    let mut info = ConnInfo::default();
    // SAFETY: per this function's contract; info is a valid output.
    unsafe { fpioglue_conn_read(conn, &mut info) };
    info
}

/// # Safety
/// `conn` must be the connection libfuse passed to the server's init(),
/// changed only on the thread running init().
pub unsafe fn conn_apply(conn: *mut fuse_conn_info, change: &ConnChange) {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_conn_apply(conn, change) }
}

/// Whether libfuse delivered `req` over io_uring (false before libfuse 3.18).
/// # Safety
/// `req` must be a live libfuse request.
pub unsafe fn req_is_uring(req: fuse_req_t) -> bool {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_req_is_uring(req) != 0 }
}

/// fuse_reply_open(req, fi), unchanged.
/// # Safety
/// `req` must be unanswered and `fi` valid.
pub unsafe fn reply_open_plain(req: fuse_req_t, fi: *const fuse_file_info) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_reply_open_plain(req, fi) }
}

/// fuse_reply_create(req, e, fi), unchanged.
/// # Safety
/// `req` must be unanswered; `e` and `fi` valid.
pub unsafe fn reply_create_plain(
    req: fuse_req_t,
    e: *const fuse_entry_param,
    fi: *const fuse_file_info,
) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_reply_create_plain(req, e, fi) }
}

/// # Safety
/// `fi` must point to a valid `struct fuse_file_info`.
pub unsafe fn read_fi(fi: *const fuse_file_info) -> FileInfo {
    let mut g = GlueFi::default();
    // SAFETY: per this function's contract; g is a valid output.
    unsafe { fpioglue_read_fi(fi, &mut g) };
    FileInfo {
        fh: g.fh,
        flags: g.flags,
        backing_id: g.backing_id,
        direct_io: g.direct_io != 0,
        keep_cache: g.keep_cache != 0,
        nonseekable: g.nonseekable != 0,
        noflush: g.noflush != 0,
        parallel_direct_writes: g.parallel_direct_writes != 0,
        cache_readdir: g.cache_readdir != 0,
    }
}

/// # Safety
/// `fi` must point to the `struct fuse_file_info` of an open being handled.
pub unsafe fn write_fi(fi: *mut fuse_file_info, set: &FiSet) {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_write_fi(fi, set) }
}

/// The session of the high-level `struct fuse` whose request or init() the
/// calling thread runs (null elsewhere).
/// # Safety
/// A high-level server must have created a `struct fuse` in this process
/// (before that, libfuse's context key does not exist).
pub unsafe fn context_session() -> *mut fuse_session {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_context_session() }
}

/// Reads the high-level cache options; with `clear`, turns them off.
/// # Safety
/// `cfg` must be the configuration libfuse passed to the server's init().
pub unsafe fn cfg_take(cfg: *mut fuse_config, clear: bool) -> CacheOptions {
    let mut out = CacheOptions::default();
    // SAFETY: per this function's contract; out is a valid output.
    unsafe { fpioglue_cfg_take(cfg, &mut out, c_int::from(clear)) };
    out
}

/// # Safety
/// `e` must point to a valid `struct fuse_entry_param`.
pub unsafe fn read_entry(e: *const fuse_entry_param) -> Entry {
    let mut g = std::mem::MaybeUninit::<GlueEntry>::zeroed();
    // SAFETY: per this function's contract; the glue fills every field of g,
    // which was zeroed (a valid GlueEntry) to begin with.
    let g = unsafe {
        fpioglue_read_entry(e, g.as_mut_ptr());
        g.assume_init()
    };
    let st = &g.attr;
    Entry {
        ino: g.ino,
        generation: g.generation,
        attr_timeout: g.attr_timeout,
        entry_timeout: g.entry_timeout,
        attr: Attr {
            ino: st.st_ino,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: st.st_atime,
            mtime: st.st_mtime,
            ctime: st.st_ctime,
            atimensec: st.st_atime_nsec as u32,
            mtimensec: st.st_mtime_nsec as u32,
            ctimensec: st.st_ctime_nsec as u32,
            mode: st.st_mode,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
        },
    }
}

/// Sends `buf` as the reply to `req`; libfuse frees `req` either way.
/// # Safety
/// `req` must be an unanswered libfuse request.
pub unsafe fn reply_buf(req: fuse_req_t, buf: &[u8]) -> c_int {
    // SAFETY: per this function's contract; buf is valid for its length.
    unsafe { fpioglue_reply_buf(req, buf.as_ptr().cast(), buf.len()) }
}

/// # Safety
/// `req` must be an unanswered libfuse request.
pub unsafe fn reply_err(req: fuse_req_t, err: c_int) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { fpioglue_reply_err(req, err) }
}

pub fn version_built() -> u32 {
    // SAFETY: returns a constant.
    unsafe { fpioglue_version_built() }
}

/// The loaded libfuse as major*10000 + minor*100 + patch (0: unknown).
pub fn version_runtime_full() -> u32 {
    // SAFETY: parses libfuse's static version string.
    unsafe { fpioglue_version_runtime() }
}

/// The loaded libfuse as major*100 + minor (0: unknown).
pub fn version_runtime() -> u32 {
    version_runtime_full() / 100
}
