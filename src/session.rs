//! A session: fpio attached to one mounted libfuse session. It owns the
//! backing registry and the counters, negotiates passthrough (in the INIT
//! reply on libfuse 3.14, through the server's `struct fuse_conn_info` on
//! 3.17+), and, where libfuse lets it wrap the session's io, looks at every
//! request (counting them, noting set-uid kill markers).

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bitflags::bitflags;
use once_cell::sync::Lazy;

use crate::counters::{Counter, Counters};
use crate::fault::Faults;
use crate::glue::{
    self, fuse_config, fuse_conn_info, fuse_req_t, fuse_session, CacheOptions, ConnChange, FiSet,
};
use crate::highlevel::{self, HighLevel};
use crate::iomode::OpenFlags;
use crate::log;
use crate::negotiate::{negotiate, Policy, Status};
use crate::proto::{
    self, opcode, InHeader, InitOffer, OutHeader, IN_HEADER_LEN, MAX_STACK_DEPTH, OUT_HEADER_LEN,
};
use crate::registry::{
    self as registry, BackingDevice, FallbackKind, Grant, Offered, OpenRequest, Registry, Source, Ticket,
};
use crate::reply::{self, FileInfo};
use crate::sys;

bitflags! {
    /// `FPIO_SESSION_*`
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SessionFlags: u32 {
        const NO_PASSTHROUGH = 1 << 0;
        const STACK_DEPTH_2 = 1 << 3;
        const KILLPRIV_V2 = 1 << 4;
    }
}

/// How requests reach the server (`FPIO_TRANSPORT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Transport {
    Unknown = 0,
    Device = 1,
    IoUring = 2,
}

/// Backing ids from the FUSE device, through fpio's own dup of its fd (so a
/// session freed after fuse_session_destroy() never ioctls a reused fd number).
struct Device {
    fd: AtomicI32,
    faults: Faults,
}

impl BackingDevice for Device {
    fn open(&self, fd: RawFd) -> Result<u32, i32> {
        self.faults.register()?;
        // The kernel captures the caller's credentials here and uses them for
        // every passthrough write. Without CAP_FSETID in them, the backing
        // filesystem clears set-uid/set-gid on each write as it would for an
        // unprivileged writer, whatever the FUSE inode's cached mode says.
        let dev = self.fd.load(Ordering::Acquire);
        sys::without_effective_cap(sys::CAP_FSETID, || sys::backing_open(dev, fd))
    }

    fn close(&self, id: u32) -> Result<(), i32> {
        sys::backing_close(self.fd.load(Ordering::Acquire), id)
    }

    fn shutdown(&self) {
        let fd = self.fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            sys::close(fd);
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub struct Session {
    se: usize,
    main_fd: RawFd,
    /// fpio's dup of the FUSE device fd (owned by the registry's Device).
    dev_fd: RawFd,
    /// The channels (main fd, clone_fd clones) the io wrappers tied to this session.
    channels: Mutex<Vec<RawFd>>,
    /// libfuse passes the server's userdata to the io callbacks.
    userdata: AtomicUsize,
    userdata_bound: AtomicBool,
    flags: SessionFlags,
    has_cap_sys_admin: bool,
    /// libfuse negotiates passthrough itself (3.17+): fpio asks through conn.
    native_api: bool,
    /// fpio wraps the session's io (refused by libfuse 3.18.3+ by default).
    wire: bool,
    status: AtomicU32,
    init_called: AtomicBool,
    /// Native negotiation: fpio asked libfuse for passthrough in init().
    asked_passthrough: AtomicBool,
    /// Native negotiation: what a backing registration showed at the first open.
    proven: OnceLock<Status>,
    /// The server's init() kept writeback caching (wire negotiation honours it).
    drop_writeback: AtomicBool,
    /// Requests fpio could not look at: spliced, or on a channel it could not tie here.
    unseen_requests: AtomicBool,
    transport: AtomicU32,
    offer: Mutex<Option<InitOffer>>,
    /// `unique` of the INIT request whose reply is still to be patched (0: none).
    init_unique: AtomicU64,
    last_register_errno: AtomicU32,
    /// fpio_session_free() ran: dev_fd is closed.
    detached: AtomicBool,
    /// Fallback reasons already logged (bit per counter).
    logged: AtomicU64,
    faults: Faults,
    pub counters: Counters,
    registry: Registry,
    /// Set when a high-level (fuse.h) server attached through fpio_fuse_init().
    high_level: OnceLock<HighLevel>,
}

/// How many sessions wait for their INIT reply: zero on the hot path.
static INIT_PENDING: AtomicUsize = AtomicUsize::new(0);

/// Live sessions. Readers cache their last match per thread and revalidate it
/// against `GENERATION`, which changes whenever the table does, so the hot
/// paths (every C call, every request) take no lock.
static SESSIONS: Lazy<RwLock<Vec<Arc<Session>>>> = Lazy::new(|| RwLock::new(Vec::new()));
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Whether a high-level server ever attached: until then fpio never asks
/// libfuse for the thread's `struct fuse` context (whose key would not exist).
static HIGH_LEVEL_SEEN: AtomicBool = AtomicBool::new(false);
/// `init_unique` of a session whose INIT request fpio did not see (a
/// high-level server on libfuse 3.14 attaches inside init()): the next reply
/// on the thread running init() is the INIT reply.
const INIT_REPLY_NEXT: u64 = u64::MAX;

/// A handle's session, under the table generation it was found in.
type HandleMatch = (usize, u64, Arc<Session>);
/// A channel's (fd, userdata) session, under the table generation it was found in.
type ChannelMatch = (RawFd, usize, u64, Arc<Session>);

thread_local! {
    /// The last handle -> session match of this thread.
    static LAST_HANDLE: RefCell<Option<HandleMatch>> = const { RefCell::new(None) };
    /// The last (fd, userdata) -> session match of this thread.
    static LAST_CHANNEL: RefCell<Option<ChannelMatch>> = const { RefCell::new(None) };
    /// The last libfuse session -> high-level session match of this thread.
    static LAST_FUSE: RefCell<Option<HandleMatch>> = const { RefCell::new(None) };
    /// The OPEN or CREATE request this thread is handling (session, unique),
    /// as read through fpio's io wrapper; None for any other request.
    static CURRENT_OPEN: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
    /// A high-level open's reply to patch on its way out (libfuse 3.14).
    static PENDING_OPEN: Cell<Option<OpenPatch>> = const { Cell::new(None) };
    /// The counter of the open whose patched reply was just written.
    static REPLACED_OPEN: Cell<Option<Counter>> = const { Cell::new(None) };
    /// The session whose INIT reply this thread sends next (INIT_REPLY_NEXT).
    static INIT_THREAD: Cell<usize> = const { Cell::new(0) };
    /// Whether the request this thread read last carried a kill-suid/sgid marker.
    static KILL_SUIDGID: Cell<bool> = const { Cell::new(false) };
    /// An INIT read on a channel no session knows yet (libfuse 3.14 reads it
    /// on a clone_fd clone): claimed by fpio_session_init() on this thread.
    static UNCLAIMED_INIT: RefCell<Option<UnclaimedInit>> = const { RefCell::new(None) };
}

/// What a high-level open's reply must say, where libfuse cannot say it
/// (3.14 has no backing id in `struct fuse_file_info`).
#[derive(Clone, Copy, Debug)]
struct OpenPatch {
    session: usize,
    unique: u64,
    flags: u32,
    backing_id: i32,
    counted: Counter,
}

struct UnclaimedInit {
    fd: RawFd,
    userdata: usize,
    unique: u64,
    offer: Option<InitOffer>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NewError {
    NotMounted,
    AlreadyAttached,
    Io(i32),
}

fn table_changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

impl Session {
    /// Attaches to `se`: wraps its io where libfuse allows it.
    ///
    /// # Safety
    /// `se` must be a live libfuse session.
    pub unsafe fn attach(se: *mut fuse_session, flags: SessionFlags) -> Result<Arc<Session>, NewError> {
        // SAFETY: per this function's contract.
        unsafe { Self::attach_as(se, flags, false) }
    }

    /// Attaches to the session of a high-level server from its init(): its
    /// loop runs already. libfuse 3.14 lets fpio wrap the io even now (the
    /// INIT reply, sent after init() returns, is the first to pass it);
    /// 3.17+ negotiates natively and needs no wrapping.
    ///
    /// # Safety
    /// `se` must be the live session whose init() the calling thread runs.
    pub unsafe fn attach_high_level(
        se: *mut fuse_session,
        flags: SessionFlags,
        conn: *mut fuse_conn_info,
        cfg: *mut fuse_config,
    ) -> Result<(Arc<Session>, bool), NewError> {
        // SAFETY: per this function's contract.
        let s = unsafe { Self::attach_as(se, flags, true) }?;
        HIGH_LEVEL_SEEN.store(true, Ordering::Release);
        if !s.native_api && s.offer().is_none() {
            // The INIT request went by before fpio wrapped the io: what the
            // kernel offered, from its protocol version (7.40 brought
            // passthrough, 7.39 shared mmap of direct-io files). An offer the
            // kernel did not make is harmless: it ignores such reply flags,
            // and the probe after INIT decides "live".
            // SAFETY: conn is init()'s connection (this function's contract).
            let info = unsafe { glue::conn_read(conn) };
            *s.offer.lock().unwrap_or_else(|p| p.into_inner()) = Some(InitOffer::from_capable(
                info.proto_major,
                info.proto_minor,
                info.proto_minor >= 40,
                info.proto_minor >= 39,
                false,
                info.capable_writeback != 0,
            ));
        }
        // SAFETY: conn is init()'s connection, on its thread.
        let live = unsafe { s.init(conn) };
        if live && !s.native_api {
            // A spliced request passes fpio's wrapper unread, and an open whose
            // request fpio cannot read gets no passthrough on 3.14: no splice
            // reads where passthrough can be live (the data of passthrough opens
            // never reaches the server anyway).
            let change = ConnChange {
                drop_splice_read: 1,
                ..ConnChange::default()
            };
            // SAFETY: as above.
            unsafe { glue::conn_apply(conn, &change) };
            s.unseen_requests.store(false, Ordering::Relaxed);
        }
        // SAFETY: cfg is init()'s configuration (this function's contract).
        let taken = unsafe { glue::cfg_take(cfg, live) };
        let _ = s
            .high_level
            .set(HighLevel::new(if live { taken } else { CacheOptions::default() }));
        if !s.native_api {
            INIT_THREAD.with(|t| t.set(Arc::as_ptr(&s) as usize));
            if s.init_unique.swap(INIT_REPLY_NEXT, Ordering::AcqRel) == 0 {
                INIT_PENDING.fetch_add(1, Ordering::AcqRel);
            }
        }
        log::attached(&format!("high-level server, {}", s.describe()));
        Ok((s, live))
    }

    /// # Safety
    /// `se` must be a live libfuse session.
    unsafe fn attach_as(
        se: *mut fuse_session,
        flags: SessionFlags,
        high_level: bool,
    ) -> Result<Arc<Session>, NewError> {
        crate::glue::hooks::install_once();
        let mut table = SESSIONS.write().unwrap_or_else(|p| p.into_inner());
        // SAFETY: per this function's contract.
        let main_fd = unsafe { glue::session_fd(se) };
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
        table_changed();
        let retire = |stale: Vec<Arc<Session>>| {
            for s in stale {
                s.init_pending_done();
                s.detached.store(true, Ordering::Release);
                s.registry.shutdown(&s.counters);
            }
        };
        let dev_fd = match sys::dup_cloexec(main_fd) {
            Ok(fd) => fd,
            Err(e) => {
                drop(table);
                retire(stale);
                return Err(NewError::Io(e));
            }
        };
        let native_api = glue::version_built() >= 317;
        // libfuse 3.18.3 refuses custom io unless built to allow it, and says
        // so on stderr: fpio does not ask there (it negotiates natively).
        let refuses_custom_io = native_api && glue::version_runtime_full() >= 31803;
        let installed = if refuses_custom_io || (high_level && native_api) {
            -libc::ENOTSUP
        } else {
            // SAFETY: se is live and mounted; the loop has not started.
            unsafe { glue::install_io(se) }
        };
        let wire = match installed {
            0 => true,
            // libfuse refuses custom io (3.18.3+ by default): negotiate
            // natively and run without looking at requests.
            rc if rc == -libc::ENOTSUP && native_api => false,
            rc => {
                sys::close(dev_fd);
                drop(table);
                retire(stale);
                return Err(NewError::Io(-rc));
            }
        };
        let session = Arc::new(Session::new(
            se as usize,
            main_fd,
            dev_fd,
            flags,
            native_api,
            wire,
        ));
        table.push(session.clone());
        table_changed();
        drop(table);
        retire(stale);
        if !high_level {
            log::attached(&session.describe());
        }
        if log::enabled() {
            crate::glue::hooks::log_counters_at_exit_once();
        }
        Ok(session)
    }

    fn new(
        se: usize,
        main_fd: RawFd,
        dev_fd: RawFd,
        flags: SessionFlags,
        native_api: bool,
        wire: bool,
    ) -> Session {
        let faults = Faults::from_env();
        Session {
            se,
            main_fd,
            dev_fd,
            channels: Mutex::new(vec![main_fd]),
            userdata: AtomicUsize::new(0),
            userdata_bound: AtomicBool::new(false),
            flags,
            has_cap_sys_admin: sys::has_effective_cap(sys::CAP_SYS_ADMIN),
            native_api,
            wire,
            status: AtomicU32::new(Status::Pending as u32),
            init_called: AtomicBool::new(false),
            asked_passthrough: AtomicBool::new(false),
            proven: OnceLock::new(),
            drop_writeback: AtomicBool::new(false),
            unseen_requests: AtomicBool::new(false),
            transport: AtomicU32::new(Transport::Unknown as u32),
            offer: Mutex::new(None),
            init_unique: AtomicU64::new(0),
            last_register_errno: AtomicU32::new(0),
            detached: AtomicBool::new(false),
            logged: AtomicU64::new(0),
            faults: faults.clone(),
            counters: Counters::default(),
            registry: Registry::new(Box::new(Device {
                fd: AtomicI32::new(dev_fd),
                faults,
            })),
            high_level: OnceLock::new(),
        }
    }

    /// A session attached to nothing (no libfuse session, no device: every
    /// registration fails with EBADF), for tests and fuzzing of the request
    /// and reply bookkeeping. Not part of the C API.
    #[doc(hidden)]
    pub fn unattached(flags: SessionFlags) -> Session {
        Session::new(0, -1, -1, flags, false, true)
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
        table_changed();
        drop(table);
        self.init_pending_done();
        self.detached.store(true, Ordering::Release);
        // Other threads may still cache this Arc (until they see the new
        // generation), so the device fd is closed here, not at drop.
        self.registry.shutdown(&self.counters);
        LAST_HANDLE.with(|l| l.borrow_mut().take());
        LAST_CHANNEL.with(|l| l.borrow_mut().take());
        LAST_FUSE.with(|l| l.borrow_mut().take());
        log::freed(&self.describe(), &self.render_counters());
    }

    pub fn status(&self) -> Status {
        if self.native_api && self.asked_passthrough.load(Ordering::Acquire) && self.proven.get().is_none() {
            // Whether the kernel has answered INIT yet cannot be seen from
            // here: a registration that works proves it; one that fails may
            // only be early, so the first open has the final word.
            if self.probe() == Status::Live {
                let _ = self.proven.set(Status::Live);
                self.set_status(Status::Live);
            }
        }
        Status::from_raw(self.status.load(Ordering::Acquire)).unwrap_or(Status::NotNegotiated)
    }

    fn set_status(&self, status: Status) {
        if self.status.swap(status as u32, Ordering::AcqRel) != status as u32 {
            log::status(status);
        }
    }

    pub fn offer(&self) -> Option<InitOffer> {
        *self.offer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn transport(&self) -> Transport {
        match self.transport.load(Ordering::Relaxed) {
            1 => Transport::Device,
            2 => Transport::IoUring,
            _ => Transport::Unknown,
        }
    }

    /// Whether the request counters count every request: fpio wraps the io,
    /// nothing was spliced or read on a channel it could not place, and
    /// requests do not arrive over io_uring.
    pub fn requests_observed(&self) -> bool {
        self.wire && !self.unseen_requests.load(Ordering::Relaxed) && self.transport() != Transport::IoUring
    }

    pub fn backing_id(&self, ino: u64) -> Option<u32> {
        self.registry.backing_id(ino)
    }

    /// One line on how this session works, for logs.
    pub fn describe(&self) -> String {
        format!(
            "libfuse {}.{}, {} negotiation, {}, {}",
            glue::version_runtime() / 100,
            glue::version_runtime() % 100,
            if self.native_api { "native" } else { "INIT-reply" },
            if !self.wire && self.is_high_level() {
                "no custom io (a high-level server on libfuse 3.17+ needs none): request counters unavailable"
            } else if !self.wire {
                "no custom io (libfuse 3.18.3+): request counters unavailable"
            } else if self.requests_observed() {
                "requests observed through custom io"
            } else {
                "custom io, but requests spliced or over io_uring: request counters unavailable"
            },
            match self.transport() {
                Transport::Unknown => "transport not seen yet",
                Transport::Device => "transport /dev/fuse",
                Transport::IoUring => "transport io_uring",
            }
        )
    }

    /// `name value` lines for every counter (`n/a` for unobserved requests),
    /// then the status.
    pub fn render_counters(&self) -> String {
        let observed = self.requests_observed();
        let mut out = String::new();
        for &c in Counter::ALL {
            if c.is_request() && !observed {
                out.push_str(&format!("{} n/a\n", c.label()));
            } else {
                out.push_str(&format!("{} {}\n", c.label(), self.counters.get(c)));
            }
        }
        out.push_str(&format!(
            "status {}\nregister_errno {}\ntransport {}\n",
            self.status().describe().trim_end_matches('\0'),
            self.last_register_errno(),
            match self.transport() {
                Transport::Unknown => "unknown",
                Transport::Device => "dev",
                Transport::IoUring => "io_uring",
            }
        ));
        out
    }

    fn stack_depth(&self) -> u32 {
        if self.flags.contains(SessionFlags::STACK_DEPTH_2) {
            MAX_STACK_DEPTH
        } else {
            1
        }
    }

    /// KILLPRIV_V2 leaves clearing set-uid to the server, which then must
    /// see the kill markers of every request: only where fpio reads them.
    fn killpriv_v2_safe(&self) -> bool {
        self.flags.contains(SessionFlags::KILLPRIV_V2) && self.wire && !self.native_api
    }

    fn policy(&self) -> Policy {
        Policy {
            passthrough: !self.flags.contains(SessionFlags::NO_PASSTHROUGH),
            has_cap_sys_admin: self.has_cap_sys_admin,
            drop_writeback: self.drop_writeback.load(Ordering::Relaxed),
            stack_depth: self.stack_depth(),
            killpriv_v2: self.killpriv_v2_safe(),
        }
    }

    // ---- the server's init() ----

    /// Called from the server's init() (last): asks libfuse for what
    /// passthrough needs, decides writeback, and says whether passthrough
    /// will be live (a registration at the first open proves it).
    ///
    /// # Safety
    /// `conn` must be the connection libfuse passed to init(), on its thread.
    pub unsafe fn init(&self, conn: *mut fuse_conn_info) -> bool {
        self.init_called.store(true, Ordering::Release);
        if self.wire && !self.native_api {
            self.claim_init();
        }
        // SAFETY: per this function's contract.
        let info = unsafe { glue::conn_read(conn) };
        if self.native_api && self.offer().is_none() {
            // fpio did not see the INIT request (no custom io): what libfuse
            // says the kernel offered, for the flags fpio knows.
            *self.offer.lock().unwrap_or_else(|p| p.into_inner()) = Some(InitOffer::from_capable(
                info.proto_major,
                info.proto_minor,
                info.capable_passthrough != 0,
                info.capable_direct_io_allow_mmap != 0,
                info.capable_killpriv_v2 != 0,
                info.capable_writeback != 0,
            ));
        }
        let kernel_offers = if self.native_api {
            info.capable_passthrough != 0
        } else {
            self.offer()
                .is_some_and(|o| o.flags & proto::init_flag::PASSTHROUGH != 0)
        };
        let verdict = if self.flags.contains(SessionFlags::NO_PASSTHROUGH) {
            Status::Disabled
        } else if !kernel_offers {
            if self.native_api || self.offer().is_some() {
                Status::KernelLacks
            } else {
                Status::NotNegotiated
            }
        } else if !self.has_cap_sys_admin {
            Status::NoCapSysAdmin
        } else {
            Status::Live
        };
        let live = verdict == Status::Live;
        let mut change = ConnChange::default();
        if live {
            // Passthrough wins over a writeback cache the server asked for:
            // the kernel turns passthrough off under writeback.
            change.drop_writeback = info.want_writeback;
            // With KILLPRIV (v1) the kernel leaves clearing set-uid on write to
            // the server, which never sees passthrough writes; the same for
            // KILLPRIV_V2 unless fpio can tell the server about every kill.
            change.drop_killpriv = 1;
            change.drop_killpriv_v2 = u32::from(!self.killpriv_v2_safe());
            self.drop_writeback
                .store(info.want_writeback != 0, Ordering::Relaxed);
            if self.native_api {
                change.want_passthrough = 1;
                change.stack_depth = self.stack_depth();
                self.asked_passthrough.store(true, Ordering::Release);
            }
        }
        if self.native_api {
            change.want_direct_io_allow_mmap = info.capable_direct_io_allow_mmap;
        }
        if info.want_splice_read != 0 && self.wire {
            // Spliced requests pass fpio unseen; say so from the start.
            self.unseen_requests.store(true, Ordering::Relaxed);
        }
        // SAFETY: per this function's contract.
        unsafe { glue::conn_apply(conn, &change) };
        if self.native_api {
            self.set_status(if live { Status::Pending } else { verdict });
        }
        live
    }

    /// libfuse 3.14 read this session's INIT on a channel fpio had not tied
    /// to any session (a clone_fd clone): init() runs on the same thread, so
    /// the INIT this thread read is this session's.
    fn claim_init(&self) {
        let Some(u) = UNCLAIMED_INIT.with(|c| c.borrow_mut().take()) else {
            return;
        };
        if self.offer().is_some() {
            return;
        }
        bind_channel(self, u.fd);
        if !self.userdata_bound.swap(true, Ordering::AcqRel) {
            self.userdata.store(u.userdata, Ordering::Release);
        }
        *self.offer.lock().unwrap_or_else(|p| p.into_inner()) = u.offer;
        if self.init_unique.swap(u.unique, Ordering::AcqRel) == 0 {
            INIT_PENDING.fetch_add(1, Ordering::AcqRel);
        }
    }

    // ---- the io wrappers' work ----

    pub(crate) fn on_request(&self, buf: &[u8]) {
        let Some(h) = InHeader::parse(buf) else { return };
        let body = &buf[IN_HEADER_LEN..];
        self.counters.inc(Counter::ReqTotal);
        let open = matches!(h.opcode, opcode::OPEN | opcode::CREATE);
        CURRENT_OPEN.with(|c| c.set(open.then_some((self as *const Session as usize, h.unique))));
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

    /// A request went into libfuse's pipe by splice, unseen.
    pub(crate) fn on_spliced(&self) {
        self.unseen_requests.store(true, Ordering::Relaxed);
        CURRENT_OPEN.with(|c| c.set(None));
        // The kill marker is unknown: tell a KILLPRIV_V2 server to clear.
        KILL_SUIDGID.with(|k| k.set(true));
    }

    /// If `parts` (out header first) is the reply to the INIT request,
    /// returns the message to send instead: patched for passthrough, or None
    /// to send it untouched (the status then says why).
    pub(crate) fn patch_init_reply(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let pending = self.init_unique.load(Ordering::Acquire);
        if pending == 0 {
            return None;
        }
        let out = OutHeader::parse(parts.first()?)?;
        let me = self as *const Session as usize;
        if out.unique != pending && !(pending == INIT_REPLY_NEXT && INIT_THREAD.with(|t| t.get()) == me) {
            return None;
        }
        INIT_THREAD.with(|t| t.set(0));
        self.init_pending_done();
        let mut body: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        if self.native_api {
            // libfuse negotiated; sending the same bytes through the glue's
            // replacement path only tells fpio when the kernel has them.
            return self.asked_passthrough.load(Ordering::Acquire).then_some(body);
        }
        body.drain(..OUT_HEADER_LEN.min(body.len()));
        let decision = negotiate(self.offer().as_ref(), out.error, &body, &self.policy());
        // Live only once the kernel has taken the reply (after_write).
        self.set_status(if decision.status == Status::Live {
            Status::Pending
        } else {
            decision.status
        });
        let patched = decision.patched?;
        if decision.status == Status::Live {
            self.asked_passthrough.store(true, Ordering::Release);
        }
        let payload = patched.body();
        let header = OutHeader {
            len: (OUT_HEADER_LEN + payload.len()) as u32,
            ..out
        }
        .encode();
        Some([&header[..], payload].concat())
    }

    /// After the patched INIT reply went out: the kernel has processed it.
    pub(crate) fn init_reply_sent(&self, res: isize) {
        if !self.asked_passthrough.load(Ordering::Acquire) {
            return;
        }
        let status = if res < 0 {
            Status::NotNegotiated
        } else {
            self.probe()
        };
        if self.native_api {
            let _ = self.proven.set(status);
        }
        self.set_status(status);
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
        if self.detached.load(Ordering::Acquire) {
            return Status::NotNegotiated; // dev_fd is closed (and its number may be reused)
        }
        let fd = match sys::memfd() {
            Ok(fd) => fd,
            Err(e) => {
                self.last_register_errno.store(e as u32, Ordering::Relaxed);
                return Status::NotNegotiated;
            }
        };
        let status = match sys::backing_open(self.dev_fd, fd) {
            Ok(id) => {
                let _ = sys::backing_close(self.dev_fd, id);
                Status::Live
            }
            Err(e) => {
                self.last_register_errno.store(e as u32, Ordering::Relaxed);
                match e {
                    libc::EPERM if !self.has_cap_sys_admin => Status::NoCapSysAdmin,
                    libc::ENOTTY | libc::EOPNOTSUPP => Status::KernelLacks,
                    _ => Status::NotNegotiated,
                }
            }
        };
        sys::close(fd);
        status
    }

    /// Whether opens may get passthrough now. With native negotiation the
    /// first open proves it (the kernel has answered INIT by then).
    fn live(&self) -> bool {
        if self.native_api && self.asked_passthrough.load(Ordering::Acquire) {
            let status = *self.proven.get_or_init(|| {
                let s = self.probe();
                self.set_status(s);
                s
            });
            return status == Status::Live;
        }
        if self.native_api && !self.init_called.load(Ordering::Acquire) {
            self.set_status(Status::InitNotCalled);
        }
        self.status() == Status::Live
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
            live: self.live(),
            unseen: false,
            fallback: fi.fallback(),
        };
        let (grant, ticket) = self.registry.acquire(&req, &self.counters);
        self.log_fallback(grant);
        (grant, ticket)
    }

    /// Notes why an open got no passthrough (logged once per reason).
    fn log_fallback(&self, grant: Grant) {
        if let Grant::Fallback(_, reason, e) = grant {
            if reason == Counter::FallbackRegisterFailed {
                self.last_register_errno.store(e as u32, Ordering::Relaxed);
            }
            if self.logged.fetch_or(1 << reason as u64, Ordering::Relaxed) & (1 << reason as u64) == 0 {
                log::fallback(reason, e);
            }
        }
    }

    fn note_transport(&self, req: fuse_req_t) {
        self.note_transport_once(|| {
            // SAFETY: req is the live request being answered.
            if unsafe { glue::req_is_uring(req) } {
                Transport::IoUring
            } else {
                Transport::Device
            }
        });
    }

    /// Records (and logs) the transport the first open came by; later opens
    /// cost one load and never ask `which`.
    fn note_transport_once(&self, which: impl FnOnce() -> Transport) {
        if self.transport.load(Ordering::Relaxed) != Transport::Unknown as u32 {
            return;
        }
        if self
            .transport
            .compare_exchange(
                Transport::Unknown as u32,
                which() as u32,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            log::transport(&self.describe());
        }
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
        self.note_transport(req);
        let (grant, ticket) = self.grant(ino, backing_fd, fi);
        let Some(ticket) = ticket else {
            let e = if grant == Grant::Stale {
                libc::ESTALE
            } else {
                libc::EBUSY
            };
            answered.set(true);
            // SAFETY: req is unanswered (this function's contract).
            unsafe { glue::reply_err(req, e) };
            return Err(e);
        };
        let (flags, id) = reply::open_flags(grant, fi);
        // Counted before the reply leaves, so that once the application's
        // open() has returned the counters include it; undone if the reply fails.
        let opened = match grant {
            Grant::Passthrough(_) => Counter::OpensPassthrough,
            Grant::SharedDirect(_) => Counter::OpensSharedDirect,
            Grant::Fallback(FallbackKind::Direct, ..) => Counter::OpensDirect,
            _ => Counter::OpensCached,
        };
        self.counters.inc(opened);
        answered.set(true);
        let rc = if let Err(e) = self.faults.reply() {
            // Test-only: behave as if the kernel had dropped an interrupted open.
            // SAFETY: req is unanswered.
            unsafe { glue::reply_err(req, libc::EINTR) };
            -e
        } else if let Some(e) = entry {
            // SAFETY: req is unanswered.
            unsafe { glue::reply_buf(req, &reply::create_reply(e, fi.fh, flags, id)) }
        } else {
            // SAFETY: req is unanswered.
            unsafe { glue::reply_buf(req, &reply::open_reply(fi.fh, flags, id)) }
        };
        if rc < 0 {
            self.counters.dec(opened);
            self.registry.undo(ticket, &self.counters);
            self.counters.inc(Counter::ReplyFailed);
            return Err(-rc);
        }
        Ok(flags)
    }

    pub fn release(&self, ino: u64, fh: u64) -> Result<(), i32> {
        self.registry.release(ino, fh, &self.counters)
    }

    // ---- high-level servers ----

    pub fn is_high_level(&self) -> bool {
        self.high_level.get().is_some()
    }

    /// A high-level server's open()/create() offers `backing_fd` for the open
    /// described by `fi`: decides its io mode and returns what to write into
    /// `fi`. libfuse 3.17+ sends the backing id itself; on 3.14 fpio patches
    /// the reply as it leaves (matched by the request's unique), so an open
    /// whose request fpio did not see gets no passthrough.
    pub fn open_high_level(&self, backing_fd: c_int, fi: &FileInfo) -> Option<FiSet> {
        let hl = self.high_level.get()?;
        let me = self as *const Session as usize;
        // None: libfuse 3.14 and fpio did not see this open's request, so it
        // cannot patch the reply.
        let unique = if self.native_api {
            Some(0)
        } else {
            let seen = CURRENT_OPEN
                .with(|c| c.take())
                .filter(|&(s, _)| s == me)
                .map(|(_, u)| u);
            if seen.is_some() {
                // Read through fpio's io wrapper: from /dev/fuse (3.14 has no io_uring).
                self.note_transport_once(|| Transport::Device);
            }
            seen
        };
        let source = if backing_fd == -1 {
            Source::Declined
        } else {
            Source::Fd(backing_fd)
        };
        let offered = registry::look_at(source);
        let file = match offered {
            Offered::File { file, .. } => file,
            Offered::None => {
                return Some(self.high_level_fallback(hl, fi, Counter::FallbackDeclined, libc::EBADF))
            }
            Offered::Unusable(reason, e) => return Some(self.high_level_fallback(hl, fi, reason, e)),
        };
        let key = highlevel::key_of(&file);
        let req = OpenRequest {
            ino: key,
            fh: fi.fh,
            access: fi.access(),
            source,
            live: self.live(),
            unseen: unique.is_none(),
            fallback: hl.fallback_kind(fi),
        };
        let (grant, ticket) = self.registry.acquire_offered(&req, offered, &self.counters);
        self.log_fallback(grant);
        hl.remember(fi.fh, ticket.map(|_| key));
        let (set, counted) = match grant {
            Grant::Passthrough(_) | Grant::SharedDirect(_) => {
                let (flags, id) = reply::open_flags(grant, fi);
                let counted = if matches!(grant, Grant::Passthrough(_)) {
                    Counter::OpensPassthrough
                } else {
                    Counter::OpensSharedDirect
                };
                if !self.native_api {
                    PENDING_OPEN.with(|p| {
                        p.set(Some(OpenPatch {
                            session: me,
                            unique: unique.unwrap_or(0),
                            flags,
                            backing_id: id,
                            counted,
                        }))
                    });
                }
                let set = FiSet {
                    backing_id: id,
                    // 3.14 sends these fields as they are should the reply
                    // not be patched: direct io never enters cached mode.
                    direct_io: u32::from(!self.native_api || flags & OpenFlags::DIRECT_IO.bits() != 0),
                    keep_cache: 0,
                    parallel_direct_writes: 1,
                };
                (set, counted)
            }
            // In the io the registry decided (direct where the file has a
            // backing file and this open cannot use it).
            Grant::Fallback(kind, ..) => fallback_opened(hl.fallback_fi(fi, kind, Some(&file))),
            // Another file under this key (a collision of keys), or a file
            // whose backing file the server never opened for this access:
            // no passthrough; direct io through the server.
            Grant::Busy | Grant::Stale => {
                fallback_opened(hl.fallback_fi(fi, FallbackKind::Direct, Some(&file)))
            }
        };
        self.counters.inc(counted);
        Some(set)
    }

    /// An open that gets no passthrough and that the registry does not hold.
    fn high_level_fallback(&self, hl: &HighLevel, fi: &FileInfo, reason: Counter, e: i32) -> FiSet {
        let kind = hl.fallback_kind(fi);
        let (set, opened) = fallback_opened(hl.fallback_fi(fi, kind, None));
        hl.remember(fi.fh, None);
        self.counters.inc(reason);
        self.counters.inc(opened);
        self.log_fallback(Grant::Fallback(kind, reason, e));
        set
    }

    /// A high-level server's release(): forgets the open `fh`.
    pub fn release_high_level(&self, fh: u64) -> Result<(), i32> {
        let hl = self.high_level.get().ok_or(libc::ENOENT)?;
        match hl.forget(fh).ok_or(libc::ENOENT)? {
            Some(key) => self.registry.release(key, fh, &self.counters),
            None => Ok(()),
        }
    }

    /// If `parts` is the reply to the high-level open this thread handles
    /// (libfuse 3.14), returns it with the passthrough flags and backing id.
    pub(crate) fn patch_open_reply(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let pending = PENDING_OPEN.with(|p| p.get())?;
        let out = OutHeader::parse(parts.first()?)?;
        if pending.session != self as *const Session as usize || out.unique == 0 {
            return None; // a notification, sent from inside open()
        }
        // Whatever the outcome, this thread's open is answered now.
        PENDING_OPEN.with(|p| p.set(None));
        if out.unique != pending.unique || out.error != 0 {
            // The server's open() failed after fpio_fuse_open(), or the reply
            // went by unseen: the server's release undoes the open.
            return None;
        }
        let mut msg: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        if msg.len() != out.len as usize
            || !proto::patch_open_out(&mut msg, pending.flags, pending.backing_id)
        {
            return None;
        }
        REPLACED_OPEN.with(|r| r.set(Some(pending.counted)));
        Some(msg)
    }

    /// What became of a reply `hook_writev` replaced: an open reply that
    /// failed (the open was interrupted) is not counted; libfuse releases it.
    pub(crate) fn replaced_reply_sent(&self, res: isize) {
        match REPLACED_OPEN.with(|r| r.take()) {
            Some(counted) => {
                if res < 0 {
                    self.counters.dec(counted);
                    self.counters.inc(Counter::ReplyFailed);
                }
            }
            None => self.init_reply_sent(res),
        }
    }

    /// The channel the INIT reply of a high-level server left on (3.14 reads
    /// INIT on a clone_fd clone fpio had not seen yet) is this session's.
    pub(crate) fn bind_init_channel(&self, fd: RawFd, userdata: usize) {
        bind_channel(self, fd);
        if !self.userdata_bound.swap(true, Ordering::AcqRel) {
            self.userdata.store(userdata, Ordering::Release);
        }
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

/// Whether the request this thread is handling carried a kill-suid/sgid
/// marker (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID).
/// libfuse reads and handles a request on the same thread, in both loops.
pub fn current_request_kills_suidgid() -> bool {
    KILL_SUIDGID.with(|k| k.get())
}

/// A high-level open without passthrough, with the counter of its io mode.
fn fallback_opened(set: FiSet) -> (FiSet, Counter) {
    let opened = if set.direct_io != 0 {
        Counter::OpensDirect
    } else {
        Counter::OpensCached
    };
    (set, opened)
}

/// The high-level session of the `struct fuse` whose request (or init()) the
/// calling thread runs (no lock while the table is unchanged).
pub fn for_this_thread() -> Option<Arc<Session>> {
    if !HIGH_LEVEL_SEEN.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: a high-level server created a struct fuse (HIGH_LEVEL_SEEN).
    let se = unsafe { glue::context_session() } as usize;
    if se == 0 {
        return None;
    }
    cached_lookup(&LAST_FUSE, se, |s| s.se == se && s.is_high_level())
}

/// The session whose INIT reply this thread sends next, if any (a
/// high-level server attached in init() on libfuse 3.14).
pub(crate) fn init_thread_session() -> Option<Arc<Session>> {
    let ptr = INIT_THREAD.with(|t| t.get());
    if ptr == 0 {
        return None;
    }
    by_handle(ptr)
}

/// Whether a reply sent from this thread may need patching.
pub(crate) fn reply_patch_pending() -> bool {
    init_pending() || PENDING_OPEN.with(|p| p.get().is_some())
}

/// The live session behind a C handle (no lock while the table is unchanged).
pub fn by_handle(ptr: usize) -> Option<Arc<Session>> {
    cached_lookup(&LAST_HANDLE, ptr, |s| Arc::as_ptr(s) as usize == ptr)
}

/// The session `matches` finds in the table for `key`, remembered in this
/// thread's `last` under the table generation: while the table is unchanged
/// a repeated lookup takes no lock.
fn cached_lookup(
    last: &'static std::thread::LocalKey<RefCell<Option<HandleMatch>>>,
    key: usize,
    matches: impl Fn(&Arc<Session>) -> bool,
) -> Option<Arc<Session>> {
    let gen = GENERATION.load(Ordering::Acquire);
    let cached = last.with(|l| {
        let l = l.borrow();
        let (k, g, s) = l.as_ref()?;
        (*k == key && *g == gen).then(|| s.clone())
    });
    if cached.is_some() {
        return cached;
    }
    let found = SESSIONS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|s| matches(s))
        .cloned();
    last.with(|l| *l.borrow_mut() = found.as_ref().map(|s| (key, gen, s.clone())));
    found
}

/// Ties channel `fd` to `s` alone (an fd number may have moved on from a
/// session that closed it).
fn bind_channel(s: &Session, fd: RawFd) {
    let table = SESSIONS.read().unwrap_or_else(|p| p.into_inner());
    for other in table.iter() {
        if !std::ptr::eq(Arc::as_ptr(other), s) {
            other
                .channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|&c| c != fd);
        }
    }
    let mut mine = s.channels.lock().unwrap_or_else(|p| p.into_inner());
    if !mine.contains(&fd) {
        mine.push(fd);
    }
    drop(mine);
    drop(table);
    table_changed();
}

/// libfuse 3.17 cloned `master` into `clone` for a worker (-o clone_fd).
pub(crate) fn channel_cloned(master: RawFd, clone: RawFd) {
    let owner = SESSIONS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|s| {
            s.channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&master)
        })
        .cloned();
    if let Some(s) = owner {
        bind_channel(&s, clone);
    }
}

/// Finds the session an io callback on channel `fd` belongs to. A channel
/// no session knows is tied by the server's userdata when exactly one
/// session has it; an INIT on it waits for fpio_session_init() to claim it.
pub(crate) fn by_channel(fd: RawFd, userdata: usize, request: Option<&[u8]>) -> Option<Arc<Session>> {
    let gen = GENERATION.load(Ordering::Acquire);
    let cached = LAST_CHANNEL.with(|l| {
        let l = l.borrow();
        let (cfd, cud, g, s) = l.as_ref()?;
        (*cfd == fd && *cud == userdata && *g == gen).then(|| s.clone())
    });
    if cached.is_some() {
        return cached;
    }
    let table = SESSIONS.read().unwrap_or_else(|p| p.into_inner());
    let known = table
        .iter()
        .find(|s| s.channels.lock().unwrap_or_else(|p| p.into_inner()).contains(&fd))
        .cloned();
    let found = match known {
        Some(s) => {
            if fd == s.main_fd && !s.userdata_bound.swap(true, Ordering::AcqRel) {
                s.userdata.store(userdata, Ordering::Release);
            }
            Some(s)
        }
        None => {
            let is_init = request
                .and_then(InHeader::parse)
                .is_some_and(|h| h.opcode == opcode::INIT);
            // One session still waiting for its INIT: it is this one.
            let mut waiting = table.iter().filter(|s| s.offer().is_none());
            if let (true, Some(only), None) = (is_init, waiting.next(), waiting.next()) {
                only.channels.lock().unwrap_or_else(|p| p.into_inner()).push(fd);
                if !only.userdata_bound.swap(true, Ordering::AcqRel) {
                    only.userdata.store(userdata, Ordering::Release);
                }
                let only = only.clone();
                drop(table);
                LAST_CHANNEL.with(|l| *l.borrow_mut() = Some((fd, userdata, gen, only.clone())));
                return Some(only);
            }
            if is_init {
                let h = InHeader::parse(request.unwrap_or_default());
                UNCLAIMED_INIT.with(|c| {
                    *c.borrow_mut() = Some(UnclaimedInit {
                        fd,
                        userdata,
                        unique: h.map_or(0, |h| h.unique),
                        offer: request.and_then(|r| InitOffer::parse(&r[IN_HEADER_LEN..])),
                    })
                });
                return None;
            }
            let mut candidates = table.iter().filter(|s| {
                s.userdata_bound.load(Ordering::Acquire) && s.userdata.load(Ordering::Acquire) == userdata
            });
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => {
                    only.channels.lock().unwrap_or_else(|p| p.into_inner()).push(fd);
                    Some(only.clone())
                }
                (Some(a), Some(b)) => {
                    // Two sessions share a userdata: this channel's requests
                    // cannot be placed, so neither claims complete counts.
                    for s in [a, b].into_iter().chain(candidates) {
                        s.unseen_requests.store(true, Ordering::Relaxed);
                    }
                    None
                }
                _ => None,
            }
        }
    };
    drop(table);
    if let Some(s) = &found {
        LAST_CHANNEL.with(|l| *l.borrow_mut() = Some((fd, userdata, gen, s.clone())));
    }
    found
}

/// Logs the counters of every session still attached (FPIO_LOG, at exit).
pub(crate) fn log_live_sessions_at_exit() {
    // Server threads may still run: never wait for the table here.
    let Ok(table) = SESSIONS.try_read() else { return };
    for s in table.iter() {
        log::at_exit(&s.describe(), &s.render_counters());
    }
}

/// Whether some session still waits for its INIT reply.
pub(crate) fn init_pending() -> bool {
    INIT_PENDING.load(Ordering::Acquire) != 0
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
