//! The systemd readiness protocol, the small part licd needs: when `NOTIFY_SOCKET` is set (a
//! unit with `Type=notify`), send `READY=1` once the service answers, and `STOPPING=1` when
//! it begins to stop. Without the variable nothing is sent.

/// Tells the service manager `state` (such as `READY=1`); returns whether it was sent.
pub fn notify(state: &str) -> bool {
    #[cfg(unix)]
    {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return false;
        };
        let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
            return false;
        };
        let bytes = path.as_encoded_bytes();
        let sent = if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket (Linux): its name follows a NUL byte.
            abstract_send(&socket, name, state)
        } else {
            socket.send_to(state.as_bytes(), &path).is_ok()
        };
        if !sent {
            tracing::warn!(state, "cannot notify the service manager");
        }
        sent
    }
    #[cfg(not(unix))]
    {
        let _ = state;
        false
    }
}

#[cfg(target_os = "linux")]
fn abstract_send(socket: &std::os::unix::net::UnixDatagram, name: &[u8], state: &str) -> bool {
    use std::os::linux::net::SocketAddrExt as _;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
        .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        .is_ok()
}

#[cfg(all(unix, not(target_os = "linux")))]
fn abstract_send(_: &std::os::unix::net::UnixDatagram, _: &[u8], _: &str) -> bool {
    false
}
