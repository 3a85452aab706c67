#![deny(unsafe_op_in_unsafe_fn)]
//! fpio: FUSE passthrough with parallel direct writes for libfuse servers
//! (lowlevel and high-level), including libfuse 3.14 which cannot negotiate passthrough itself.
//!
//! The safe core is split by idea: [`iomode`] (open flags and io modes),
//! [`proto`] (the few wire formats fpio touches), [`negotiate`] (INIT),
//! [`registry`] (backing ids per inode), [`reply`] (open/create replies),
//! [`session`] (the io wrappers and the per-mount state), [`highlevel`] (opens of
//! high-level fuse.h servers) and [`counters`].
//! [`capi`] is the C API: it only checks and converts arguments.

pub mod capi;
pub mod counters;
pub mod fault;
pub mod glue;
pub mod highlevel;
pub mod iomode;
mod log;
pub mod negotiate;
pub mod proto;
pub mod registry;
pub mod reply;
pub mod session;
mod sys;
