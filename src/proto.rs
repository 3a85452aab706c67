//! The few pieces of the FUSE wire protocol fpio reads or writes, parsed and
//! built from byte slices without `unsafe`. Every parser takes whatever bytes
//! arrived and answers `None` for anything too short; nothing here trusts a
//! length field without checking it against the buffer.

use crate::iomode::OpenFlags;

/// Opcodes fpio looks at.
pub mod opcode {
    pub(crate) const OPEN: u32 = 14;
    pub(crate) const READ: u32 = 15;
    pub(crate) const WRITE: u32 = 16;
    pub(crate) const GETXATTR: u32 = 22;
    pub(crate) const INIT: u32 = 26;
    pub(crate) const SETATTR: u32 = 4;
    pub(crate) const CREATE: u32 = 35;
}

/// INIT flags (64-bit: `flags | flags2 << 32`).
pub mod init_flag {
    pub(crate) const WRITEBACK_CACHE: u64 = 1 << 16;
    pub(crate) const HANDLE_KILLPRIV: u64 = 1 << 19;
    pub(crate) const HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    pub(crate) const INIT_EXT: u64 = 1 << 30;
    pub(crate) const DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
    pub(crate) const PASSTHROUGH: u64 = 1 << 37;
}

/// The kill-suid/sgid markers the kernel sets when FUSE_HANDLE_KILLPRIV_V2 is on.
pub mod kill_flag {
    /// `fuse_write_in.write_flags`
    pub(crate) const WRITE_KILL_SUIDGID: u32 = 1 << 2;
    /// `fuse_setattr_in.valid`
    pub(crate) const FATTR_KILL_SUIDGID: u32 = 1 << 11;
    /// `fuse_setattr_in.valid` bits that name no attribute (FATTR_FH, FATTR_LOCKOWNER).
    pub(crate) const FATTR_NOT_ATTRIBUTES: u32 = (1 << 6) | (1 << 9);
    /// `fuse_open_in.open_flags` (OPEN and CREATE)
    pub(crate) const OPEN_KILL_SUIDGID: u32 = 1 << 0;
}

pub(crate) const IN_HEADER_LEN: usize = 40;
pub(crate) const OUT_HEADER_LEN: usize = 16;
/// `struct fuse_init_out` as of protocol 7.40 (max_stack_depth at 36).
pub(crate) const INIT_OUT_LEN: usize = 64;
pub(crate) const OPEN_OUT_LEN: usize = 16;
pub(crate) const ENTRY_OUT_LEN: usize = 128;
/// Passthrough needs max_stack_depth in (0, FILESYSTEM_MAX_STACK_DEPTH].
pub(crate) const MAX_STACK_DEPTH: u32 = 2;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// `struct fuse_in_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < IN_HEADER_LEN {
            return None;
        }
        Some(InHeader {
            len: u32_at(b, 0)?,
            opcode: u32_at(b, 4)?,
            unique: u64_at(b, 8)?,
            nodeid: u64_at(b, 16)?,
            uid: u32_at(b, 24)?,
        })
    }
}

/// `struct fuse_out_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutHeader {
    pub len: u32,
    pub error: i32,
    pub unique: u64,
}

impl OutHeader {
    pub fn parse(b: &[u8]) -> Option<Self> {
        Some(OutHeader {
            len: u32_at(b, 0)?,
            error: u32_at(b, 4)? as i32,
            unique: u64_at(b, 8)?,
        })
    }

    pub fn encode(&self) -> [u8; OUT_HEADER_LEN] {
        let mut b = [0u8; OUT_HEADER_LEN];
        put_u32(&mut b, 0, self.len);
        put_u32(&mut b, 4, self.error as u32);
        put_u64(&mut b, 8, self.unique);
        b
    }
}

/// What the kernel offered in its INIT request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOffer {
    pub major: u32,
    pub minor: u32,
    /// `flags | flags2 << 32` (flags2 only when the kernel set FUSE_INIT_EXT).
    pub flags: u64,
}

impl InitOffer {
    /// An offer rebuilt from what libfuse reports as capable (where fpio did
    /// not see the INIT request itself): only these flags are known.
    pub fn from_capable(
        major: u32,
        minor: u32,
        passthrough: bool,
        direct_io_allow_mmap: bool,
        killpriv_v2: bool,
        writeback: bool,
    ) -> Self {
        let mut flags = init_flag::INIT_EXT;
        for (on, f) in [
            (passthrough, init_flag::PASSTHROUGH),
            (direct_io_allow_mmap, init_flag::DIRECT_IO_ALLOW_MMAP),
            (killpriv_v2, init_flag::HANDLE_KILLPRIV_V2),
            (writeback, init_flag::WRITEBACK_CACHE),
        ] {
            if on {
                flags |= f;
            }
        }
        InitOffer { major, minor, flags }
    }

    /// Parses the body of an INIT request (after the in header).
    pub fn parse(body: &[u8]) -> Option<Self> {
        let major = u32_at(body, 0)?;
        let minor = u32_at(body, 4)?;
        // Protocols before 7.6 carry no flags at all.
        let mut flags = u64::from(u32_at(body, 12).unwrap_or(0));
        if flags & init_flag::INIT_EXT != 0 {
            flags |= u64::from(u32_at(body, 16).unwrap_or(0)) << 32;
        }
        Some(InitOffer { major, minor, flags })
    }
}

/// The fields of `struct fuse_init_out` fpio may change, over a full-size copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitReply {
    pub raw: [u8; INIT_OUT_LEN],
    /// How many bytes the server sent (fpio may have to send more).
    pub sent_len: usize,
}

impl InitReply {
    const FLAGS: usize = 12;
    const FLAGS2: usize = 32;
    const MAX_STACK_DEPTH: usize = 36;

    /// Takes the server's reply body, which may be shorter than today's
    /// struct (old libfuse) or longer (a future one: the tail is dropped only
    /// if it is all zero, else `None`, and fpio leaves the reply alone).
    pub fn parse(body: &[u8]) -> Option<Self> {
        // major, minor, max_readahead, flags: without them there is nothing to patch.
        if body.len() < 16 {
            return None;
        }
        if body.len() > INIT_OUT_LEN && body[INIT_OUT_LEN..].iter().any(|&b| b != 0) {
            return None;
        }
        let mut raw = [0u8; INIT_OUT_LEN];
        let n = body.len().min(INIT_OUT_LEN);
        raw[..n].copy_from_slice(&body[..n]);
        Some(InitReply {
            raw,
            sent_len: body.len(),
        })
    }

    pub fn major(&self) -> u32 {
        u32_at(&self.raw, 0).unwrap_or(0)
    }

    pub fn flags(&self) -> u64 {
        let lo = u64::from(u32_at(&self.raw, Self::FLAGS).unwrap_or(0));
        let hi = u64::from(u32_at(&self.raw, Self::FLAGS2).unwrap_or(0));
        if lo & init_flag::INIT_EXT != 0 {
            lo | hi << 32
        } else {
            lo
        }
    }

    pub fn set_flags(&mut self, flags: u64) {
        put_u32(&mut self.raw, Self::FLAGS, flags as u32);
        put_u32(&mut self.raw, Self::FLAGS2, (flags >> 32) as u32);
    }

    pub fn max_stack_depth(&self) -> u32 {
        u32_at(&self.raw, Self::MAX_STACK_DEPTH).unwrap_or(0)
    }

    pub fn set_max_stack_depth(&mut self, depth: u32) {
        put_u32(&mut self.raw, Self::MAX_STACK_DEPTH, depth);
    }

    /// The body to send: the full struct, so max_stack_depth reaches the kernel.
    pub fn body(&self) -> &[u8] {
        &self.raw
    }
}

/// `struct fuse_open_out` (padding became backing_id in 7.40).
pub fn encode_open_out(fh: u64, open_flags: u32, backing_id: i32) -> [u8; OPEN_OUT_LEN] {
    let mut b = [0u8; OPEN_OUT_LEN];
    put_u64(&mut b, 0, fh);
    put_u32(&mut b, 8, open_flags);
    put_u32(&mut b, 12, backing_id as u32);
    b
}

/// FOPEN_NOFLUSH, which libfuse may add after a high-level open() returned
/// (`no_rofd_flush`) and which is legal next to passthrough.
const FOPEN_NOFLUSH: u32 = OpenFlags::NOFLUSH.bits();
/// `struct fuse_entry_out` of protocols before 7.9.
const COMPAT_ENTRY_OUT_LEN: usize = 120;

/// Gives an OPEN or CREATE reply (out header included) the open flags
/// `open_flags` (keeping its NOFLUSH) and `backing_id`. False, and nothing
/// changed, for a message of any other length.
pub fn patch_open_out(msg: &mut [u8], open_flags: u32, backing_id: i32) -> bool {
    let body = msg.len().saturating_sub(OUT_HEADER_LEN);
    if ![
        OPEN_OUT_LEN,
        ENTRY_OUT_LEN + OPEN_OUT_LEN,
        COMPAT_ENTRY_OUT_LEN + OPEN_OUT_LEN,
    ]
    .contains(&body)
    {
        return false;
    }
    let at = msg.len() - OPEN_OUT_LEN;
    let kept = u32_at(msg, at + 8).unwrap_or(0) & FOPEN_NOFLUSH;
    put_u32(msg, at + 8, open_flags | kept);
    put_u32(msg, at + 12, backing_id as u32);
    true
}

/// Parses `struct fuse_open_out` (tests and fuzzing check the round trip).
pub fn parse_open_out(b: &[u8]) -> Option<(u64, u32, i32)> {
    Some((u64_at(b, 0)?, u32_at(b, 8)?, u32_at(b, 12)? as i32))
}

/// What fpio needs of a `struct fuse_entry_param`, flattened by the glue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    pub ino: u64,
    pub generation: u64,
    pub attr_timeout: f64,
    pub entry_timeout: f64,
    pub attr: Attr,
}

/// The `struct stat` fields the kernel takes in `struct fuse_attr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub atimensec: u32,
    pub mtimensec: u32,
    pub ctimensec: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

/// A timeout in seconds as the kernel's (seconds, nanoseconds), clamped the
/// way libfuse clamps it: negative and NaN mean 0.
pub fn split_timeout(t: f64) -> (u64, u32) {
    if t.is_nan() || t <= 0.0 {
        return (0, 0);
    }
    if t >= u64::MAX as f64 {
        return (u64::MAX, 0);
    }
    let secs = t.trunc() as u64;
    let nanos = ((t - t.trunc()) * 1e9) as u32;
    (secs, nanos.min(999_999_999))
}

/// `struct fuse_entry_out`.
pub fn encode_entry_out(e: &Entry) -> [u8; ENTRY_OUT_LEN] {
    let mut b = [0u8; ENTRY_OUT_LEN];
    let (entry_s, entry_ns) = split_timeout(e.entry_timeout);
    let (attr_s, attr_ns) = split_timeout(e.attr_timeout);
    put_u64(&mut b, 0, e.ino);
    put_u64(&mut b, 8, e.generation);
    put_u64(&mut b, 16, entry_s);
    put_u64(&mut b, 24, attr_s);
    put_u32(&mut b, 32, entry_ns);
    put_u32(&mut b, 36, attr_ns);
    let a = &e.attr;
    let at = 40;
    put_u64(&mut b, at, a.ino);
    put_u64(&mut b, at + 8, a.size);
    put_u64(&mut b, at + 16, a.blocks);
    put_u64(&mut b, at + 24, a.atime as u64);
    put_u64(&mut b, at + 32, a.mtime as u64);
    put_u64(&mut b, at + 40, a.ctime as u64);
    put_u32(&mut b, at + 48, a.atimensec);
    put_u32(&mut b, at + 52, a.mtimensec);
    put_u32(&mut b, at + 56, a.ctimensec);
    put_u32(&mut b, at + 60, a.mode);
    put_u32(&mut b, at + 64, a.nlink);
    put_u32(&mut b, at + 68, a.uid);
    put_u32(&mut b, at + 72, a.gid);
    put_u32(&mut b, at + 76, a.rdev);
    put_u32(&mut b, at + 80, a.blksize);
    // at + 84: fuse_attr.flags stays 0.
    b
}

/// The kill-suid/sgid marker a request carries, if any (HANDLE_KILLPRIV_V2).
pub fn request_kills_suidgid(h: &InHeader, body: &[u8]) -> bool {
    match h.opcode {
        // fuse_write_in: fh u64, offset u64, size u32, write_flags u32
        opcode::WRITE => u32_at(body, 20).is_some_and(|f| f & kill_flag::WRITE_KILL_SUIDGID != 0),
        // fuse_setattr_in: valid u32 first. With KILLPRIV_V2 the kill that a
        // passthrough write's file_remove_privs() asks for arrives as a
        // SETATTR that sets nothing at all; chown(-1, -1) kills the bits too.
        opcode::SETATTR => u32_at(body, 0).is_some_and(|v| {
            v & kill_flag::FATTR_KILL_SUIDGID != 0 || v & !kill_flag::FATTR_NOT_ATTRIBUTES == 0
        }),
        // fuse_open_in / fuse_create_in: flags u32, open_flags u32 (7.33+)
        opcode::OPEN | opcode::CREATE => {
            u32_at(body, 4).is_some_and(|f| f & kill_flag::OPEN_KILL_SUIDGID != 0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_replies_are_patched_only_at_their_lengths() {
        let header = [0u8; OUT_HEADER_LEN];
        let mut open = [&header[..], &encode_open_out(9, FOPEN_NOFLUSH | 2, 0)].concat();
        assert!(patch_open_out(&mut open, 1 << 7, 5));
        assert_eq!(
            parse_open_out(&open[OUT_HEADER_LEN..]),
            Some((9, (1 << 7) | FOPEN_NOFLUSH, 5))
        );
        let mut create = vec![0u8; OUT_HEADER_LEN + ENTRY_OUT_LEN + OPEN_OUT_LEN];
        assert!(patch_open_out(&mut create, 1 << 7, 6));
        assert_eq!(
            parse_open_out(&create[OUT_HEADER_LEN + ENTRY_OUT_LEN..]),
            Some((0, 1 << 7, 6))
        );
        for len in [0, OUT_HEADER_LEN, OUT_HEADER_LEN + 8, OUT_HEADER_LEN + 64] {
            let mut other = vec![0xaa; len];
            assert!(!patch_open_out(&mut other, 1, 1));
            assert!(other.iter().all(|&b| b == 0xaa));
        }
    }

    fn in_header(opcode: u32, unique: u64, len: u32) -> Vec<u8> {
        let mut b = vec![0u8; IN_HEADER_LEN];
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b[4..8].copy_from_slice(&opcode.to_ne_bytes());
        b[8..16].copy_from_slice(&unique.to_ne_bytes());
        b
    }

    #[test]
    fn in_header_needs_40_bytes() {
        let b = in_header(opcode::READ, 7, 80);
        assert_eq!(InHeader::parse(&b).unwrap().opcode, opcode::READ);
        assert_eq!(InHeader::parse(&b[..39]), None);
        assert_eq!(InHeader::parse(&[]), None);
    }

    #[test]
    fn init_offer_reads_flags2_only_with_init_ext() {
        let mut body = vec![0u8; 64];
        body[0..4].copy_from_slice(&7u32.to_ne_bytes());
        body[4..8].copy_from_slice(&45u32.to_ne_bytes());
        body[16..20].copy_from_slice(&(1u32 << 5).to_ne_bytes());
        let o = InitOffer::parse(&body).unwrap();
        assert_eq!(o.flags & init_flag::PASSTHROUGH, 0);
        body[12..16].copy_from_slice(&(init_flag::INIT_EXT as u32).to_ne_bytes());
        let o = InitOffer::parse(&body).unwrap();
        assert_ne!(o.flags & init_flag::PASSTHROUGH, 0);
        // Old kernels: 8 bytes, no flags.
        let o = InitOffer::parse(&body[..8]).unwrap();
        assert_eq!((o.major, o.minor, o.flags), (7, 45, 0));
        assert_eq!(InitOffer::parse(&body[..7]), None);
    }

    #[test]
    fn init_reply_short_long_and_patch() {
        let mut body = vec![0u8; 40];
        body[0..4].copy_from_slice(&7u32.to_ne_bytes());
        let mut r = InitReply::parse(&body).unwrap();
        r.set_flags(init_flag::INIT_EXT | init_flag::PASSTHROUGH);
        r.set_max_stack_depth(1);
        assert_eq!(r.body().len(), INIT_OUT_LEN);
        assert_eq!(r.flags(), init_flag::INIT_EXT | init_flag::PASSTHROUGH);
        assert_eq!(r.max_stack_depth(), 1);
        assert!(InitReply::parse(&body[..15]).is_none());
        let mut long = vec![0u8; 80];
        assert!(InitReply::parse(&long).is_some());
        long[70] = 1;
        assert!(InitReply::parse(&long).is_none());
    }

    #[test]
    fn open_out_round_trip() {
        let b = encode_open_out(0xdead_beef, 0x81, 3);
        assert_eq!(parse_open_out(&b), Some((0xdead_beef, 0x81, 3)));
        assert_eq!(parse_open_out(&b[..15]), None);
    }

    #[test]
    fn timeouts_clamp() {
        assert_eq!(split_timeout(-1.0), (0, 0));
        assert_eq!(split_timeout(f64::NAN), (0, 0));
        assert_eq!(split_timeout(1.5), (1, 500_000_000));
        assert_eq!(split_timeout(f64::INFINITY), (u64::MAX, 0));
    }

    #[test]
    fn entry_out_layout() {
        let e = Entry {
            ino: 5,
            generation: 6,
            attr_timeout: 2.25,
            entry_timeout: 1.0,
            attr: Attr {
                ino: 9,
                size: 4096,
                mode: 0o100644,
                blksize: 4096,
                ..Default::default()
            },
        };
        let b = encode_entry_out(&e);
        assert_eq!(u64_at(&b, 0), Some(5));
        assert_eq!(u64_at(&b, 24), Some(2));
        assert_eq!(u32_at(&b, 36), Some(250_000_000));
        assert_eq!(u64_at(&b, 48), Some(4096));
        assert_eq!(u32_at(&b, 100), Some(0o100644));
        assert_eq!(u32_at(&b, 120), Some(4096));
    }

    #[test]
    fn kill_markers() {
        let h = InHeader::parse(&in_header(opcode::WRITE, 1, 0)).unwrap();
        let mut w = vec![0u8; 40];
        assert!(!request_kills_suidgid(&h, &w));
        w[20..24].copy_from_slice(&kill_flag::WRITE_KILL_SUIDGID.to_ne_bytes());
        assert!(request_kills_suidgid(&h, &w));
        assert!(!request_kills_suidgid(&h, &w[..10]));
        let h = InHeader::parse(&in_header(opcode::READ, 1, 0)).unwrap();
        assert!(!request_kills_suidgid(&h, &w));
        let h = InHeader::parse(&in_header(opcode::SETATTR, 1, 0)).unwrap();
        let setattr = |valid: u32| valid.to_ne_bytes().to_vec();
        assert!(request_kills_suidgid(
            &h,
            &setattr(kill_flag::FATTR_KILL_SUIDGID | 8)
        ));
        assert!(request_kills_suidgid(&h, &setattr(0)));
        assert!(request_kills_suidgid(&h, &setattr(1 << 6)));
        assert!(!request_kills_suidgid(&h, &setattr(1)), "a chmod is not a kill");
        assert!(!request_kills_suidgid(&h, &[]));
    }
}
