//! A session: fpio attached to one mounted libfuse session. It owns the
//! read/writev wrappers libfuse calls for every request and reply (counting
//! requests, patching the INIT reply), the backing registry, and the counters.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bitflags::bitflags;
use once_cell::sync::Lazy;

use crate::counters::{Counter, Counters};
use crate::fault::Faults;
use crate::glue::{self, fuse_req_t, fuse_session};
use crate::negotiate::{negotiate, Policy, Status};
use crate::proto::{
    self, opcode, InHeader, InitOffer, OutHeader, IN_HEADER_LEN, MAX_STACK_DEPTH, OUT_HEADER_LEN,
};
use crate::registry::{BackingDevice, FallbackKind, Grant, OpenRequest, Registry, Source, Ticket};
use crate::reply::{self, FileInfo};
use crate::sys;

bitflags! {
    /// `FPIO_SESSION_*`
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SessionFlags: u32 {
        const NO_PASSTHROUGH = 1 << 0;
        const FALLBACK_CACHED = 1 << 1;
        const DROP_WRITEBACK = 1 << 2;
        const STACK_DEPTH_2 = 1 << 3;
        const KILLPRIV_V2 = 1 << 4;
    }
}

/// Backing ids from the FUSE device, through fpio's own dup of its fd (so a
/// session freed after fuse_session_destroy() never ioctls a reused fd number).
struct Device {
    fd: RawFd,
    faults: Faults,
}

impl BackingDevice for Device {
    fn open(&self, fd: RawFd) -> Result<u32, i32> {
        self.faults.register()?;
        // The kernel captures the caller's credentials here and uses them for
        // every passthrough write. Without CAP_FSETID in them, the backing
        // filesystem clears set-uid/set-gid on each write as it would for an
        // unprivileged writer, whatever the FUSE inode's cached mode says.
        sys::without_effective_cap(sys::CAP_FSETID, || sys::backing_open(self.fd, fd))
    }

    fn close(&self, id: u32) -> Result<(), i32> {
        sys::backing_close(self.fd, id)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.fd >= 0 {
            sys::close(self.fd);
        }
    }
}

pub struct Session {
    se: usize,
    main_fd: RawFd,
    /// fpio's dup of the FUSE device fd (owned by the registry's Device).
    dev_fd: RawFd,
    /// libfuse passes the server's userdata to the io callbacks; it is bound
    /// on the first call on `main_fd` and then also finds clone_fd channels.
    userdata: AtomicUsize,
    userdata_bound: AtomicBool,
    flags: SessionFlags,
    has_cap_sys_admin: bool,
    status: AtomicU32,
    offer: Mutex<Option<InitOffer>>,
    /// `unique` of the INIT request whose reply is still to be patched (0: none).
    init_unique: AtomicU64,
    last_register_errno: AtomicU32,
    faults: Faults,
    pub counters: Counters,
    registry: Registry,
}

/// How many sessions wait for their INIT reply: zero on the hot path.
static INIT_PENDING: AtomicUsize = AtomicUsize::new(0);

/// Live sessions, for the io callbacks (which get only fd and userdata).
static SESSIONS: Lazy<RwLock<Vec<Arc<Session>>>> = Lazy::new(|| RwLock::new(Vec::new()));

thread_local! {
    /// The last (fd, userdata) -> session match of this thread: one lookup per
    /// request would otherwise take the table's lock.
    static LAST: RefCell<Option<(RawFd, usize, Weak<Session>)>> = const { RefCell::new(None) };
    /// Whether the request this thread read last carried a kill-suid/sgid marker.
    static KILL_SUIDGID: Cell<bool> = const { Cell::new(false) };
}

#[derive(Debug, PartialEq, Eq)]
pub enum NewError {
    NotMounted,
    AlreadyAttached,
    Io(i32),
}

impl Session {
    /// Attaches to `se`: installs the io wrappers.
    ///
    /// # Safety
    /// `se` must be a live libfuse session.
    pub unsafe fn attach(se: *mut fuse_session, flags: SessionFlags) -> Result<Arc<Session>, NewError> {
        let mut table = SESSIONS.write().unwrap_or_else(|p| p.into_inner());
        let main_fd = glue::session_fd(se);
        if main_fd < 0 {
            return Err(NewError::NotMounted);
        }
        if table.iter().any(|s| s.se == se as usize && s.main_fd == main_fd) {
            return Err(NewError::AlreadyAttached);
        }
        // An entry with this session's address or fd but not both belongs to
        // a libfuse session that was destroyed without fpio_session_free():
        // its fd number or its memory has been reused. Retire it so it cannot
        // capture this session's requests.
        let (stale, kept): (Vec<_>, Vec<_>) = table
            .drain(..)
            .partition(|s| s.se == se as usize || s.main_fd == main_fd);
        *table = kept;
        let dev_fd = sys::dup_cloexec(main_fd).map_err(NewError::Io)?;
        let session = Arc::new(Session::new(se as usize, main_fd, dev_fd, flags));
        let rc = glue::install_io(se, hook_read, hook_writev, hook_after_write);
        if rc < 0 {
            return Err(NewError::Io(-rc));
        }
        table.push(session.clone());
        drop(table);
        for s in stale {
            s.registry.clear(&s.counters);
        }
        Ok(session)
    }

    fn new(se: usize, main_fd: RawFd, dev_fd: RawFd, flags: SessionFlags) -> Session {
        let faults = Faults::from_env();
        Session {
            se,
            main_fd,
            dev_fd,
            userdata: AtomicUsize::new(0),
            userdata_bound: AtomicBool::new(false),
            flags,
            has_cap_sys_admin: sys::has_effective_cap(sys::CAP_SYS_ADMIN),
            status: AtomicU32::new(Status::Pending as u32),
            offer: Mutex::new(None),
            init_unique: AtomicU64::new(0),
            last_register_errno: AtomicU32::new(0),
            faults: faults.clone(),
            counters: Counters::default(),
            registry: Registry::new(Box::new(Device { fd: dev_fd, faults })),
        }
    }

    /// A session attached to nothing (no libfuse session, no device: every
    /// registration fails with EBADF), for tests and fuzzing of the request
    /// and reply bookkeeping. Not part of the C API.
    #[doc(hidden)]
    pub fn unattached(flags: SessionFlags) -> Session {
        Session::new(0, -1, -1, flags)
    }

    /// What the read wrapper does with one request (tests and fuzzing).
    #[doc(hidden)]
    pub fn inspect_request(&self, buf: &[u8]) {
        self.on_request(buf)
    }

    /// What the writev wrapper does with one reply (tests and fuzzing).
    #[doc(hidden)]
    pub fn inspect_reply(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        self.patch_init_reply(parts)
    }

    /// Detaches: the io wrappers turn into plain read/writev for this
    /// session, and every backing id fpio registered is closed.
    pub fn detach(self: &Arc<Self>) {
        let mut table = SESSIONS.write().unwrap_or_else(|p| p.into_inner());
        table.retain(|s| !Arc::ptr_eq(s, self));
        drop(table);
        self.init_pending_done();
        self.registry.clear(&self.counters);
    }

    pub fn status(&self) -> Status {
        Status::from_raw(self.status.load(Ordering::Acquire)).unwrap_or(Status::NotNegotiated)
    }

    pub fn offer(&self) -> Option<InitOffer> {
        *self.offer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn backing_id(&self, ino: u64) -> Option<u32> {
        self.registry.backing_id(ino)
    }

    fn fallback_default(&self) -> FallbackKind {
        if self.flags.contains(SessionFlags::FALLBACK_CACHED) {
            FallbackKind::Cached
        } else {
            FallbackKind::Direct
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            passthrough: !self.flags.contains(SessionFlags::NO_PASSTHROUGH),
            has_cap_sys_admin: self.has_cap_sys_admin,
            drop_writeback: self.flags.contains(SessionFlags::DROP_WRITEBACK),
            stack_depth: if self.flags.contains(SessionFlags::STACK_DEPTH_2) {
                MAX_STACK_DEPTH
            } else {
                1
            },
            killpriv_v2: self.flags.contains(SessionFlags::KILLPRIV_V2),
        }
    }

    // ---- the io wrappers' work ----

    fn on_request(&self, buf: &[u8]) {
        let Some(h) = InHeader::parse(buf) else { return };
        let body = &buf[IN_HEADER_LEN..];
        self.counters.inc(Counter::ReqTotal);
        KILL_SUIDGID.with(|k| k.set(proto::request_kills_suidgid(&h, body)));
        match h.opcode {
            opcode::READ => self.counters.inc(Counter::ReqRead),
            opcode::WRITE => self.counters.inc(Counter::ReqWrite),
            opcode::GETXATTR => self.counters.inc(Counter::ReqGetxattr),
            opcode::INIT => {
                *self.offer.lock().unwrap_or_else(|p| p.into_inner()) = InitOffer::parse(body);
                if self.init_unique.swap(h.unique, Ordering::AcqRel) == 0 {
                    INIT_PENDING.fetch_add(1, Ordering::AcqRel);
                }
            }
            _ => {}
        }
    }

    /// If `parts` (out header first) is the reply to the INIT request,
    /// returns the message to send instead: patched for passthrough, or None
    /// to send it untouched (the status then says why).
    fn patch_init_reply(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let pending = self.init_unique.load(Ordering::Acquire);
        if pending == 0 {
            return None;
        }
        let out = OutHeader::parse(parts.first()?)?;
        if out.unique != pending {
            return None;
        }
        self.init_pending_done();
        let mut body: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        body.drain(..OUT_HEADER_LEN.min(body.len()));
        let decision = negotiate(self.offer().as_ref(), out.error, &body, &self.policy());
        self.status.store(decision.status as u32, Ordering::Release);
        let patched = decision.patched?;
        let payload = patched.body();
        let header = OutHeader {
            len: (OUT_HEADER_LEN + payload.len()) as u32,
            ..out
        }
        .encode();
        Some([&header[..], payload].concat())
    }

    /// After the patched INIT reply went out: the kernel has processed it.
    fn init_reply_sent(&self, res: isize) {
        let status = if res < 0 {
            Status::NotNegotiated
        } else {
            self.probe()
        };
        self.status.store(status as u32, Ordering::Release);
    }

    fn init_pending_done(&self) {
        if self.init_unique.swap(0, Ordering::AcqRel) != 0 {
            INIT_PENDING.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Right after INIT: can a backing file really be registered? Catches a
    /// kernel that ignored the negotiation, or a missing capability capget()
    /// could not see (user namespaces), so that "live" means live.
    fn probe(&self) -> Status {
        let Ok(fd) = sys::memfd() else { return Status::Live };
        let status = match sys::backing_open(self.dev_fd, fd) {
            Ok(id) => {
                let _ = sys::backing_close(self.dev_fd, id);
                Status::Live
            }
            Err(libc::EPERM) if self.has_cap_sys_admin => Status::NotNegotiated,
            Err(libc::EPERM) => Status::NoCapSysAdmin,
            Err(libc::ENOTTY | libc::EOPNOTSUPP) => Status::KernelLacks,
            Err(_) => Status::Live,
        };
        sys::close(fd);
        status
    }

    // ---- opens ----

    fn source(backing_fd: c_int, fi: &FileInfo) -> Source {
        if fi.backing_id > 0 {
            Source::ServerId(fi.backing_id as u32)
        } else if backing_fd == -1 {
            Source::Declined
        } else {
            Source::Fd(backing_fd)
        }
    }

    fn grant(&self, ino: u64, backing_fd: c_int, fi: &FileInfo) -> (Grant, Option<Ticket>) {
        let req = OpenRequest {
            ino,
            fh: fi.fh,
            access: fi.access(),
            source: Self::source(backing_fd, fi),
            live: self.status() == Status::Live,
            fallback: fi.fallback(self.fallback_default()),
        };
        let (grant, ticket) = self.registry.acquire(&req, &self.counters);
        if let Grant::Fallback(_, Counter::FallbackRegisterFailed, e) = grant {
            self.last_register_errno.store(e as u32, Ordering::Relaxed);
        }
        (grant, ticket)
    }

    /// Answers an OPEN (entry None) or CREATE (entry Some) request.
    /// Returns the open flags sent, or the errno of a reply that failed
    /// (the open is then undone) or of a refused open.
    ///
    /// # Safety
    /// `req` must be an unanswered libfuse request; it is answered on return.
    pub unsafe fn reply_open(
        &self,
        req: fuse_req_t,
        ino: u64,
        backing_fd: c_int,
        fi: &FileInfo,
        entry: Option<&proto::Entry>,
        answered: &Cell<bool>,
    ) -> Result<u32, i32> {
        let (grant, ticket) = self.grant(ino, backing_fd, fi);
        let Some(ticket) = ticket else {
            answered.set(true);
            glue::reply_err(req, libc::EBUSY);
            return Err(libc::EBUSY);
        };
        let (flags, id) = reply::open_flags(grant, fi);
        answered.set(true);
        let rc = if let Err(e) = self.faults.reply() {
            // Test-only: behave as if the kernel had dropped an interrupted open.
            glue::reply_err(req, libc::EINTR);
            -e
        } else if let Some(e) = entry {
            glue::reply_buf(req, &reply::create_reply(e, fi.fh, flags, id))
        } else {
            glue::reply_buf(req, &reply::open_reply(fi.fh, flags, id))
        };
        if rc < 0 {
            self.registry.undo(ticket, &self.counters);
            self.counters.inc(Counter::ReplyFailed);
            return Err(-rc);
        }
        self.counters.inc(match grant {
            Grant::Passthrough(_) => Counter::OpensPassthrough,
            Grant::SharedDirect(_) => Counter::OpensSharedDirect,
            Grant::Fallback(FallbackKind::Direct, ..) => Counter::OpensDirect,
            _ => Counter::OpensCached,
        });
        Ok(flags)
    }

    pub fn release(&self, ino: u64, fh: u64) -> Result<(), i32> {
        self.registry.release(ino, fh, &self.counters)
    }

    /// Low-level registration for servers that build their own replies:
    /// one reference on the inode's shared backing id, released by
    /// `backing_close`. Errors are the errno passthrough could not be had for.
    pub fn backing_open(&self, ino: u64, fd: c_int) -> Result<u32, i32> {
        let access = sys::access_mode(fd)?;
        let fi = FileInfo {
            fh: MANUAL_FH,
            flags: access,
            ..Default::default()
        };
        let (grant, ticket) = self.grant(ino, fd, &fi);
        let errno = match grant {
            Grant::Passthrough(id) => return Ok(id),
            Grant::Busy => libc::EBUSY,
            Grant::SharedDirect(_) => libc::EACCES,
            Grant::Fallback(_, _, e) => e,
        };
        if let Some(t) = ticket {
            self.registry.undo(t, &self.counters);
        }
        Err(errno)
    }

    pub fn backing_close(&self, ino: u64) -> Result<(), i32> {
        self.registry.release(ino, MANUAL_FH, &self.counters)
    }

    pub fn last_register_errno(&self) -> i32 {
        self.last_register_errno.load(Ordering::Relaxed) as i32
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // An INIT seen but never answered must not keep every reply on the slow path.
        self.init_pending_done();
    }
}

/// The file handle under which low-level references are recorded.
const MANUAL_FH: u64 = u64::MAX;

/// Whether the request this thread is handling carried a kill-suid/sgid
/// marker (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID).
/// libfuse reads and handles a request on the same thread, in both loops.
pub fn current_request_kills_suidgid() -> bool {
    KILL_SUIDGID.with(|k| k.get())
}

/// The first live session `pred` accepts.
pub fn find(pred: impl Fn(&Arc<Session>) -> bool) -> Option<Arc<Session>> {
    SESSIONS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|s| pred(s))
        .cloned()
}

/// Finds the session an io callback belongs to.
fn lookup(fd: RawFd, userdata: usize) -> Option<Arc<Session>> {
    let cached = LAST.with(|l| {
        let l = l.borrow();
        let (cfd, cud, weak) = l.as_ref()?;
        (*cfd == fd && *cud == userdata).then(|| weak.upgrade()).flatten()
    });
    if cached.is_some() {
        return cached;
    }
    let table = SESSIONS.read().unwrap_or_else(|p| p.into_inner());
    let found = table
        .iter()
        .find(|s| {
            if s.main_fd == fd {
                // The first call on the session's own fd tells us its userdata.
                if !s.userdata_bound.swap(true, Ordering::AcqRel) {
                    s.userdata.store(userdata, Ordering::Release);
                }
                return true;
            }
            // A clone_fd channel: same userdata as its session.
            s.userdata_bound.load(Ordering::Acquire) && s.userdata.load(Ordering::Acquire) == userdata
        })
        .cloned()?;
    drop(table);
    LAST.with(|l| *l.borrow_mut() = Some((fd, userdata, Arc::downgrade(&found))));
    Some(found)
}

/// The glue read a request: let its session look at it.
unsafe extern "C" fn hook_read(fd: c_int, buf: *const c_void, len: usize, userdata: *mut c_void) {
    if buf.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        if let Some(s) = lookup(fd, userdata as usize) {
            // SAFETY: the kernel just wrote len bytes into buf.
            s.on_request(std::slice::from_raw_parts(buf as *const u8, len));
        }
    });
}

/// The glue is about to send a reply: only the INIT reply is replaced.
unsafe extern "C" fn hook_writev(
    fd: c_int,
    iov: *const libc::iovec,
    count: c_int,
    userdata: *mut c_void,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> c_int {
    // Every reply passes here; only the one INIT reply needs work.
    if INIT_PENDING.load(Ordering::Acquire) == 0 || iov.is_null() || count <= 0 || out.is_null() {
        return 0;
    }
    let replaced = std::panic::catch_unwind(|| {
        let s = lookup(fd, userdata as usize)?;
        // SAFETY: libfuse passes count valid iovecs.
        let iovs = std::slice::from_raw_parts(iov, count as usize);
        let parts: Vec<&[u8]> = iovs
            .iter()
            .map(|v| {
                if v.iov_base.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
                }
            })
            .collect();
        let msg = s.patch_init_reply(&parts)?;
        (msg.len() <= out_cap).then_some(msg)
    });
    match replaced {
        Ok(Some(msg)) => {
            // SAFETY: the glue gave out_cap bytes at out; msg fits.
            std::ptr::copy_nonoverlapping(msg.as_ptr(), out, msg.len());
            *out_len = msg.len();
            1
        }
        _ => 0,
    }
}

unsafe extern "C" fn hook_after_write(fd: c_int, userdata: *mut c_void, res: isize) {
    let _ = std::panic::catch_unwind(|| {
        if let Some(s) = lookup(fd, userdata as usize) {
            s.init_reply_sent(res);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::init_flag;

    fn request(opcode: u32, unique: u64, body: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; IN_HEADER_LEN];
        b[0..4].copy_from_slice(&((IN_HEADER_LEN + body.len()) as u32).to_ne_bytes());
        b[4..8].copy_from_slice(&opcode.to_ne_bytes());
        b[8..16].copy_from_slice(&unique.to_ne_bytes());
        b.extend_from_slice(body);
        b
    }

    fn init_body(major: u32, minor: u32, flags: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(&major.to_ne_bytes());
        b[4..8].copy_from_slice(&minor.to_ne_bytes());
        b[12..16].copy_from_slice(&((flags as u32) | init_flag::INIT_EXT as u32).to_ne_bytes());
        b[16..20].copy_from_slice(&((flags >> 32) as u32).to_ne_bytes());
        b
    }

    fn out(unique: u64, error: i32, body_len: usize) -> Vec<u8> {
        OutHeader {
            len: (OUT_HEADER_LEN + body_len) as u32,
            error,
            unique,
        }
        .encode()
        .to_vec()
    }

    #[test]
    fn unknown_opcodes_and_other_replies_pass_untouched() {
        let s = Session::unattached(SessionFlags::empty());
        s.inspect_request(&request(9999, 5, &[1, 2, 3]));
        s.inspect_request(&request(opcode::READ, 6, &[0; 40]));
        assert_eq!(s.counters.get(Counter::ReqTotal), 2);
        assert_eq!(s.counters.get(Counter::ReqRead), 1);
        assert_eq!(s.inspect_reply(&[&out(5, 0, 3), &[1, 2, 3]]), None);
        assert_eq!(s.status(), Status::Pending);
    }

    #[test]
    fn truncated_requests_are_ignored() {
        let s = Session::unattached(SessionFlags::empty());
        let r = request(opcode::INIT, 1, &init_body(7, 45, init_flag::PASSTHROUGH));
        for n in 0..IN_HEADER_LEN {
            s.inspect_request(&r[..n]);
        }
        assert_eq!(s.counters.get(Counter::ReqTotal), 0);
        // A header with a cut INIT body: recorded as INIT, no usable offer.
        s.inspect_request(&r[..IN_HEADER_LEN + 4]);
        assert_eq!(s.offer(), None);
        let reply = init_body(7, 31, 0);
        assert_eq!(s.inspect_reply(&[&out(1, 0, reply.len()), &reply]), None);
        assert_eq!(s.status(), Status::NotNegotiated);
    }

    #[test]
    fn init_reply_is_patched_once_and_only_for_its_unique() {
        let s = Session::unattached(SessionFlags::empty());
        s.inspect_request(&request(
            opcode::INIT,
            42,
            &init_body(7, 45, init_flag::PASSTHROUGH),
        ));
        let reply = init_body(7, 31, 0);
        assert_eq!(s.inspect_reply(&[&out(41, 0, reply.len()), &reply]), None);
        // The server's reply split over several iovecs, as libfuse may send it.
        let msg = s
            .inspect_reply(&[&out(42, 0, reply.len()), &reply[..10], &reply[10..]])
            .unwrap();
        let h = OutHeader::parse(&msg).unwrap();
        assert_eq!((h.unique, h.len as usize), (42, msg.len()));
        let patched = proto::InitReply::parse(&msg[OUT_HEADER_LEN..]).unwrap();
        assert_ne!(patched.flags() & init_flag::PASSTHROUGH, 0);
        assert_eq!(
            s.inspect_reply(&[&out(42, 0, reply.len()), &reply]),
            None,
            "only once"
        );
    }

    #[test]
    fn odd_versions_and_oversized_replies() {
        let s = Session::unattached(SessionFlags::empty());
        s.inspect_request(&request(
            opcode::INIT,
            1,
            &init_body(8, 0, init_flag::PASSTHROUGH),
        ));
        let reply = init_body(8, 0, 0);
        // A major-version probe reply is left alone.
        assert_eq!(s.inspect_reply(&[&out(1, 0, reply.len()), &reply]), None);
        let s = Session::unattached(SessionFlags::empty());
        s.inspect_request(&request(
            opcode::INIT,
            2,
            &init_body(7, 45, init_flag::PASSTHROUGH),
        ));
        let mut big = init_body(7, 31, 0);
        big.resize(4096, 0xff);
        assert_eq!(s.inspect_reply(&[&out(2, 0, big.len()), &big]), None);
        assert_eq!(s.status(), Status::NotNegotiated);
    }

    #[test]
    fn kill_marker_follows_the_last_request_on_this_thread() {
        let s = Session::unattached(SessionFlags::empty());
        let mut w = vec![0u8; 40];
        w[20..24].copy_from_slice(&proto::kill_flag::WRITE_KILL_SUIDGID.to_ne_bytes());
        s.inspect_request(&request(opcode::WRITE, 1, &w));
        assert!(current_request_kills_suidgid());
        s.inspect_request(&request(opcode::READ, 2, &[0; 40]));
        assert!(!current_request_kills_suidgid());
    }
}
