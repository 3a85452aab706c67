//! The library's own open-path cost, without a kernel round trip: registry
//! decision (+ fstat/fcntl of the backing fd on a first open) and open reply
//! building, then the release. The backing device is a stand-in that hands
//! out ids without an ioctl, so this measures fpio, not the kernel.
//! Prints `<name> <ns_per_op>` lines (median of 5 rounds).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use fpio::counters::Counters;
use fpio::registry::{BackingDevice, FallbackKind, OpenRequest, Registry, Source};
use fpio::reply::{open_flags, open_reply, FileInfo};

struct NoKernel(AtomicU32);

impl BackingDevice for NoKernel {
    fn open(&self, _fd: RawFd) -> Result<u32, i32> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn close(&self, _id: u32) -> Result<(), i32> {
        Ok(())
    }
}

fn median_ns(iters: u64, mut round: impl FnMut(u64)) -> f64 {
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            round(iters);
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[2]
}

fn main() {
    let path = std::env::temp_dir().join(format!("fpio-micro-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let reg = Registry::new(Box::new(NoKernel(AtomicU32::new(0))));
    let c = Counters::default();
    let req = |ino, fh, source| OpenRequest {
        ino,
        fh,
        access: libc::O_RDWR,
        source,
        live: true,
        fallback: FallbackKind::Direct,
    };
    let fi = FileInfo {
        flags: libc::O_RDWR,
        ..Default::default()
    };
    let mut sink = 0u64;
    let mut reply = |g| {
        let (flags, id) = open_flags(g, &fi);
        let b = open_reply(7, flags, id);
        sink = sink.wrapping_add(u64::from(b[8]));
    };

    // First open of an inode registers its backing file; its release closes it.
    let first = median_ns(200_000, |n| {
        for i in 0..n {
            let (g, _) = reg.acquire(&req(i, 1, Source::Fd(fd)), &c);
            reply(g);
            reg.release(i, 1, &c).unwrap();
        }
    });
    // An inode that already has a backing file: share it.
    reg.acquire(&req(u64::MAX - 1, 0, Source::Fd(fd)), &c);
    let shared = median_ns(1_000_000, |n| {
        for i in 0..n {
            let (g, _) = reg.acquire(&req(u64::MAX - 1, i + 1, Source::Fd(fd)), &c);
            reply(g);
            reg.release(u64::MAX - 1, i + 1, &c).unwrap();
        }
    });
    let declined = median_ns(1_000_000, |n| {
        for i in 0..n {
            let (g, _) = reg.acquire(&req(i, 1, Source::Declined), &c);
            reply(g);
            reg.release(i, 1, &c).unwrap();
        }
    });
    println!("open_release_first_backing {first:.0}");
    println!("open_release_shared_backing {shared:.0}");
    println!("open_release_fallback {declined:.0}");
    std::hint::black_box(sink);
}
