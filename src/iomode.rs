//! Open-reply flags and the io mode they select, as the kernel sees them.
//!
//! An open's io mode is the DIRECT_IO and PASSTHROUGH bits of its reply;
//! DIRECT_IO wins over PASSTHROUGH for read/write (the kernel then uses the
//! backing file only for mmap).

use bitflags::bitflags;

bitflags! {
    /// `struct fuse_open_out.open_flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct OpenFlags: u32 {
        const DIRECT_IO = 1 << 0;
        const KEEP_CACHE = 1 << 1;
        const NONSEEKABLE = 1 << 2;
        const CACHE_DIR = 1 << 3;
        const STREAM = 1 << 4;
        const NOFLUSH = 1 << 5;
        const PARALLEL_DIRECT_WRITES = 1 << 6;
        const PASSTHROUGH = 1 << 7;
        // Bits a newer kernel may define are carried, never dropped.
        const _ = !0;
    }
}

/// The only flags a passthrough reply may carry; any other bit fails the open.
pub const PASSTHROUGH_ALLOWED: OpenFlags = OpenFlags::PASSTHROUGH
    .union(OpenFlags::DIRECT_IO)
    .union(OpenFlags::PARALLEL_DIRECT_WRITES)
    .union(OpenFlags::NOFLUSH);

/// The io mode of one open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// Page cache; reads and writes go to the server.
    Cached,
    /// FOPEN_DIRECT_IO (with or without PASSTHROUGH): reads and writes go to the server.
    Direct,
    /// PASSTHROUGH alone: reads and writes go to the backing file.
    Passthrough,
}

/// `FOPEN_IOMODE()`: the bits that select the io mode.
pub fn iomode_bits(flags: u32) -> u32 {
    flags & (OpenFlags::DIRECT_IO | OpenFlags::PASSTHROUGH).bits()
}

pub fn io_mode(flags: u32) -> IoMode {
    let bits = iomode_bits(flags);
    if bits == 0 {
        IoMode::Cached
    } else if bits & OpenFlags::DIRECT_IO.bits() != 0 {
        IoMode::Direct
    } else {
        IoMode::Passthrough
    }
}

/// Which kernel behaviour to model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelRule {
    /// Every released kernel: PARALLEL_DIRECT_WRITES needs DIRECT_IO.
    Legacy,
    /// The series (v3): PARALLEL_DIRECT_WRITES is dropped only in cached mode.
    Series,
}

impl KernelRule {
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(KernelRule::Legacy),
            1 => Some(KernelRule::Series),
            _ => None,
        }
    }
}

/// True iff `flags` asks for passthrough and carries nothing the kernel
/// refuses alongside it.
pub fn passthrough_flags_valid(flags: u32) -> bool {
    let f = OpenFlags::from_bits_retain(flags);
    f.contains(OpenFlags::PASSTHROUGH) && PASSTHROUGH_ALLOWED.contains(f)
}

/// The open flags the kernel keeps from a reply, or `None` when the kernel
/// fails the open (an illegal passthrough mix: the application sees EIO).
pub fn effective_flags(flags: u32, rule: KernelRule) -> Option<u32> {
    let f = OpenFlags::from_bits_retain(flags);
    if f.contains(OpenFlags::PASSTHROUGH) && !passthrough_flags_valid(flags) {
        return None;
    }
    let drop_parallel = match rule {
        KernelRule::Legacy => !f.contains(OpenFlags::DIRECT_IO),
        KernelRule::Series => io_mode(flags) == IoMode::Cached,
    };
    let kept = if drop_parallel {
        f - OpenFlags::PARALLEL_DIRECT_WRITES
    } else {
        f
    };
    Some(kept.bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIO: u32 = OpenFlags::DIRECT_IO.bits();
    const PT: u32 = OpenFlags::PASSTHROUGH.bits();
    const PDW: u32 = OpenFlags::PARALLEL_DIRECT_WRITES.bits();

    #[test]
    fn modes() {
        assert_eq!(io_mode(0), IoMode::Cached);
        assert_eq!(io_mode(OpenFlags::KEEP_CACHE.bits()), IoMode::Cached);
        assert_eq!(io_mode(DIO), IoMode::Direct);
        assert_eq!(io_mode(DIO | PT), IoMode::Direct);
        assert_eq!(io_mode(PT), IoMode::Passthrough);
        assert_eq!(io_mode(PT | PDW), IoMode::Passthrough);
    }

    #[test]
    fn passthrough_loses_parallel_only_under_legacy() {
        assert_eq!(effective_flags(PT | PDW, KernelRule::Legacy), Some(PT));
        assert_eq!(effective_flags(PT | PDW, KernelRule::Series), Some(PT | PDW));
        assert_eq!(effective_flags(DIO | PDW, KernelRule::Legacy), Some(DIO | PDW));
        assert_eq!(effective_flags(PDW, KernelRule::Series), Some(0));
        assert_eq!(effective_flags(PDW, KernelRule::Legacy), Some(0));
        assert_eq!(
            effective_flags(DIO | PT | PDW, KernelRule::Legacy),
            Some(DIO | PT | PDW)
        );
    }

    #[test]
    fn illegal_passthrough_mixes_fail() {
        for bad in [
            OpenFlags::KEEP_CACHE,
            OpenFlags::NONSEEKABLE,
            OpenFlags::STREAM,
            OpenFlags::CACHE_DIR,
        ] {
            let f = PT | bad.bits();
            assert!(!passthrough_flags_valid(f));
            assert_eq!(effective_flags(f, KernelRule::Series), None);
        }
        assert!(passthrough_flags_valid(
            PT | PDW | OpenFlags::NOFLUSH.bits() | DIO
        ));
        assert!(!passthrough_flags_valid(DIO | PDW));
        // Unknown high bits are not allowed next to passthrough either.
        assert!(!passthrough_flags_valid(PT | (1 << 20)));
        assert_eq!(effective_flags(1 << 20, KernelRule::Legacy), Some(1 << 20));
    }
}
