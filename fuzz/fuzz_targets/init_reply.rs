//! Any kernel offer and any server INIT reply: the negotiation and the patch.
#![no_main]
use fpio::negotiate::{negotiate, Policy, Status};
use fpio::proto::{InitOffer, InitReply};
use libfuzzer_sys::fuzz_target;

const PASSTHROUGH: u64 = 1 << 37;
const WRITEBACK: u64 = 1 << 16;
const KILLPRIV_V1: u64 = 1 << 19;

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let offer = InitOffer {
        major: 7,
        minor: u32::from(data[0]),
        flags: u64::from_ne_bytes(data[1..9].try_into().unwrap()),
    };
    let bits = data[9];
    let policy = Policy {
        passthrough: bits & 1 != 0,
        has_cap_sys_admin: bits & 2 != 0,
        drop_writeback: bits & 4 != 0,
        stack_depth: 1 + u32::from(bits >> 3 & 1),
        killpriv_v2: bits & 16 != 0,
    };
    let error = i32::from(data[10] as i8);
    let reply = &data[11..];
    let d = negotiate(
        if bits & 32 != 0 { None } else { Some(&offer) },
        error,
        reply,
        &policy,
    );
    match d.patched {
        Some(p) => {
            assert_eq!(d.status, Status::Live);
            assert_ne!(p.flags() & PASSTHROUGH, 0);
            assert_eq!(p.flags() & (WRITEBACK | KILLPRIV_V1), 0);
            assert!((1..=2).contains(&p.max_stack_depth()));
            assert_eq!(p.body().len(), 64);
            // The patch is stable: parsing what fpio sends gives the same reply.
            assert_eq!(
                InitReply::parse(p.body()).unwrap(),
                InitReply {
                    sent_len: 64,
                    ..p.clone()
                }
            );
        }
        None => assert_ne!(d.status, Status::Live),
    }
});
