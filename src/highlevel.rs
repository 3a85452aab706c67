//! High-level (fuse.h) servers: what fpio keeps for opens it sees only as a
//! `struct fuse_file_info` inside the server's open()/create(), with neither
//! a request nor an inode number.
//!
//! Opens are keyed by their backing file (device and inode number of the
//! server's fd): in a server that mirrors files, which high-level servers
//! are, each FUSE inode is backed by one file, so its opens share one backing
//! id. Hard links (two FUSE inodes, one file) share it too, which the kernel
//! allows. Release brings only the file handle, so opens are remembered by it.
//!
//! libfuse sets some open flags after the server's open() returned, from
//! `struct fuse_config`: `kernel_cache` and `auto_cache` set FOPEN_KEEP_CACHE
//! (refused by the kernel next to FOPEN_PASSTHROUGH: EIO in the application)
//! and `direct_io` sets FOPEN_DIRECT_IO. Where passthrough can be live fpio
//! takes those options over in init() and gives opens that do not pass
//! through the flags libfuse would have given them.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::glue::{CacheOptions, FiSet};
use crate::registry::FallbackKind;
use crate::reply::FileInfo;
use crate::sys::FileId;

/// The registry key of a backing file. Two files could share a key only if
/// this mix collided; the registry compares the files themselves before it
/// shares an id, so a collision costs passthrough for one open, nothing more.
pub fn key_of(file: &FileId) -> u64 {
    file.ino ^ file.dev.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

const SHARDS: usize = 16;
/// auto_cache remembers at most this many files (like libfuse forgetting
/// nodes); a forgotten file's next open simply drops its cache.
const VERSIONS_MAX: usize = 4096;

/// (device, inode) -> (mtime seconds, mtime nanoseconds, size).
type Versions = HashMap<(u64, u64), (i64, i64, i64)>;

pub struct HighLevel {
    /// The options fpio took over from the server's configuration (all off
    /// where passthrough cannot be live: libfuse then applies them itself).
    pub taken: CacheOptions,
    /// Open file handle -> registry key (None: an open the registry does not
    /// hold). A handle reused before its release shows up twice, newest last.
    opens: Vec<Mutex<HashMap<u64, Vec<Option<u64>>>>>,
    /// auto_cache: each file's mtime and size at its last cached open.
    versions: Mutex<Versions>,
}

fn shard(fh: u64) -> usize {
    (fh.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS
}

impl HighLevel {
    pub fn new(taken: CacheOptions) -> Self {
        HighLevel {
            taken,
            opens: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            versions: Mutex::new(HashMap::new()),
        }
    }

    pub fn remember(&self, fh: u64, key: Option<u64>) {
        self.opens[shard(fh)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(fh)
            .or_default()
            .push(key);
    }

    /// The newest open under `fh`, forgotten; None if there is none.
    pub fn forget(&self, fh: u64) -> Option<Option<u64>> {
        let mut map = self.opens[shard(fh)].lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(&fh)?;
        let key = list.pop();
        if list.is_empty() {
            map.remove(&fh);
        }
        key
    }

    /// The io an open without passthrough gets: the server's own choice,
    /// with the `direct_io` option fpio took over.
    pub fn fallback_kind(&self, fi: &FileInfo) -> FallbackKind {
        if fi.direct_io || self.taken.direct_io != 0 {
            FallbackKind::Direct
        } else {
            FallbackKind::Cached
        }
    }

    /// What an open without passthrough gets, in the io `kind` decided for
    /// it: what libfuse would have set from the options fpio took over, on
    /// top of the server's own fields.
    pub fn fallback_fi(&self, fi: &FileInfo, kind: FallbackKind, file: Option<&FileId>) -> FiSet {
        let direct = kind == FallbackKind::Direct;
        let keep = fi.keep_cache
            || self.taken.kernel_cache != 0
            || (self.taken.auto_cache != 0 && file.is_some_and(|f| self.unchanged_since_last_open(f)));
        FiSet {
            backing_id: 0,
            direct_io: u32::from(direct),
            keep_cache: u32::from(keep),
            parallel_direct_writes: u32::from(fi.parallel_direct_writes || direct),
        }
    }

    /// libfuse's auto_cache: keep the page cache when the file's mtime and
    /// size are those of its previous open (the first open keeps nothing).
    fn unchanged_since_last_open(&self, f: &FileId) -> bool {
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= VERSIONS_MAX && !v.contains_key(&(f.dev, f.ino)) {
            v.clear();
        }
        v.insert((f.dev, f.ino), f.version) == Some(f.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dev: u64, ino: u64, version: (i64, i64, i64)) -> FileId {
        FileId {
            dev,
            ino,
            mode: libc::S_IFREG | 0o644,
            version,
        }
    }

    fn fi() -> FileInfo {
        FileInfo {
            fh: 7,
            flags: libc::O_RDWR,
            ..FileInfo::default()
        }
    }

    #[test]
    fn keys_tell_devices_apart() {
        assert_ne!(key_of(&file(1, 5, (0, 0, 0))), key_of(&file(2, 5, (0, 0, 0))));
        assert_eq!(key_of(&file(1, 5, (0, 0, 0))), key_of(&file(1, 5, (9, 9, 9))));
    }

    #[test]
    fn handles_are_forgotten_newest_first() {
        let h = HighLevel::new(CacheOptions::default());
        h.remember(3, Some(10));
        h.remember(3, None);
        assert_eq!(h.forget(3), Some(None));
        assert_eq!(h.forget(3), Some(Some(10)));
        assert_eq!(h.forget(3), None);
    }

    #[test]
    fn fallbacks_get_the_options_fpio_took_over() {
        let plain = HighLevel::new(CacheOptions::default());
        assert_eq!(
            plain.fallback_fi(&fi(), plain.fallback_kind(&fi()), None),
            FiSet::default()
        );
        // The io the registry decided wins over the server's choice.
        let forced = plain.fallback_fi(&fi(), FallbackKind::Direct, None);
        assert_eq!((forced.direct_io, forced.parallel_direct_writes), (1, 1));
        let kc = HighLevel::new(CacheOptions {
            kernel_cache: 1,
            ..CacheOptions::default()
        });
        assert_eq!(kc.fallback_fi(&fi(), kc.fallback_kind(&fi()), None).keep_cache, 1);
        let dio = HighLevel::new(CacheOptions {
            direct_io: 1,
            ..CacheOptions::default()
        });
        let set = dio.fallback_fi(&fi(), dio.fallback_kind(&fi()), None);
        assert_eq!(
            (set.direct_io, set.parallel_direct_writes, set.keep_cache),
            (1, 1, 0)
        );
    }

    #[test]
    fn auto_cache_keeps_only_an_unchanged_file() {
        let ac = HighLevel::new(CacheOptions {
            auto_cache: 1,
            ..CacheOptions::default()
        });
        let v1 = file(1, 5, (100, 0, 4096));
        assert_eq!(
            ac.fallback_fi(&fi(), FallbackKind::Cached, Some(&v1)).keep_cache,
            0,
            "first open"
        );
        assert_eq!(
            ac.fallback_fi(&fi(), FallbackKind::Cached, Some(&v1)).keep_cache,
            1,
            "unchanged"
        );
        let v2 = file(1, 5, (100, 0, 8192));
        assert_eq!(
            ac.fallback_fi(&fi(), FallbackKind::Cached, Some(&v2)).keep_cache,
            0,
            "grown"
        );
        assert_eq!(
            ac.fallback_fi(&fi(), FallbackKind::Cached, None).keep_cache,
            0,
            "no file to look at"
        );
    }
}
