//! The Rust side of src/glue/fpio_glue.c: libfuse's types stay opaque here,
//! and the glue flattens what fpio reads out of them.

#![allow(non_camel_case_types)]

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

extern "C" {
    fn fpioglue_session_fd(se: *mut fuse_session) -> c_int;
    fn fpioglue_install_io(se: *mut fuse_session, rd: OnReadFn, wv: OnWritevFn, aw: AfterWriteFn) -> c_int;
    fn fpioglue_read_fi(fi: *const fuse_file_info, out: *mut GlueFi);
    fn fpioglue_read_entry(e: *const fuse_entry_param, out: *mut GlueEntry);
    fn fpioglue_reply_buf(req: fuse_req_t, buf: *const c_void, len: usize) -> c_int;
    fn fpioglue_reply_err(req: fuse_req_t, err: c_int) -> c_int;
    fn fpioglue_version_built() -> u32;
    fn fpioglue_version_runtime() -> u32;
}

/// # Safety
/// `se` must be a live libfuse session.
pub unsafe fn session_fd(se: *mut fuse_session) -> c_int {
    fpioglue_session_fd(se)
}

/// # Safety
/// `se` must be a live, mounted libfuse session whose loop has not started.
pub unsafe fn install_io(se: *mut fuse_session, rd: OnReadFn, wv: OnWritevFn, aw: AfterWriteFn) -> c_int {
    fpioglue_install_io(se, rd, wv, aw)
}

/// # Safety
/// `fi` must point to a valid `struct fuse_file_info`.
pub unsafe fn read_fi(fi: *const fuse_file_info) -> FileInfo {
    let mut g = GlueFi::default();
    fpioglue_read_fi(fi, &mut g);
    FileInfo {
        fh: g.fh,
        flags: g.flags,
        backing_id: g.backing_id,
        direct_io: g.direct_io != 0,
        keep_cache: g.keep_cache != 0,
        nonseekable: g.nonseekable != 0,
        noflush: g.noflush != 0,
    }
}

/// # Safety
/// `e` must point to a valid `struct fuse_entry_param`.
pub unsafe fn read_entry(e: *const fuse_entry_param) -> Entry {
    let mut g = std::mem::MaybeUninit::<GlueEntry>::zeroed();
    fpioglue_read_entry(e, g.as_mut_ptr());
    let g = g.assume_init();
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
    fpioglue_reply_buf(req, buf.as_ptr().cast(), buf.len())
}

/// # Safety
/// `req` must be an unanswered libfuse request.
pub unsafe fn reply_err(req: fuse_req_t, err: c_int) -> c_int {
    fpioglue_reply_err(req, err)
}

pub fn version_built() -> u32 {
    // SAFETY: returns a constant.
    unsafe { fpioglue_version_built() }
}

pub fn version_runtime() -> u32 {
    // SAFETY: parses libfuse's static version string.
    unsafe { fpioglue_version_runtime() }
}
