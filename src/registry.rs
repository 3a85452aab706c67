//! The backing registry: one backing id per inode, shared by all of the
//! inode's passthrough opens, refcounted, closed at the last release.
//!
//! It also remembers every open fpio answered, by (inode, file handle), so it
//! can keep each inode in one io mode the kernel accepts:
//! - an inode with a backing file takes only passthrough opens (else EINVAL);
//! - an inode with cached opens takes no passthrough open (else ETXTBSY);
//! - an inode with direct opens gets no new backing file: the kernel may not
//!   have processed those opens yet, and would fail them once it has one;
//! - one backing file per inode (else EBUSY).
//!
//! Each of those would reach the application as EIO; here they become a
//! fallback or a shared id before the reply is built.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::counters::{Counter, Counters};
use crate::sys::{self, FileId};

/// Where backing ids come from: the FUSE device, or a test double.
pub trait BackingDevice: Send + Sync {
    fn open(&self, fd: RawFd) -> Result<u32, i32>;
    fn close(&self, id: u32) -> Result<(), i32>;
}

/// What the server offered for this open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// No passthrough for this open.
    Declined,
    /// The server's open fd of the backing file; fpio registers it.
    Fd(RawFd),
    /// An id the server registered itself (libfuse 3.17 fuse_passthrough_open):
    /// shared like any other, never closed by fpio.
    ServerId(u32),
}

/// The io a fallback open gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackKind {
    Direct,
    Cached,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    pub ino: u64,
    pub fh: u64,
    /// `O_ACCMODE` of the open's flags.
    pub access: i32,
    pub source: Source,
    /// Whether the mount can do passthrough at all.
    pub live: bool,
    pub fallback: FallbackKind,
}

/// What the reply must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// FOPEN_PASSTHROUGH with this id.
    Passthrough(u32),
    /// FOPEN_DIRECT_IO|FOPEN_PASSTHROUGH with this id: the inode's shared
    /// backing file cannot serve this open's access mode, so read/write go
    /// to the server while the inode stays in passthrough mode.
    SharedDirect(u32),
    /// No backing file: server-side io, for the counted reason, with the
    /// errno a caller that insisted on passthrough would get.
    Fallback(FallbackKind, Counter, i32),
    /// The server offered a different file than the inode's backing file.
    Busy,
}

/// Identifies one recorded open, so a failed reply can be undone exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    ino: u64,
    serial: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Holds a reference on the inode's backing file (Passthrough or SharedDirect).
    Backed,
    Cached,
    Direct,
}

#[derive(Clone, Copy, Debug)]
struct OpenRec {
    serial: u64,
    fh: u64,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
struct Backing {
    id: u32,
    /// fpio registered it and so closes it; server ids are the server's.
    owned: bool,
    /// The backing file, when fpio saw its fd.
    file: Option<FileId>,
    /// `O_ACCMODE` of the backing fd; None: unknown (server id), assume it serves all.
    access: Option<i32>,
}

#[derive(Debug, Default)]
struct InodeState {
    backing: Option<Backing>,
    opens: Vec<OpenRec>,
}

impl InodeState {
    fn has(&self, kind: Kind) -> bool {
        self.opens.iter().any(|o| o.kind == kind)
    }
}

const SHARDS: usize = 64;

pub struct Registry {
    shards: Vec<Mutex<HashMap<u64, InodeState>>>,
    next_serial: AtomicU64,
    device: Box<dyn BackingDevice>,
}

fn reads(access: i32) -> bool {
    access != libc::O_WRONLY
}
fn writes(access: i32) -> bool {
    access != libc::O_RDONLY
}
/// Whether a backing fd opened with `have` can serve an open that asked for `want`.
fn covers(have: i32, want: i32) -> bool {
    (reads(have) || !reads(want)) && (writes(have) || !writes(want))
}

impl Registry {
    pub fn new(device: Box<dyn BackingDevice>) -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_serial: AtomicU64::new(1),
            device,
        }
    }

    fn shard(&self, ino: u64) -> std::sync::MutexGuard<'_, HashMap<u64, InodeState>> {
        // A panic while holding a shard cannot leave it half-updated in a way
        // that matters more than refusing service, so recover the guard.
        self.shards[(ino as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Decides the io mode of one open and records it. `Busy` records nothing.
    pub fn acquire(&self, req: &OpenRequest, counters: &Counters) -> (Grant, Option<Ticket>) {
        let mut map = self.shard(req.ino);
        let state = map.entry(req.ino).or_default();
        let grant = match state.backing {
            Some(b) => share(&b, req),
            None => self.attach(state, req, counters),
        };
        let kind = match grant {
            Grant::Passthrough(_) | Grant::SharedDirect(_) => Kind::Backed,
            Grant::Fallback(FallbackKind::Cached, ..) => Kind::Cached,
            Grant::Fallback(FallbackKind::Direct, ..) => Kind::Direct,
            Grant::Busy => {
                counters.inc(Counter::BusyRefused);
                if state.opens.is_empty() && state.backing.is_none() {
                    map.remove(&req.ino);
                }
                return (Grant::Busy, None);
            }
        };
        if let Grant::Fallback(_, reason, _) = grant {
            counters.inc(reason);
        }
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        state.opens.push(OpenRec {
            serial,
            fh: req.fh,
            kind,
        });
        (grant, Some(Ticket { ino: req.ino, serial }))
    }

    /// No backing file yet: register one, or pick the fallback.
    fn attach(&self, state: &mut InodeState, req: &OpenRequest, counters: &Counters) -> Grant {
        let fallback = |reason, errno| Grant::Fallback(req.fallback, reason, errno);
        let fd = match req.source {
            Source::ServerId(id) => {
                state.backing = Some(Backing {
                    id,
                    owned: false,
                    file: None,
                    access: None,
                });
                return Grant::Passthrough(id);
            }
            _ if !req.live => return fallback(Counter::FallbackNotLive, libc::EOPNOTSUPP),
            Source::Declined => return fallback(Counter::FallbackDeclined, libc::EBADF),
            Source::Fd(fd) => fd,
        };
        if state.has(Kind::Cached) {
            return fallback(Counter::FallbackCachedOpens, libc::ETXTBSY);
        }
        // A direct open fpio answered may still be on its way through the
        // kernel's open path; if this open attached a backing file first, the
        // kernel would fail that one (a non-passthrough open of an inode with
        // a backing file: EIO). So no new backing file while any is live.
        if state.has(Kind::Direct) {
            return fallback(Counter::FallbackDirectOpens, libc::ETXTBSY);
        }
        let file = match sys::fstat(fd) {
            Ok(f) if f.is_regular() => f,
            Ok(f) if f.mode & libc::S_IFMT == libc::S_IFDIR => {
                return fallback(Counter::FallbackNotRegular, libc::EISDIR)
            }
            Ok(_) => return fallback(Counter::FallbackNotRegular, libc::EINVAL),
            Err(e) => return fallback(Counter::FallbackBadFd, e),
        };
        // The backing fd must serve this open and must not exceed it.
        match sys::access_mode(fd) {
            Ok(a) if a == req.access => {}
            Ok(_) => return fallback(Counter::FallbackAccess, libc::EACCES),
            Err(e) => return fallback(Counter::FallbackBadFd, e),
        }
        match self.device.open(fd) {
            Ok(id) => {
                counters.inc(Counter::BackingOpened);
                counters.inc(Counter::BackingIdsLive);
                state.backing = Some(Backing {
                    id,
                    owned: true,
                    file: Some(file),
                    access: Some(req.access),
                });
                Grant::Passthrough(id)
            }
            Err(e) => fallback(Counter::FallbackRegisterFailed, e),
        }
    }

    /// Drops the open (ino, fh). Closes the backing id at its last reference.
    pub fn release(&self, ino: u64, fh: u64, counters: &Counters) -> Result<(), i32> {
        self.forget(ino, counters, |o| o.fh == fh)
    }

    /// Takes back an open whose reply never reached the kernel.
    pub fn undo(&self, t: Ticket, counters: &Counters) {
        let _ = self.forget(t.ino, counters, |o| o.serial == t.serial);
    }

    fn forget(&self, ino: u64, counters: &Counters, pick: impl Fn(&OpenRec) -> bool) -> Result<(), i32> {
        let mut map = self.shard(ino);
        let state = map.get_mut(&ino).ok_or(libc::ENOENT)?;
        // The newest match: with a reused fh, the older open is the stale one.
        let pos = state.opens.iter().rposition(pick).ok_or(libc::ENOENT)?;
        let rec = state.opens.remove(pos);
        if rec.kind == Kind::Backed && !state.has(Kind::Backed) {
            if let Some(b) = state.backing.take() {
                self.close_backing(&b, counters);
            }
        }
        if state.opens.is_empty() && state.backing.is_none() {
            map.remove(&ino);
        }
        Ok(())
    }

    fn close_backing(&self, b: &Backing, counters: &Counters) {
        if b.owned {
            // The kernel keeps its own reference while files still use it, so
            // closing the id never pulls a file out from under an open.
            let _ = self.device.close(b.id);
            counters.inc(Counter::BackingClosed);
            counters.dec(Counter::BackingIdsLive);
        }
    }

    pub fn backing_id(&self, ino: u64) -> Option<u32> {
        self.shard(ino).get(&ino).and_then(|s| s.backing.map(|b| b.id))
    }

    /// Closes every id fpio registered and forgets every open (session end).
    pub fn clear(&self, counters: &Counters) {
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (_, state) in map.drain() {
                if let Some(b) = state.backing {
                    self.close_backing(&b, counters);
                }
            }
        }
    }
}

/// The inode already has a backing file: every open must use it.
fn share(b: &Backing, req: &OpenRequest) -> Grant {
    match req.source {
        Source::ServerId(id) if id != b.id => return Grant::Busy,
        Source::Fd(fd) => {
            if let (Some(mine), Ok(theirs)) = (b.file, sys::fstat(fd)) {
                if (mine.dev, mine.ino) != (theirs.dev, theirs.ino) {
                    return Grant::Busy;
                }
            }
        }
        _ => {}
    }
    match b.access {
        Some(have) if !covers(have, req.access) => Grant::SharedDirect(b.id),
        _ => Grant::Passthrough(b.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    /// Hands out ids like the kernel and remembers which are open.
    #[derive(Default)]
    pub(crate) struct FakeDevice {
        next: Mutex<u32>,
        open: Mutex<HashSet<u32>>,
        fail: Mutex<Option<i32>>,
    }

    impl BackingDevice for Arc<FakeDevice> {
        fn open(&self, _fd: RawFd) -> Result<u32, i32> {
            if let Some(e) = *self.fail.lock().unwrap() {
                return Err(e);
            }
            let mut n = self.next.lock().unwrap();
            *n += 1;
            self.open.lock().unwrap().insert(*n);
            Ok(*n)
        }
        fn close(&self, id: u32) -> Result<(), i32> {
            if self.open.lock().unwrap().remove(&id) {
                Ok(())
            } else {
                Err(libc::ENOENT)
            }
        }
    }

    fn setup() -> (Arc<FakeDevice>, Registry, Counters) {
        let dev = Arc::new(FakeDevice::default());
        (dev.clone(), Registry::new(Box::new(dev)), Counters::default())
    }

    fn file(access: i32) -> RawFd {
        let fd = sys::memfd().unwrap();
        if access == libc::O_RDWR {
            return fd;
        }
        // Reopen through /proc to get the wanted access mode on the same file.
        let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        let fd2 = unsafe { libc::open(path.as_ptr(), access | libc::O_CLOEXEC) };
        assert!(fd2 >= 0);
        sys::close(fd);
        fd2
    }

    fn req(ino: u64, fh: u64, access: i32, source: Source) -> OpenRequest {
        OpenRequest {
            ino,
            fh,
            access,
            source,
            live: true,
            fallback: FallbackKind::Direct,
        }
    }

    #[test]
    fn one_id_per_inode_shared_and_closed_at_last_release() {
        let (dev, reg, c) = setup();
        let fd = file(libc::O_RDWR);
        let (g1, _) = reg.acquire(&req(7, 1, libc::O_RDWR, Source::Fd(fd)), &c);
        let (g2, _) = reg.acquire(&req(7, 2, libc::O_RDWR, Source::Fd(fd)), &c);
        assert_eq!(g1, Grant::Passthrough(1));
        assert_eq!(g2, Grant::Passthrough(1));
        assert_eq!(c.get(Counter::BackingOpened), 1);
        reg.release(7, 1, &c).unwrap();
        assert_eq!(dev.open.lock().unwrap().len(), 1);
        reg.release(7, 2, &c).unwrap();
        assert!(dev.open.lock().unwrap().is_empty());
        assert_eq!(c.get(Counter::BackingIdsLive), 0);
        assert_eq!(reg.release(7, 2, &c), Err(libc::ENOENT));
        assert_eq!(reg.backing_id(7), None);
        sys::close(fd);
    }

    #[test]
    fn a_different_file_is_busy() {
        let (_dev, reg, c) = setup();
        let (a, b) = (file(libc::O_RDWR), file(libc::O_RDWR));
        assert!(matches!(
            reg.acquire(&req(1, 1, libc::O_RDWR, Source::Fd(a)), &c).0,
            Grant::Passthrough(_)
        ));
        assert_eq!(
            reg.acquire(&req(1, 2, libc::O_RDWR, Source::Fd(b)), &c).0,
            Grant::Busy
        );
        assert_eq!(c.get(Counter::BusyRefused), 1);
        reg.release(1, 1, &c).unwrap();
        assert_eq!(reg.release(1, 2, &c), Err(libc::ENOENT));
        sys::close(a);
        sys::close(b);
    }

    #[test]
    fn cached_opens_block_passthrough_and_backing_blocks_cached() {
        let (_dev, reg, c) = setup();
        let fd = file(libc::O_RDWR);
        let cached = OpenRequest {
            fallback: FallbackKind::Cached,
            ..req(3, 1, libc::O_RDWR, Source::Declined)
        };
        assert_eq!(
            reg.acquire(&cached, &c).0,
            Grant::Fallback(FallbackKind::Cached, Counter::FallbackDeclined, libc::EBADF)
        );
        let g = reg.acquire(&req(3, 2, libc::O_RDWR, Source::Fd(fd)), &c).0;
        assert_eq!(
            g,
            Grant::Fallback(FallbackKind::Direct, Counter::FallbackCachedOpens, libc::ETXTBSY)
        );
        reg.release(3, 1, &c).unwrap();
        reg.release(3, 2, &c).unwrap();
        // Now passthrough first: a declined open must still use the backing file.
        assert!(matches!(
            reg.acquire(&req(3, 3, libc::O_RDWR, Source::Fd(fd)), &c).0,
            Grant::Passthrough(_)
        ));
        assert!(matches!(reg.acquire(&cached, &c).0, Grant::Passthrough(_)));
        sys::close(fd);
    }

    #[test]
    fn direct_opens_block_a_new_backing_file() {
        let (_dev, reg, c) = setup();
        let fd = file(libc::O_RDWR);
        let declined = req(8, 1, libc::O_RDWR, Source::Declined);
        assert!(matches!(
            reg.acquire(&declined, &c).0,
            Grant::Fallback(FallbackKind::Direct, ..)
        ));
        let g = reg.acquire(&req(8, 2, libc::O_RDWR, Source::Fd(fd)), &c).0;
        assert_eq!(
            g,
            Grant::Fallback(FallbackKind::Direct, Counter::FallbackDirectOpens, libc::ETXTBSY)
        );
        reg.release(8, 1, &c).unwrap();
        reg.release(8, 2, &c).unwrap();
        assert!(matches!(
            reg.acquire(&req(8, 3, libc::O_RDWR, Source::Fd(fd)), &c).0,
            Grant::Passthrough(_)
        ));
        sys::close(fd);
    }

    #[test]
    fn pipes_and_devices_are_never_registered() {
        let (dev, reg, c) = setup();
        let mut p = [0; 2];
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        for (ino, fd, acc) in [
            (20, p[0], libc::O_RDONLY),
            (21, p[1], libc::O_WRONLY),
            (22, null, libc::O_RDWR),
        ] {
            let g = reg.acquire(&req(ino, 1, acc, Source::Fd(fd)), &c).0;
            assert_eq!(
                g,
                Grant::Fallback(FallbackKind::Direct, Counter::FallbackNotRegular, libc::EINVAL)
            );
        }
        assert!(dev.open.lock().unwrap().is_empty());
        for fd in [p[0], p[1], null] {
            sys::close(fd);
        }
    }

    #[test]
    fn access_never_widens_and_narrow_backing_goes_shared_direct() {
        let (_dev, reg, c) = setup();
        let (ro, rw) = (file(libc::O_RDONLY), file(libc::O_RDWR));
        // An O_RDWR fd for an O_RDONLY open would widen access.
        assert_eq!(
            reg.acquire(&req(4, 1, libc::O_RDONLY, Source::Fd(rw)), &c).0,
            Grant::Fallback(FallbackKind::Direct, Counter::FallbackAccess, libc::EACCES)
        );
        reg.release(4, 1, &c).unwrap();
        let Grant::Passthrough(id) = reg.acquire(&req(4, 2, libc::O_RDONLY, Source::Fd(ro)), &c).0 else {
            panic!("read-only open should pass through");
        };
        // A writer cannot use the read-only backing file.
        assert_eq!(
            reg.acquire(&req(4, 3, libc::O_RDWR, Source::Fd(ro)), &c).0,
            Grant::SharedDirect(id)
        );
        sys::close(ro);
        sys::close(rw);
    }

    #[test]
    fn fallbacks_have_reasons() {
        let (dev, reg, c) = setup();
        let dir = unsafe {
            libc::open(
                c"/".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        let fb = |r, e| Grant::Fallback(FallbackKind::Direct, r, e);
        let g = reg.acquire(&req(5, 1, libc::O_RDONLY, Source::Fd(dir)), &c).0;
        assert_eq!(g, fb(Counter::FallbackNotRegular, libc::EISDIR));
        // Separate inodes: a direct fallback blocks new backing files on its own inode.
        let g = reg.acquire(&req(15, 2, libc::O_RDONLY, Source::Fd(-7)), &c).0;
        assert_eq!(g, fb(Counter::FallbackBadFd, libc::EBADF));
        let dead = OpenRequest {
            live: false,
            ..req(25, 3, libc::O_RDONLY, Source::Fd(dir))
        };
        assert_eq!(
            reg.acquire(&dead, &c).0,
            fb(Counter::FallbackNotLive, libc::EOPNOTSUPP)
        );
        *dev.fail.lock().unwrap() = Some(libc::EPERM);
        let fd = file(libc::O_RDWR);
        let g = reg.acquire(&req(6, 1, libc::O_RDWR, Source::Fd(fd)), &c).0;
        assert_eq!(g, fb(Counter::FallbackRegisterFailed, libc::EPERM));
        sys::close(fd);
        sys::close(dir);
    }

    #[test]
    fn server_ids_are_shared_but_never_closed() {
        let (dev, reg, c) = setup();
        assert_eq!(
            reg.acquire(&req(9, 1, libc::O_RDWR, Source::ServerId(42)), &c).0,
            Grant::Passthrough(42)
        );
        assert_eq!(
            reg.acquire(&req(9, 2, libc::O_RDWR, Source::ServerId(43)), &c).0,
            Grant::Busy
        );
        reg.release(9, 1, &c).unwrap();
        assert_eq!(c.get(Counter::BackingClosed), 0);
        assert!(dev.open.lock().unwrap().is_empty());
    }

    #[test]
    fn undo_removes_exactly_that_open() {
        let (dev, reg, c) = setup();
        let fd = file(libc::O_RDWR);
        let (_, t1) = reg.acquire(&req(2, 5, libc::O_RDWR, Source::Fd(fd)), &c);
        let (_, t2) = reg.acquire(&req(2, 5, libc::O_RDWR, Source::Fd(fd)), &c);
        reg.undo(t2.unwrap(), &c);
        assert_eq!(dev.open.lock().unwrap().len(), 1);
        reg.undo(t1.unwrap(), &c);
        assert!(dev.open.lock().unwrap().is_empty());
        sys::close(fd);
    }

    #[test]
    fn concurrent_opens_and_releases_balance() {
        let (dev, reg, c) = setup();
        let reg = Arc::new(reg);
        let c = Arc::new(c);
        let fd = file(libc::O_RDWR);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (reg, c) = (reg.clone(), c.clone());
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        let ino = i % 4;
                        let fh = t * 1000 + i;
                        let (g, _) = reg.acquire(&req(ino, fh, libc::O_RDWR, Source::Fd(fd)), &c);
                        assert!(matches!(g, Grant::Passthrough(_)));
                        reg.release(ino, fh, &c).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(dev.open.lock().unwrap().is_empty());
        assert_eq!(c.get(Counter::BackingIdsLive), 0);
        assert_eq!(c.get(Counter::BackingOpened), c.get(Counter::BackingClosed));
        sys::close(fd);
    }

    #[test]
    fn clear_closes_owned_ids() {
        let (dev, reg, c) = setup();
        let fd = file(libc::O_RDWR);
        reg.acquire(&req(1, 1, libc::O_RDWR, Source::Fd(fd)), &c);
        reg.acquire(&req(2, 1, libc::O_RDWR, Source::ServerId(77)), &c);
        reg.clear(&c);
        assert!(dev.open.lock().unwrap().is_empty());
        assert_eq!(c.get(Counter::BackingIdsLive), 0);
        sys::close(fd);
    }
}
