//! Any bytes as a request from the kernel: the read wrapper's parsing.
#![no_main]
use fpio::proto::{request_kills_suidgid, InHeader, InitOffer};
use fpio::session::{Session, SessionFlags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = InHeader::parse(data) {
        let body = &data[40..];
        let _ = request_kills_suidgid(&h, body);
        if let Some(o) = InitOffer::parse(body) {
            // flags2 is only read behind FUSE_INIT_EXT.
            assert!(o.flags >> 32 == 0 || o.flags & (1 << 30) != 0);
        }
    }
    let s = Session::unattached(SessionFlags::empty());
    s.inspect_request(data);
});
