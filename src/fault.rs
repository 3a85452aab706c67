//! Test-only fault injection. Only a library built with the cargo feature
//! `test-faults` (never the installed one) reads the environment variable
//! `FPIO_TEST_FAULTS` when a session is created, e.g.
//! `FPIO_TEST_FAULTS="register=EMFILE:30,reply=ENOENT:10,seed=7"`:
//! 30% of backing registrations fail with EMFILE and 10% of open replies
//! fail as if the open had been interrupted. Unset, it costs one branch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Rule {
    errno: i32,
    percent: u32,
}

#[derive(Debug, Default)]
struct Inner {
    register: Option<Rule>,
    reply: Option<Rule>,
    rng: AtomicU64,
}

#[derive(Clone, Debug, Default)]
pub struct Faults(Option<Arc<Inner>>);

fn errno_by_name(name: &str) -> Option<i32> {
    Some(match name {
        "EPERM" => libc::EPERM,
        "ENOMEM" => libc::ENOMEM,
        "EMFILE" => libc::EMFILE,
        "ELOOP" => libc::ELOOP,
        "ENOENT" => libc::ENOENT,
        "EIO" => libc::EIO,
        "EBUSY" => libc::EBUSY,
        _ => return None,
    })
}

fn parse_rule(v: &str) -> Option<Rule> {
    let (name, pct) = v.split_once(':')?;
    let percent: u32 = pct.parse().ok()?;
    (percent <= 100).then_some(Rule {
        errno: errno_by_name(name)?,
        percent,
    })
}

impl Faults {
    pub fn from_env() -> Self {
        if cfg!(feature = "test-faults") {
            std::env::var("FPIO_TEST_FAULTS")
                .map(|v| Self::parse(&v))
                .unwrap_or_default()
        } else {
            Faults(None)
        }
    }

    /// Unknown keys or values switch nothing on (and are reported once).
    pub fn parse(spec: &str) -> Self {
        let mut inner = Inner {
            rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            ..Default::default()
        };
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let ok = match item.split_once('=') {
                Some(("register", v)) => parse_rule(v).map(|r| inner.register = Some(r)).is_some(),
                Some(("reply", v)) => parse_rule(v).map(|r| inner.reply = Some(r)).is_some(),
                Some(("seed", v)) => v
                    .parse::<u64>()
                    .map(|s| inner.rng = AtomicU64::new(s | 1))
                    .is_ok(),
                _ => false,
            };
            if !ok {
                eprintln!("fpio: FPIO_TEST_FAULTS: ignoring '{item}'");
            }
        }
        if inner.register.is_none() && inner.reply.is_none() {
            return Faults(None);
        }
        Faults(Some(Arc::new(inner)))
    }

    fn roll(inner: &Inner, rule: Option<Rule>) -> Result<(), i32> {
        let Some(rule) = rule else { return Ok(()) };
        // xorshift64: reproducible for a given seed and call order.
        let mut x = inner.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        inner.rng.store(x, Ordering::Relaxed);
        if (x % 100) < u64::from(rule.percent) {
            Err(rule.errno)
        } else {
            Ok(())
        }
    }

    pub fn register(&self) -> Result<(), i32> {
        self.0.as_ref().map_or(Ok(()), |i| Self::roll(i, i.register))
    }

    pub fn reply(&self) -> Result<(), i32> {
        self.0.as_ref().map_or(Ok(()), |i| Self::roll(i, i.reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_on_bad_specs() {
        assert!(Faults::parse("").register().is_ok());
        assert!(Faults::parse("register=EBOGUS:50").0.is_none());
        assert!(Faults::parse("register=EPERM:101").0.is_none());
    }

    #[test]
    fn rates_are_roughly_kept() {
        let f = Faults::parse("register=EMFILE:30,seed=3");
        let fails = (0..10_000).filter(|_| f.register() == Err(libc::EMFILE)).count();
        assert!((2_500..3_500).contains(&fails), "{fails}");
        assert!(f.reply().is_ok());
        let always = Faults::parse("reply=ENOENT:100");
        assert_eq!(always.reply(), Err(libc::ENOENT));
    }
}
