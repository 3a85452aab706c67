//! Thin, checked wrappers over the system calls fpio makes. Every `unsafe`
//! block in the crate that is not FFI argument conversion lives here.

use std::io;
use std::os::fd::RawFd;

/// `struct fuse_backing_map`.
#[repr(C)]
struct BackingMap {
    fd: i32,
    flags: u32,
    padding: u64,
}

const fn ioc_w(nr: u32, size: usize) -> libc::c_ulong {
    // _IOW(229, nr, size): direction write (1) << 30 | size << 16 | type << 8 | nr
    ((1u32 << 30) | ((size as u32) << 16) | (229u32 << 8) | nr) as libc::c_ulong
}
const FUSE_DEV_IOC_BACKING_OPEN: libc::c_ulong = ioc_w(1, std::mem::size_of::<BackingMap>());
const FUSE_DEV_IOC_BACKING_CLOSE: libc::c_ulong = ioc_w(2, std::mem::size_of::<u32>());

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Registers `fd` as a backing file on the FUSE device `dev_fd`.
pub fn backing_open(dev_fd: RawFd, fd: RawFd) -> Result<u32, i32> {
    let map = BackingMap {
        fd,
        flags: 0,
        padding: 0,
    };
    // SAFETY: the ioctl reads a fuse_backing_map we own for the call's duration.
    let r = unsafe { libc::ioctl(dev_fd, FUSE_DEV_IOC_BACKING_OPEN, &map as *const BackingMap) };
    match r {
        r if r > 0 => Ok(r as u32),
        0 => Err(libc::EPROTO),
        _ => Err(errno()),
    }
}

pub fn backing_close(dev_fd: RawFd, id: u32) -> Result<(), i32> {
    // SAFETY: the ioctl reads one u32 we own.
    let r = unsafe { libc::ioctl(dev_fd, FUSE_DEV_IOC_BACKING_CLOSE, &id as *const u32) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// The identity and type of an open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    /// mtime and size, which libfuse's auto_cache compares (fpio emulates it).
    pub version: (i64, i64, i64),
}

impl FileId {
    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

pub fn fstat(fd: RawFd) -> Result<FileId, i32> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole struct stat on success.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return Err(errno());
    }
    // SAFETY: fstat succeeded, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    Ok(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        version: (st.st_mtime, st.st_mtime_nsec, st.st_size),
    })
}

/// `O_ACCMODE` of an open fd.
pub fn access_mode(fd: RawFd) -> Result<i32, i32> {
    // SAFETY: F_GETFL takes no pointer.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r & libc::O_ACCMODE)
    }
}

pub fn dup_cloexec(fd: RawFd) -> Result<RawFd, i32> {
    // SAFETY: plain fcntl on an fd number.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd this crate owns.
    unsafe { libc::close(fd) };
}

/// Writes all of `data` to `fd`, retrying on EINTR and short writes.
pub fn write_all(fd: RawFd, mut data: &[u8]) -> Result<(), i32> {
    while !data.is_empty() {
        // SAFETY: data is a live slice.
        let r = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if r < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        data = &data[r as usize..];
    }
    Ok(())
}

const CAP_V3: u32 = 0x2008_0522;
pub(crate) const CAP_FSETID: u32 = 4;
pub(crate) const CAP_SYS_ADMIN: u32 = 21;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> Result<[CapData; 2], i32> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two CapData for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(data)
    }
}

fn capset(data: &[CapData; 2]) -> Result<(), i32> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    // SAFETY: capset reads two CapData for version 3; it changes this thread only.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Whether the calling thread has `cap` in its effective set.
pub fn has_effective_cap(cap: u32) -> bool {
    capget()
        .map(|d| d[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0)
        .unwrap_or(false)
}

/// Runs `f` with `cap` dropped from this thread's effective set, then
/// restores it. Capabilities are per thread, so no other thread of the
/// server is affected. If the set cannot be read or changed, `f` runs as is.
pub fn without_effective_cap<T>(cap: u32, f: impl FnOnce() -> T) -> T {
    let Ok(orig) = capget() else { return f() };
    let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
    if orig[word].effective & bit == 0 {
        return f();
    }
    let mut reduced = orig;
    reduced[word].effective &= !bit;
    if capset(&reduced).is_err() {
        return f();
    }
    let v = f();
    let _ = capset(&orig);
    v
}

/// An anonymous regular file, for probing BACKING_OPEN without touching the
/// server's files.
pub fn memfd() -> Result<RawFd, i32> {
    // SAFETY: name is a NUL-terminated literal.
    let r = unsafe { libc::memfd_create(c"fpio-probe".as_ptr(), libc::MFD_CLOEXEC) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_uapi() {
        assert_eq!(FUSE_DEV_IOC_BACKING_OPEN, 0x4010_e501);
        assert_eq!(FUSE_DEV_IOC_BACKING_CLOSE, 0x4004_e502);
    }

    #[test]
    fn fstat_rejects_bad_fds() {
        assert_eq!(fstat(-1), Err(libc::EBADF));
        assert_eq!(fstat(1 << 20), Err(libc::EBADF));
        let fd = memfd().unwrap();
        assert!(fstat(fd).unwrap().is_regular());
        assert_eq!(access_mode(fd), Ok(libc::O_RDWR));
        close(fd);
    }
}
