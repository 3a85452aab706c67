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
}

impl FileInfo {
    pub fn access(&self) -> i32 {
        self.flags & libc::O_ACCMODE
    }

    /// The io a fallback open of this file gets: the server's own direct_io
    /// choice wins over the session's default.
    pub fn fallback(&self, session_default: FallbackKind) -> FallbackKind {
        if self.direct_io {
            FallbackKind::Direct
        } else {
            session_default
        }
    }
}

/// The reply's open flags and backing id for a grant. Every passthrough
/// combination produced here is one the kernel accepts; PARALLEL_DIRECT_WRITES
/// is always asked for where the io is not cached.
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
        Grant::Fallback(FallbackKind::Direct, ..) => {
            f |= OpenFlags::DIRECT_IO | OpenFlags::PARALLEL_DIRECT_WRITES;
            f.set(OpenFlags::NONSEEKABLE, fi.nonseekable);
            0
        }
        Grant::Fallback(FallbackKind::Cached, ..) => {
            f.set(OpenFlags::KEEP_CACHE, fi.keep_cache);
            f.set(OpenFlags::NONSEEKABLE, fi.nonseekable);
            0
        }
        Grant::Busy => return (0, 0),
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
    fn fallbacks_carry_no_backing() {
        for fi in all_fi() {
            let (f, id) = open_flags(
                Grant::Fallback(FallbackKind::Direct, Counter::FallbackDeclined, 0),
                &fi,
            );
            assert_eq!(id, 0);
            assert_eq!(f & OpenFlags::PASSTHROUGH.bits(), 0);
            assert_ne!(f & OpenFlags::DIRECT_IO.bits(), 0);
            let (f, _) = open_flags(
                Grant::Fallback(FallbackKind::Cached, Counter::FallbackDeclined, 0),
                &fi,
            );
            assert_eq!(f & (OpenFlags::DIRECT_IO | OpenFlags::PASSTHROUGH).bits(), 0);
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
