//! INIT negotiation that old libfuse cannot do: from the kernel's offer and
//! the server's own reply, decide whether passthrough can be live, and patch
//! the reply so that it is.

use crate::proto::{init_flag, InitOffer, InitReply, MAX_STACK_DEPTH};

/// Whether passthrough is usable on the mount, and if not, why not.
/// The numbers are part of the C ABI (`enum fpio_status`) and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Live = 0,
    Pending = 1,
    KernelLacks = 2,
    NoCapSysAdmin = 3,
    WritebackCache = 4,
    Disabled = 5,
    NotNegotiated = 6,
    InitNotCalled = 7,
}

impl Status {
    pub(crate) const ALL: [Status; 8] = [
        Status::Live,
        Status::Pending,
        Status::KernelLacks,
        Status::NoCapSysAdmin,
        Status::WritebackCache,
        Status::Disabled,
        Status::NotNegotiated,
        Status::InitNotCalled,
    ];

    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }

    /// NUL-terminated, so the C API can hand out the pointer.
    pub fn describe(self) -> &'static str {
        match self {
            Status::Live => "live\0",
            Status::Pending => "pending: INIT not answered yet\0",
            Status::KernelLacks => "kernel lacks FUSE passthrough\0",
            Status::NoCapSysAdmin => "server lacks CAP_SYS_ADMIN\0",
            Status::WritebackCache => "writeback cache requested\0",
            Status::Disabled => "disabled by the server\0",
            Status::NotNegotiated => "not negotiated\0",
            Status::InitNotCalled => "not negotiated: the server's init() did not call fpio_session_init()\0",
        }
    }
}

/// What the server wants from the negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub passthrough: bool,
    pub has_cap_sys_admin: bool,
    pub drop_writeback: bool,
    pub stack_depth: u32,
    pub killpriv_v2: bool,
}

/// The outcome for one INIT exchange: the status, and the reply body to send
/// instead of the server's (None: send the server's reply untouched).
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub status: Status,
    pub patched: Option<InitReply>,
}

/// Decides the INIT outcome. `reply` is the server's reply body; `error` is
/// the out header's error field.
pub fn negotiate(offer: Option<&InitOffer>, error: i32, reply: &[u8], policy: &Policy) -> Decision {
    let untouched = |status| Decision {
        status,
        patched: None,
    };
    let Some(offer) = offer else {
        return untouched(if policy.passthrough {
            Status::NotNegotiated
        } else {
            Status::Disabled
        });
    };
    if error != 0 {
        return untouched(Status::NotNegotiated);
    }
    let Some(mut out) = InitReply::parse(reply) else {
        return untouched(Status::NotNegotiated);
    };
    // A major-version probe (the kernel re-sends INIT) is not the real INIT.
    if out.major() != 7 {
        return untouched(Status::Pending);
    }
    let original = out.flags();
    let mut flags = original;
    // Direct-io opens (the server's own, or its fallbacks) may then be
    // shared-mapped, as cached ones can, whether or not passthrough is live.
    if offer.flags & init_flag::DIRECT_IO_ALLOW_MMAP != 0 {
        flags |= init_flag::INIT_EXT | init_flag::DIRECT_IO_ALLOW_MMAP;
    }
    let status = passthrough(offer, &mut flags, policy);
    if status == Status::Live {
        // Keep a depth a native (3.17+) server chose itself if it is valid.
        let depth = match out.max_stack_depth() {
            d @ 1..=MAX_STACK_DEPTH => d.max(policy.stack_depth),
            _ => policy.stack_depth,
        };
        out.set_max_stack_depth(depth);
    }
    if flags == original && status != Status::Live {
        return untouched(status);
    }
    out.set_flags(flags);
    Decision {
        status,
        patched: Some(out),
    }
}

/// Adds passthrough to the reply's flags where it can be live; else says why not.
fn passthrough(offer: &InitOffer, flags: &mut u64, policy: &Policy) -> Status {
    if !policy.passthrough {
        return Status::Disabled;
    }
    if offer.flags & init_flag::PASSTHROUGH == 0 {
        return Status::KernelLacks;
    }
    if !policy.has_cap_sys_admin {
        return Status::NoCapSysAdmin;
    }
    if *flags & init_flag::WRITEBACK_CACHE != 0 {
        if !policy.drop_writeback {
            return Status::WritebackCache;
        }
        *flags &= !init_flag::WRITEBACK_CACHE;
    }
    *flags |= init_flag::INIT_EXT | init_flag::PASSTHROUGH;
    // With FUSE_HANDLE_KILLPRIV (v1) the kernel leaves clearing set-uid on
    // write to the server, which never sees passthrough writes.
    *flags &= !init_flag::HANDLE_KILLPRIV;
    if policy.killpriv_v2 && offer.flags & init_flag::HANDLE_KILLPRIV_V2 != 0 {
        *flags |= init_flag::HANDLE_KILLPRIV_V2;
    }
    Status::Live
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(flags: u64) -> InitOffer {
        InitOffer {
            major: 7,
            minor: 45,
            flags,
        }
    }
    fn reply(flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(&7u32.to_ne_bytes());
        b[4..8].copy_from_slice(&31u32.to_ne_bytes());
        b[12..16].copy_from_slice(&flags.to_ne_bytes());
        b
    }
    const POLICY: Policy = Policy {
        passthrough: true,
        has_cap_sys_admin: true,
        drop_writeback: false,
        stack_depth: 1,
        killpriv_v2: false,
    };
    const KERNEL: u64 = init_flag::INIT_EXT | init_flag::PASSTHROUGH | init_flag::HANDLE_KILLPRIV_V2;

    #[test]
    fn live_patches_flags_and_depth() {
        let d = negotiate(Some(&offer(KERNEL)), 0, &reply(0), &POLICY);
        assert_eq!(d.status, Status::Live);
        let p = d.patched.unwrap();
        assert_ne!(p.flags() & init_flag::PASSTHROUGH, 0);
        assert_eq!(p.flags() & init_flag::HANDLE_KILLPRIV_V2, 0);
        assert_eq!(p.max_stack_depth(), 1);
    }

    #[test]
    fn reasons() {
        let r = reply(0);
        let no = Policy {
            passthrough: false,
            ..POLICY
        };
        assert_eq!(
            negotiate(Some(&offer(KERNEL)), 0, &r, &no).status,
            Status::Disabled
        );
        assert_eq!(negotiate(None, 0, &r, &POLICY).status, Status::NotNegotiated);
        assert_eq!(
            negotiate(Some(&offer(init_flag::INIT_EXT)), 0, &r, &POLICY).status,
            Status::KernelLacks
        );
        let nocap = Policy {
            has_cap_sys_admin: false,
            ..POLICY
        };
        assert_eq!(
            negotiate(Some(&offer(KERNEL)), 0, &r, &nocap).status,
            Status::NoCapSysAdmin
        );
        assert_eq!(
            negotiate(Some(&offer(KERNEL)), -71, &r, &POLICY).status,
            Status::NotNegotiated
        );
        assert_eq!(
            negotiate(Some(&offer(KERNEL)), 0, &r[..8], &POLICY).status,
            Status::NotNegotiated
        );
    }

    #[test]
    fn writeback_blocks_unless_dropped() {
        let r = reply(init_flag::WRITEBACK_CACHE as u32);
        let d = negotiate(Some(&offer(KERNEL)), 0, &r, &POLICY);
        assert_eq!((d.status, d.patched.is_none()), (Status::WritebackCache, true));
        let drop = Policy {
            drop_writeback: true,
            ..POLICY
        };
        let d = negotiate(Some(&offer(KERNEL)), 0, &r, &drop);
        assert_eq!(d.status, Status::Live);
        assert_eq!(d.patched.unwrap().flags() & init_flag::WRITEBACK_CACHE, 0);
    }

    #[test]
    fn killpriv_v2_only_when_offered_and_wanted() {
        let want = Policy {
            killpriv_v2: true,
            ..POLICY
        };
        let d = negotiate(Some(&offer(KERNEL)), 0, &reply(0), &want);
        assert_ne!(d.patched.unwrap().flags() & init_flag::HANDLE_KILLPRIV_V2, 0);
        let k = init_flag::INIT_EXT | init_flag::PASSTHROUGH;
        let d = negotiate(Some(&offer(k)), 0, &reply(0), &want);
        assert_eq!(d.patched.unwrap().flags() & init_flag::HANDLE_KILLPRIV_V2, 0);
    }

    #[test]
    fn killpriv_v1_is_never_left_on() {
        let d = negotiate(
            Some(&offer(KERNEL)),
            0,
            &reply(init_flag::HANDLE_KILLPRIV as u32),
            &POLICY,
        );
        assert_eq!(d.patched.unwrap().flags() & init_flag::HANDLE_KILLPRIV, 0);
    }

    #[test]
    fn keeps_a_valid_native_depth() {
        let mut r = reply(0);
        r[36..40].copy_from_slice(&2u32.to_ne_bytes());
        let d = negotiate(Some(&offer(KERNEL)), 0, &r, &POLICY);
        assert_eq!(d.patched.unwrap().max_stack_depth(), 2);
        r[36..40].copy_from_slice(&9u32.to_ne_bytes());
        let d = negotiate(Some(&offer(KERNEL)), 0, &r, &POLICY);
        assert_eq!(d.patched.unwrap().max_stack_depth(), 1);
    }

    #[test]
    fn status_strings_are_c_strings() {
        for s in Status::ALL {
            assert!(s.describe().ends_with('\0'));
            assert_eq!(Status::from_raw(s as u32), Some(s));
        }
        assert_eq!(Status::from_raw(Status::ALL.len() as u32), None);
    }

    #[test]
    fn direct_io_mmap_whenever_offered_even_without_passthrough() {
        let k = init_flag::INIT_EXT | init_flag::DIRECT_IO_ALLOW_MMAP;
        let d = negotiate(Some(&offer(k)), 0, &reply(0), &POLICY);
        assert_eq!(d.status, Status::KernelLacks);
        let f = d.patched.unwrap().flags();
        assert_ne!(f & init_flag::DIRECT_IO_ALLOW_MMAP, 0);
        assert_eq!(f & init_flag::PASSTHROUGH, 0);
        // Not offered: the reply is left exactly as the server sent it.
        let d = negotiate(Some(&offer(init_flag::INIT_EXT)), 0, &reply(0), &POLICY);
        assert!(d.patched.is_none());
    }
}
