//! Any sequence of opens, releases and undos against the backing registry,
//! with a device that sometimes refuses: ids stay balanced and one per inode.
#![no_main]
use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use fpio::counters::{Counter, Counters};
use fpio::registry::{BackingDevice, FallbackKind, Grant, OpenRequest, Registry, Source};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Dev {
    open: Mutex<HashSet<u32>>,
    next: Mutex<u32>,
}

struct Shared(Arc<Dev>, Mutex<u8>);

impl BackingDevice for Shared {
    fn open(&self, _fd: RawFd) -> Result<u32, i32> {
        let mut roll = self.1.lock().unwrap();
        *roll = roll.wrapping_mul(31).wrapping_add(7);
        if *roll % 5 == 0 {
            return Err(libc::EMFILE);
        }
        let mut n = self.0.next.lock().unwrap();
        *n += 1;
        self.0.open.lock().unwrap().insert(*n);
        Ok(*n)
    }
    fn close(&self, id: u32) -> Result<(), i32> {
        assert!(
            self.0.open.lock().unwrap().remove(&id),
            "closed id {id} twice or never opened"
        );
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let dev = Arc::new(Dev::default());
    let reg = Registry::new(Box::new(Shared(
        dev.clone(),
        Mutex::new(data.first().copied().unwrap_or(1)),
    )));
    let c = Counters::default();
    let fds: Vec<RawFd> = (0..2)
        .map(|i| {
            let name = std::ffi::CString::new(format!("fpio-fuzz-{i}")).unwrap();
            // SAFETY: plain memfd_create with a NUL-terminated name.
            unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) }
        })
        .collect();
    let mut tickets = Vec::new();
    let mut live: Vec<(u64, u64)> = Vec::new();
    for op in data.chunks(3) {
        let [kind, a, b] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        let ino = u64::from(a % 4);
        let fh = u64::from(b % 8);
        match kind % 4 {
            0 | 1 => {
                let source = match b % 4 {
                    0 => Source::Declined,
                    1 => Source::Fd(fds[usize::from(a & 1)]),
                    2 => Source::Fd(-1 - i32::from(b)),
                    _ => Source::ServerId(1000 + u32::from(a % 2)),
                };
                let req = OpenRequest {
                    ino,
                    fh,
                    access: libc::O_RDWR,
                    source,
                    live: kind & 4 == 0,
                    unseen: kind & 16 != 0,
                    fallback: if kind & 8 == 0 {
                        FallbackKind::Direct
                    } else {
                        FallbackKind::Cached
                    },
                };
                let (g, t) = reg.acquire(&req, &c);
                if let (Grant::Passthrough(id) | Grant::SharedDirect(id), Some(cur)) =
                    (g, reg.backing_id(ino))
                {
                    assert_eq!(id, cur, "one backing id per inode");
                }
                if let Some(t) = t {
                    if kind & 16 != 0 {
                        reg.undo(t, &c);
                    } else {
                        tickets.push(t);
                        live.push((ino, fh));
                    }
                }
            }
            2 => {
                if let Some(pos) = live.iter().position(|&(i, _)| i == ino) {
                    let (i, f) = live.swap_remove(pos);
                    assert_eq!(reg.release(i, f, &c), Ok(()));
                }
            }
            _ => {
                let _ = reg.release(ino, fh + 100, &c); // unknown: must be ENOENT, harmless
            }
        }
        assert_eq!(
            c.get(Counter::BackingIdsLive),
            c.get(Counter::BackingOpened) - c.get(Counter::BackingClosed)
        );
        assert_eq!(
            c.get(Counter::BackingIdsLive) as usize,
            dev.open.lock().unwrap().len()
        );
    }
    for (i, f) in live.drain(..) {
        assert_eq!(reg.release(i, f, &c), Ok(()));
    }
    assert!(
        dev.open.lock().unwrap().is_empty(),
        "ids left open after every release"
    );
    for fd in fds {
        // SAFETY: closing the memfds made above.
        unsafe { libc::close(fd) };
    }
});
