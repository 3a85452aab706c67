//! The library's own open-path cost, without a kernel round trip: registry
//! decision (+ fstat/fcntl of the backing fd on a first open) and open reply
//! building, then the release. The backing device is a stand-in that hands
//! out ids without an ioctl, so this measures fpio, not the kernel.
//! Prints `<name> <ns_per_op>` lines (median of 5 rounds), then how the
//! registry scales: 10,000 inodes held open at once, 1,000 concurrent opens
//! of one inode, and 1 vs 4 threads opening and releasing (wall-clock ns per
//! open+release over all threads: with N free cores and no contention, 4
//! threads cost 1/min(4, N) of one). Inode numbers are
//! pointer-like (multiples of 48), as lowlevel servers use.

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
        unseen: false,
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
    let scaling = scale(fd);
    println!("open_release_first_backing {first:.0}");
    println!("open_release_shared_backing {shared:.0}");
    println!("open_release_fallback {declined:.0}");
    for (name, ns) in scaling {
        println!("{name} {ns:.0}");
    }
    std::hint::black_box(sink);
}

/// Like a server's inode numbers: heap addresses of its inode structs.
fn pointer_ino(i: u64) -> u64 {
    0x5600_0000_0000 + i * 48
}

fn scale(fd: RawFd) -> Vec<(&'static str, f64)> {
    use std::sync::Arc;
    let req = move |ino, fh| OpenRequest {
        ino,
        fh,
        access: libc::O_RDWR,
        source: Source::Fd(fd),
        live: true,
        unseen: false,
        fallback: FallbackKind::Direct,
    };
    let reg = Arc::new(Registry::new(Box::new(NoKernel(AtomicU32::new(0)))));
    let c = Arc::new(Counters::default());
    let mut out = Vec::new();
    // 10,000 inodes open at once: open all, then release all.
    out.push((
        "hold_10000_inodes_open_release",
        median_ns(10_000, |n| {
            for i in 0..n {
                reg.acquire(&req(pointer_ino(i), 1), &c);
            }
            for i in 0..n {
                reg.release(pointer_ino(i), 1, &c).unwrap();
            }
        }),
    ));
    // 1,000 concurrent opens of one inode, then their releases (newest first
    // and oldest first alike: no scan over the inode's opens).
    out.push((
        "hold_1000_opens_one_inode_open_release",
        median_ns(1_000, |n| {
            for fh in 0..n {
                reg.acquire(&req(pointer_ino(7), fh), &c);
            }
            for fh in 0..n {
                reg.release(pointer_ino(7), fh, &c).unwrap();
            }
        }),
    ));
    // Open+release on 1 and 4 threads, each on its own 1,000 inodes with a
    // held anchor open (shared backing): wall-clock ns per cycle, all threads.
    for (name, threads) in [("threads_1_open_release", 1u64), ("threads_4_open_release", 4)] {
        for t in 0..threads {
            for i in 0..1000 {
                reg.acquire(&req(pointer_ino(100_000 * (t + 1) + i), u64::MAX), &c);
            }
        }
        let iters = 400_000u64;
        let mut samples: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (reg, c) = (reg.clone(), c.clone());
                        std::thread::spawn(move || {
                            for k in 0..iters {
                                let ino = pointer_ino(100_000 * (t + 1) + k % 1000);
                                reg.acquire(&req(ino, k), &c);
                                reg.release(ino, k, &c).unwrap();
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap();
                }
                start.elapsed().as_nanos() as f64 / (iters * threads) as f64
            })
            .collect();
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out.push((name, samples[2]));
        for t in 0..threads {
            for i in 0..1000 {
                reg.release(pointer_ino(100_000 * (t + 1) + i), u64::MAX, &c)
                    .unwrap();
            }
        }
    }
    out
}
