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
//! fallback, a shared id, or a refusal the server can act on, before the
//! reply is built.
//!
//! The kernel opens the backing file anew for every passthrough open, with
//! that open's own flags and the credentials captured at registration. So
//! whether an open may use the inode's backing file is a question about the
//! server's fd for *this* open: is it the same file, and did the server open
//! that file for the access asked for (now or for an earlier open that still
//! holds the id)?
//!
//! System calls (fstat, fcntl, the BACKING_OPEN/CLOSE ioctls) run outside the
//! shard locks: a first open registers optimistically and gives its id back
//! if another open attached a backing file meanwhile.

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
    /// No more ids: release the device (after `clear`).
    fn shutdown(&self) {}
}

/// What the server offered for this open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// No backing file of its own for this open (`backing_fd == -1`).
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
    /// fpio cannot send this open's reply itself (a high-level server's open
    /// on libfuse 3.14 whose request it did not see): no passthrough.
    pub unseen: bool,
    pub fallback: FallbackKind,
}

/// What the reply must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// FOPEN_PASSTHROUGH with this id.
    Passthrough(u32),
    /// FOPEN_DIRECT_IO|FOPEN_PASSTHROUGH with this id: the open declined a
    /// backing file of its own, but the inode has one (so the kernel insists
    /// on passthrough) that the server opened for this access: read and
    /// write go to the server, mmap to that file.
    SharedDirect(u32),
    /// No backing file: the server's own reply, for the counted reason, with
    /// the errno a caller that insisted on passthrough would get.
    Fallback(FallbackKind, Counter, i32),
    /// The inode's backing file was not opened by the server for this access,
    /// or is another server-registered id: the open fails with EBUSY.
    Busy,
    /// The server's fd is another file than the inode's live backing file
    /// (e.g. an overlay copied the file up while an open still uses the old
    /// one): answered ESTALE, so the kernel looks the name up again.
    Stale,
}

/// Identifies one recorded open, so a failed reply can be undone exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    ino: u64,
    fh: u64,
    serial: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Holds a reference on the inode's backing file (Passthrough or SharedDirect).
    Backed = 0,
    Cached = 1,
    Direct = 2,
}

/// Access bits, so grants from several fds of one file add up.
const READ: u8 = 1;
const WRITE: u8 = 2;

fn access_bits(access: i32) -> u8 {
    match access {
        libc::O_RDONLY => READ,
        libc::O_WRONLY => WRITE,
        _ => READ | WRITE,
    }
}

#[derive(Clone, Copy, Debug)]
struct Backing {
    id: u32,
    /// fpio registered it and so closes it; server ids are the server's.
    owned: bool,
    /// The backing file (None: a server id, whose file fpio never saw).
    file: Option<FileId>,
    /// What the server opened the file for, over all fds it offered while
    /// the id lived (server ids: everything).
    granted: u8,
}

#[derive(Debug, Default)]
struct InodeState {
    backing: Option<Backing>,
    /// Opens by file handle; a handle reused before its release shows up
    /// twice (newest last).
    opens: HashMap<u64, Vec<(u64, Kind)>>,
    counts: [u32; 3],
}

impl InodeState {
    fn has(&self, kind: Kind) -> bool {
        self.counts[kind as usize] > 0
    }

    fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0) && self.backing.is_none()
    }

    fn record(&mut self, fh: u64, serial: u64, kind: Kind) {
        self.opens.entry(fh).or_default().push((serial, kind));
        self.counts[kind as usize] += 1;
    }

    /// Removes the newest open under `fh` (or exactly `serial`).
    fn remove(&mut self, fh: u64, serial: Option<u64>) -> Option<Kind> {
        let list = self.opens.get_mut(&fh)?;
        let pos = match serial {
            Some(s) => list.iter().rposition(|&(x, _)| x == s)?,
            None => list.len().checked_sub(1)?,
        };
        let (_, kind) = list.remove(pos);
        if list.is_empty() {
            self.opens.remove(&fh);
        }
        self.counts[kind as usize] -= 1;
        Some(kind)
    }
}

/// The server's fd, looked at before any lock is taken.
#[derive(Clone, Copy, Debug)]
pub enum Offered {
    File { file: FileId, access: i32 },
    Unusable(Counter, i32),
    None,
}

pub fn look_at(source: Source) -> Offered {
    let Source::Fd(fd) = source else {
        return Offered::None;
    };
    let file = match sys::fstat(fd) {
        Ok(f) if f.is_regular() => f,
        Ok(f) if f.mode & libc::S_IFMT == libc::S_IFDIR => {
            return Offered::Unusable(Counter::FallbackNotRegular, libc::EISDIR)
        }
        Ok(_) => return Offered::Unusable(Counter::FallbackNotRegular, libc::EINVAL),
        Err(e) => return Offered::Unusable(Counter::FallbackBadFd, e),
    };
    match sys::access_mode(fd) {
        Ok(access) => Offered::File { file, access },
        Err(e) => Offered::Unusable(Counter::FallbackBadFd, e),
    }
}

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Spreads inode numbers over the shards. Lowlevel servers often use
/// pointers as inode numbers, whose low bits are all alike.
fn shard_of(ino: u64) -> usize {
    (ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARD_BITS)) as usize
}

pub struct Registry {
    shards: Vec<Mutex<HashMap<u64, InodeState>>>,
    next_serial: AtomicU64,
    device: Box<dyn BackingDevice>,
}

/// What to do with an open before (or instead of) registering its fd.
enum Step {
    Done(Grant),
    Register(RawFd, FileId, i32),
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
        self.shards[shard_of(ino)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Decides the io mode of one open and records it. `Busy` and `Stale`
    /// record nothing.
    pub fn acquire(&self, req: &OpenRequest, counters: &Counters) -> (Grant, Option<Ticket>) {
        self.acquire_offered(req, look_at(req.source), counters)
    }

    /// `acquire` with the server's fd already looked at (`look_at(req.source)`).
    pub fn acquire_offered(
        &self,
        req: &OpenRequest,
        offered: Offered,
        counters: &Counters,
    ) -> (Grant, Option<Ticket>) {
        let step = {
            let mut map = self.shard(req.ino);
            let state = map.entry(req.ino).or_default();
            match decide(state, req, offered) {
                Step::Done(grant) => return self.finish(&mut map, req, grant, counters),
                step => step,
            }
        };
        let Step::Register(fd, file, access) = step else {
            unreachable!()
        };
        let registered = self.device.open(fd);
        let mut map = self.shard(req.ino);
        let state = map.entry(req.ino).or_default();
        // Another open may have changed the inode while the ioctl ran; then
        // this id is not needed and goes back once the shard is released.
        let (grant, spare) = match (decide(state, req, offered), registered) {
            (Step::Register(..), Ok(id)) => {
                counters.inc(Counter::BackingOpened);
                counters.inc(Counter::BackingIdsLive);
                state.backing = Some(Backing {
                    id,
                    owned: true,
                    file: Some(file),
                    granted: access_bits(access),
                });
                (Grant::Passthrough(id), None)
            }
            (Step::Register(..), Err(e)) => (
                Grant::Fallback(req.fallback, Counter::FallbackRegisterFailed, e),
                None,
            ),
            (Step::Done(grant), registered) => (grant, registered.ok()),
        };
        let result = self.finish(&mut map, req, grant, counters);
        drop(map);
        if let Some(id) = spare {
            let _ = self.device.close(id);
        }
        result
    }

    /// Records the open under its grant (with the shard held).
    fn finish(
        &self,
        map: &mut HashMap<u64, InodeState>,
        req: &OpenRequest,
        grant: Grant,
        counters: &Counters,
    ) -> (Grant, Option<Ticket>) {
        let state = map.entry(req.ino).or_default();
        let kind = match grant {
            Grant::Passthrough(_) | Grant::SharedDirect(_) => Kind::Backed,
            Grant::Fallback(FallbackKind::Cached, ..) => Kind::Cached,
            Grant::Fallback(FallbackKind::Direct, ..) => Kind::Direct,
            Grant::Busy | Grant::Stale => {
                counters.inc(if grant == Grant::Busy {
                    Counter::BusyRefused
                } else {
                    Counter::StaleRefused
                });
                if state.is_empty() {
                    map.remove(&req.ino);
                }
                return (grant, None);
            }
        };
        if let Grant::Fallback(_, reason, _) = grant {
            counters.inc(reason);
        }
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        state.record(req.fh, serial, kind);
        (
            grant,
            Some(Ticket {
                ino: req.ino,
                fh: req.fh,
                serial,
            }),
        )
    }

    /// Drops the open (ino, fh). Closes the backing id at its last reference.
    pub fn release(&self, ino: u64, fh: u64, counters: &Counters) -> Result<(), i32> {
        self.forget(ino, fh, None, counters)
    }

    /// Takes back an open whose reply never reached the kernel.
    pub fn undo(&self, t: Ticket, counters: &Counters) {
        let _ = self.forget(t.ino, t.fh, Some(t.serial), counters);
    }

    fn forget(&self, ino: u64, fh: u64, serial: Option<u64>, counters: &Counters) -> Result<(), i32> {
        let closing = {
            let mut map = self.shard(ino);
            let state = map.get_mut(&ino).ok_or(libc::ENOENT)?;
            let kind = state.remove(fh, serial).ok_or(libc::ENOENT)?;
            let closing = if kind == Kind::Backed && !state.has(Kind::Backed) {
                state.backing.take()
            } else {
                None
            };
            if state.is_empty() {
                map.remove(&ino);
            }
            closing
        };
        if let Some(b) = closing {
            self.close_backing(&b, counters);
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

    /// `clear`, then lets the device go: later registrations fail (EBADF).
    pub fn shutdown(&self, counters: &Counters) {
        self.clear(counters);
        self.device.shutdown();
    }

    /// Closes every id fpio registered and forgets every open (session end).
    pub fn clear(&self, counters: &Counters) {
        for shard in &self.shards {
            let drained: Vec<_> = shard.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
            for (_, state) in drained {
                if let Some(b) = state.backing {
                    self.close_backing(&b, counters);
                }
            }
        }
    }
}

/// The io mode of one open, from the inode's state and what the server
/// offered; `Register` when the offered fd should become the backing file.
fn decide(state: &mut InodeState, req: &OpenRequest, offered: Offered) -> Step {
    // An unseen open's reply cannot carry a backing id; it is counted as
    // unseen only where that is what kept it from passthrough.
    let unseen = |kind| {
        Step::Done(Grant::Fallback(
            kind,
            Counter::FallbackRequestUnseen,
            libc::EAGAIN,
        ))
    };
    if let Some(b) = state.backing.as_mut() {
        if req.unseen {
            // Direct io at least never puts the inode in cached mode, which
            // would keep passthrough from the file's other opens (ETXTBSY).
            return unseen(FallbackKind::Direct);
        }
        return Step::Done(share(b, req, offered));
    }
    let fallback = |reason, errno| Step::Done(Grant::Fallback(req.fallback, reason, errno));
    if let Source::ServerId(id) = req.source {
        state.backing = Some(Backing {
            id,
            owned: false,
            file: None,
            granted: READ | WRITE,
        });
        return Step::Done(Grant::Passthrough(id));
    }
    if !req.live {
        return fallback(Counter::FallbackNotLive, libc::EOPNOTSUPP);
    }
    let (file, access) = match offered {
        Offered::None => return fallback(Counter::FallbackDeclined, libc::EBADF),
        Offered::Unusable(reason, e) => return fallback(reason, e),
        Offered::File { file, access } => (file, access),
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
    // The server must have opened the file for the access asked for.
    if !covers(access_bits(access), access_bits(req.access)) {
        return fallback(Counter::FallbackAccess, libc::EACCES);
    }
    if req.unseen {
        return unseen(req.fallback);
    }
    let Source::Fd(fd) = req.source else {
        unreachable!("offered implies an fd")
    };
    Step::Register(fd, file, access)
}

fn covers(granted: u8, wanted: u8) -> bool {
    granted & wanted == wanted
}

/// The inode already has a backing file: every open must use it.
fn share(b: &mut Backing, req: &OpenRequest, offered: Offered) -> Grant {
    match (req.source, offered) {
        (Source::ServerId(id), _) => {
            if id == b.id {
                Grant::Passthrough(id)
            } else {
                Grant::Busy
            }
        }
        (_, Offered::File { file, access }) => {
            match b.file {
                Some(mine) if (mine.dev, mine.ino) != (file.dev, file.ino) => return Grant::Stale,
                _ => {}
            }
            let wanted = access_bits(req.access);
            if covers(access_bits(access), wanted) {
                // This fd grants the access itself: later declined opens may
                // rely on it too while the id lives.
                b.granted |= access_bits(access);
                Grant::Passthrough(b.id)
            } else {
                Grant::Busy
            }
        }
        _ => {
            if covers(b.granted, access_bits(req.access)) {
                Grant::SharedDirect(b.id)
            } else {
                Grant::Busy
            }
        }
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
        // SAFETY: path is a NUL-terminated string.
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
            unseen: false,
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
    fn a_different_file_is_stale_and_a_new_inode_gets_its_own_id() {
        let (dev, reg, c) = setup();
        let (a, b) = (file(libc::O_RDWR), file(libc::O_RDWR));
        assert!(matches!(
            reg.acquire(&req(1, 1, libc::O_RDWR, Source::Fd(a)), &c).0,
            Grant::Passthrough(_)
        ));
        // Readers too: their fd is another file than the one the inode uses.
        for access in [libc::O_RDWR, libc::O_RDONLY] {
            assert_eq!(
                reg.acquire(&req(1, 2, access, Source::Fd(b)), &c),
                (Grant::Stale, None)
            );
        }
        assert_eq!(c.get(Counter::StaleRefused), 2);
        assert_eq!(reg.release(1, 2, &c), Err(libc::ENOENT));
        // The server's fresh node id for the new file: a backing file of its own.
        assert!(matches!(
            reg.acquire(&req(2, 3, libc::O_RDWR, Source::Fd(b)), &c).0,
            Grant::Passthrough(_)
        ));
        assert_eq!(dev.open.lock().unwrap().len(), 2);
        reg.release(1, 1, &c).unwrap();
        reg.release(2, 3, &c).unwrap();
        assert!(dev.open.lock().unwrap().is_empty());
        sys::close(a);
        sys::close(b);
    }

    #[test]
    fn an_open_whose_reply_fpio_cannot_send_gets_io_its_inode_accepts() {
        let (_dev, reg, c) = setup();
        let fd = file(libc::O_RDWR);
        let unseen = |fh| OpenRequest {
            unseen: true,
            fallback: FallbackKind::Cached,
            ..req(4, fh, libc::O_RDWR, Source::Fd(fd))
        };
        let fb = |kind| Grant::Fallback(kind, Counter::FallbackRequestUnseen, libc::EAGAIN);
        // No backing file yet: the server's own (cached) io, which keeps
        // passthrough off the inode while it lives.
        assert_eq!(reg.acquire(&unseen(1), &c).0, fb(FallbackKind::Cached));
        assert!(matches!(
            reg.acquire(&req(4, 2, libc::O_RDWR, Source::Fd(fd)), &c).0,
            Grant::Fallback(_, Counter::FallbackCachedOpens, _)
        ));
        reg.release(4, 1, &c).unwrap();
        reg.release(4, 2, &c).unwrap();
        // With a backing file: direct io, never cached (ETXTBSY).
        assert!(matches!(
            reg.acquire(&req(4, 3, libc::O_RDWR, Source::Fd(fd)), &c).0,
            Grant::Passthrough(_)
        ));
        assert_eq!(reg.acquire(&unseen(4), &c).0, fb(FallbackKind::Direct));
        assert_eq!(c.get(Counter::FallbackRequestUnseen), 2);
        reg.release(4, 4, &c).unwrap();
        reg.release(4, 3, &c).unwrap();
        sys::close(fd);
    }

    #[test]
    fn an_unseen_open_is_counted_for_what_else_kept_it_from_passthrough() {
        let (_dev, reg, c) = setup();
        let fd = file(libc::O_RDWR);
        let unseen = |fh, live| OpenRequest {
            unseen: true,
            live,
            fallback: FallbackKind::Cached,
            ..req(5, fh, libc::O_RDWR, Source::Fd(fd))
        };
        // Not live: seen or not, it would not have passed through.
        assert_eq!(
            reg.acquire(&unseen(1, false), &c).0,
            Grant::Fallback(FallbackKind::Cached, Counter::FallbackNotLive, libc::EOPNOTSUPP)
        );
        // A cached open of the inode is live: that keeps this one cached too.
        assert!(matches!(
            reg.acquire(&unseen(2, true), &c).0,
            Grant::Fallback(FallbackKind::Cached, Counter::FallbackCachedOpens, _)
        ));
        assert_eq!(c.get(Counter::FallbackRequestUnseen), 0);
        reg.release(5, 1, &c).unwrap();
        reg.release(5, 2, &c).unwrap();
        sys::close(fd);
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
        // Now passthrough first: a declined open must still use the backing
        // file, which the server opened for this access: io through the server.
        let Grant::Passthrough(id) = reg.acquire(&req(3, 3, libc::O_RDWR, Source::Fd(fd)), &c).0 else {
            panic!("first open should pass through");
        };
        assert_eq!(reg.acquire(&cached, &c).0, Grant::SharedDirect(id));
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
        // SAFETY: pipe writes two fds into p; the path is a C string literal.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        // SAFETY: as above.
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

    /// `fd`'s file again, opened for `access`.
    fn reopen(fd: RawFd, access: i32) -> RawFd {
        let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        // SAFETY: path is a NUL-terminated string.
        let fd2 = unsafe { libc::open(path.as_ptr(), access | libc::O_CLOEXEC) };
        assert!(fd2 >= 0);
        fd2
    }

    #[test]
    fn access_is_what_the_servers_fds_grant() {
        let (_dev, reg, c) = setup();
        let rw = file(libc::O_RDWR);
        let (ro, wo) = (reopen(rw, libc::O_RDONLY), reopen(rw, libc::O_WRONLY));
        // A read-only fd cannot serve a writer's first open.
        assert_eq!(
            reg.acquire(&req(4, 1, libc::O_RDWR, Source::Fd(ro)), &c).0,
            Grant::Fallback(FallbackKind::Direct, Counter::FallbackAccess, libc::EACCES)
        );
        reg.release(4, 1, &c).unwrap();
        let Grant::Passthrough(id) = reg.acquire(&req(4, 2, libc::O_RDONLY, Source::Fd(ro)), &c).0 else {
            panic!("read-only open should pass through");
        };
        // A writer that declines cannot reach a file opened only for reading,
        assert_eq!(
            reg.acquire(&req(4, 3, libc::O_WRONLY, Source::Declined), &c).0,
            Grant::Busy
        );
        // nor one whose own fd lacks write access,
        assert_eq!(
            reg.acquire(&req(4, 4, libc::O_RDWR, Source::Fd(ro)), &c).0,
            Grant::Busy
        );
        // but its own fd of the same file for writing shares the id,
        assert_eq!(
            reg.acquire(&req(4, 5, libc::O_WRONLY, Source::Fd(wo)), &c).0,
            Grant::Passthrough(id)
        );
        // and from then on a declining writer gets io through the server.
        assert_eq!(
            reg.acquire(&req(4, 6, libc::O_WRONLY, Source::Declined), &c).0,
            Grant::SharedDirect(id)
        );
        // A wider fd than the open may serve it: each open gets its own access.
        let Grant::Passthrough(_) = reg.acquire(&req(9, 1, libc::O_RDONLY, Source::Fd(rw)), &c).0 else {
            panic!("an O_RDWR fd serves an O_RDONLY open");
        };
        for fd in [rw, ro, wo] {
            sys::close(fd);
        }
    }

    #[test]
    fn fallbacks_have_reasons() {
        let (dev, reg, c) = setup();
        // SAFETY: the path is a C string literal.
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
            unseen: false,
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
