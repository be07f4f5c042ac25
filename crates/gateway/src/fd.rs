//! Listening sockets handed over by an old process during a zero-downtime upgrade.
//!
//! One of zonegate's two modules with unsafe code (the other is `alloc`, the allocator): a file
//! descriptor number received over the upgrade socket becomes a listener. Pingora's table
//! records the number so that the next upgrade can pass it on; the listener made here owns it.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, RawFd};

/// Takes ownership of the listening socket `fd`, received from the old process.
pub(crate) fn adopt_listener(fd: RawFd) -> std::io::Result<std::net::TcpListener> {
    // SAFETY: `fd` came from Pingora's table of descriptors received from the old process
    // (sent with SCM_RIGHTS, so it is open and ours), and nothing else in this process wraps
    // it: the table only keeps the number to send it on at the next upgrade, which happens
    // while this listener is still open.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    Ok(listener)
}
