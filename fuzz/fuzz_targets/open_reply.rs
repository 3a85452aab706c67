//! Any grant and file info: the open and create replies fpio builds.
#![no_main]
use fpio::counters::Counter;
use fpio::iomode::{effective_flags, passthrough_flags_valid, KernelRule};
use fpio::proto::{parse_open_out, Attr, Entry};
use fpio::registry::{FallbackKind, Grant};
use fpio::reply::{create_reply, open_flags, open_reply, FileInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 30 {
        return;
    }
    let word = |i: usize| u32::from_ne_bytes(data[i..i + 4].try_into().unwrap());
    let fi = FileInfo {
        fh: u64::from_ne_bytes(data[0..8].try_into().unwrap()),
        flags: word(8) as i32,
        backing_id: word(12) as i32,
        direct_io: data[16] & 1 != 0,
        keep_cache: data[16] & 2 != 0,
        nonseekable: data[16] & 4 != 0,
        noflush: data[16] & 8 != 0,
    };
    let id = word(17).max(1);
    let grant = match data[21] % 5 {
        0 => Grant::Passthrough(id),
        1 => Grant::SharedDirect(id),
        2 => Grant::Fallback(FallbackKind::Direct, Counter::FallbackDeclined, 0),
        3 => Grant::Fallback(FallbackKind::Cached, Counter::FallbackDeclined, 0),
        _ => Grant::Busy,
    };
    let (flags, backing) = open_flags(grant, &fi);
    if backing != 0 {
        assert!(passthrough_flags_valid(flags));
        assert!(effective_flags(flags, KernelRule::Legacy).is_some());
        assert_ne!(effective_flags(flags, KernelRule::Series).unwrap() & (1 << 6), 0);
    } else {
        assert_eq!(flags & (1 << 7), 0, "no PASSTHROUGH without a backing id");
    }
    assert_eq!(
        parse_open_out(&open_reply(fi.fh, flags, backing)),
        Some((fi.fh, flags, backing))
    );
    let e = Entry {
        ino: u64::from(word(22)),
        generation: 0,
        attr_timeout: f64::from_bits(u64::from(word(26)) << 32),
        entry_timeout: f64::from(word(22) as i32),
        attr: Attr {
            size: u64::from(word(26)),
            ..Default::default()
        },
    };
    let c = create_reply(&e, fi.fh, flags, backing);
    assert_eq!(parse_open_out(&c[128..]), Some((fi.fh, flags, backing)));
});
