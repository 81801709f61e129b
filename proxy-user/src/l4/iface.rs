//! Which interface an address lives on (for attaching XDP to the interface
//! of a `bind` address when the config names none).

use std::{ffi::CStr, net::IpAddr};

/// The name of the interface that has `ip` configured, if any. Loopback
/// addresses map to `lo` (all of 127.0.0.0/8 routes there).
pub fn interface_of(ip: IpAddr) -> Option<String> {
    if ip.is_loopback() {
        return Some("lo".to_string());
    }
    let mut found = None;
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return None;
        }
        let mut cur = head;
        while !cur.is_null() && found.is_none() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let this = match (*ifa.ifa_addr).sa_family as i32 {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            };
            if this == ip {
                found = Some(CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned());
            }
        }
        libc::freeifaddrs(head);
    }
    found
}

/// The ifindex of every interface in this network namespace.
pub fn all_ifindexes() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("ifindex")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_on_lo() {
        assert_eq!(
            interface_of("127.0.0.1".parse().unwrap()).as_deref(),
            Some("lo")
        );
        assert_eq!(interface_of("::1".parse().unwrap()).as_deref(), Some("lo"));
    }

    #[test]
    fn an_address_no_interface_has_is_not_found() {
        // From the documentation range, never configured on test machines.
        assert_eq!(interface_of("192.0.2.123".parse().unwrap()), None);
    }
}
