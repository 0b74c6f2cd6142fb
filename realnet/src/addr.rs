//! `SocketAddrV4` <-> `libc::sockaddr_in`. Ports and addresses are in network byte order in
//! `sockaddr_in`, host order in `SocketAddrV4`.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The `sockaddr_in` for `addr`.
pub(crate) fn to_sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            // The octets are already in network order: keep their memory layout.
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// The `SocketAddrV4` a `sockaddr_in` holds.
pub(crate) fn from_sockaddr_in(sin: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(sin.sin_port),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_byte_order() {
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 0x1234);
        let sin = to_sockaddr_in(a);
        assert_eq!(sin.sin_port.to_ne_bytes(), [0x12, 0x34]);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(from_sockaddr_in(&sin), a);
    }
}
