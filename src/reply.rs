//! Building open and create replies: which FOPEN_* flags each grant gets, and
//! the bytes of `fuse_open_out` / `fuse_entry_out + fuse_open_out`.

use crate::iomode::{passthrough_flags_valid, OpenFlags};
use crate::proto::{encode_entry_out, encode_open_out, Entry, ENTRY_OUT_LEN, OPEN_OUT_LEN};
use crate::registry::{FallbackKind, Grant};

/// The `struct fuse_file_info` bits fpio honours, flattened by the glue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    pub fh: u64,
    pub flags: i32,
    /// libfuse 3.17+: an id the server registered with fuse_passthrough_open().
    pub backing_id: i32,
    pub direct_io: bool,
    pub keep_cache: bool,
    pub nonseekable: bool,
    pub noflush: bool,
    /// libfuse 3.15+: the server asked for parallel direct writes itself.
    pub parallel_direct_writes: bool,
    pub cache_readdir: bool,
}

impl FileInfo {
    pub fn access(&self) -> i32 {
        self.flags & libc::O_ACCMODE
    }

    /// The io an open without passthrough gets: the server's own choice.
    pub fn fallback(&self) -> FallbackKind {
        if self.direct_io {
            FallbackKind::Direct
        } else {
            FallbackKind::Cached
        }
    }

    /// The open flags libfuse's fuse_reply_open() would send for this
    /// `struct fuse_file_info` (without a backing id).
    pub fn plain_flags(&self) -> OpenFlags {
        let mut f = OpenFlags::empty();
        f.set(OpenFlags::DIRECT_IO, self.direct_io);
        f.set(OpenFlags::KEEP_CACHE, self.keep_cache);
        f.set(OpenFlags::CACHE_DIR, self.cache_readdir);
        f.set(OpenFlags::NONSEEKABLE, self.nonseekable);
        f.set(OpenFlags::NOFLUSH, self.noflush);
        f.set(OpenFlags::PARALLEL_DIRECT_WRITES, self.parallel_direct_writes);
        f
    }
}

/// The reply's open flags and backing id for a grant. Every passthrough
/// combination produced here is one the kernel accepts; PARALLEL_DIRECT_WRITES
/// is always asked for where the io is not cached. An open without a backing
/// file gets exactly the server's own reply, plus PARALLEL_DIRECT_WRITES
/// where that reply is direct io.
pub fn open_flags(grant: Grant, fi: &FileInfo) -> (u32, i32) {
    let mut f = OpenFlags::empty();
    // NOFLUSH is legal in every mode.
    f.set(OpenFlags::NOFLUSH, fi.noflush);
    let id = match grant {
        Grant::Passthrough(id) => {
            f |= OpenFlags::PASSTHROUGH | OpenFlags::PARALLEL_DIRECT_WRITES;
            id as i32
        }
        Grant::SharedDirect(id) => {
            f |= OpenFlags::PASSTHROUGH | OpenFlags::DIRECT_IO | OpenFlags::PARALLEL_DIRECT_WRITES;
            id as i32
        }
        Grant::Fallback(..) => {
            f = fi.plain_flags();
            if f.contains(OpenFlags::DIRECT_IO) {
                f |= OpenFlags::PARALLEL_DIRECT_WRITES;
            }
            0
        }
        Grant::Busy | Grant::Stale => return (0, 0),
    };
    debug_assert!(id == 0 || passthrough_flags_valid(f.bits()));
    (f.bits(), id)
}

pub fn open_reply(fh: u64, flags: u32, backing_id: i32) -> [u8; OPEN_OUT_LEN] {
    encode_open_out(fh, flags, backing_id)
}

pub fn create_reply(e: &Entry, fh: u64, flags: u32, backing_id: i32) -> [u8; ENTRY_OUT_LEN + OPEN_OUT_LEN] {
    let mut b = [0u8; ENTRY_OUT_LEN + OPEN_OUT_LEN];
    b[..ENTRY_OUT_LEN].copy_from_slice(&encode_entry_out(e));
    b[ENTRY_OUT_LEN..].copy_from_slice(&encode_open_out(fh, flags, backing_id));
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counter;
    use crate::iomode::{effective_flags, KernelRule};

    fn all_fi() -> Vec<FileInfo> {
        (0..16u32)
            .map(|b| FileInfo {
                direct_io: b & 1 != 0,
                keep_cache: b & 2 != 0,
                nonseekable: b & 4 != 0,
                noflush: b & 8 != 0,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn passthrough_replies_are_always_legal_and_keep_parallel_under_the_series() {
        for fi in all_fi() {
            for g in [Grant::Passthrough(3), Grant::SharedDirect(3)] {
                let (f, id) = open_flags(g, &fi);
                assert_eq!(id, 3);
                assert!(passthrough_flags_valid(f), "{f:#x}");
                let kept = effective_flags(f, KernelRule::Series).unwrap();
                assert_ne!(kept & OpenFlags::PARALLEL_DIRECT_WRITES.bits(), 0);
            }
        }
    }

    #[test]
    fn fallbacks_are_the_servers_own_reply() {
        for fi in all_fi() {
            let kind = fi.fallback();
            let (f, id) = open_flags(Grant::Fallback(kind, Counter::FallbackDeclined, 0), &fi);
            assert_eq!(id, 0);
            assert_eq!(f & OpenFlags::PASSTHROUGH.bits(), 0);
            // Exactly what fuse_reply_open() sends, plus parallel direct writes
            // where (and only where) the reply is direct io.
            let mut want = fi.plain_flags();
            if fi.direct_io {
                assert_eq!(kind, FallbackKind::Direct);
                want |= OpenFlags::PARALLEL_DIRECT_WRITES;
            } else {
                assert_eq!(kind, FallbackKind::Cached);
                assert_eq!(f & OpenFlags::PARALLEL_DIRECT_WRITES.bits(), 0);
            }
            assert_eq!(f, want.bits(), "{fi:?}");
        }
    }

    #[test]
    fn create_reply_has_both_parts() {
        let e = Entry {
            ino: 11,
            generation: 0,
            attr_timeout: 1.0,
            entry_timeout: 1.0,
            attr: Default::default(),
        };
        let b = create_reply(&e, 99, 0x80, 4);
        assert_eq!(&b[0..8], &11u64.to_ne_bytes());
        assert_eq!(
            crate::proto::parse_open_out(&b[ENTRY_OUT_LEN..]),
            Some((99, 0x80, 4))
        );
    }
}
