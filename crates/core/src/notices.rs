//! What counts as a "new device" for the `notices.new_device` mail.
//!
//! A password sign-in is from a **new device** when all three hold:
//! - it presented no device cookie minted for the address
//!   ([`crate::device_cookie`]): a browser that signed in to the address
//!   before carries one, so the owner's own browsers are known;
//! - no other live session of the account has the same user agent (or
//!   none, like it) from the same network ([`same_client`]: the IPv4 /24
//!   or IPv6 /64) — a client that keeps no cookies (an app, a script) but
//!   is recently seen is not new;
//! - the account has signed in before (`last_login` was set): the very
//!   first sign-in after registration is never "new".
//!
//! Pure: the runner reads the sessions and the clock.

use std::net::IpAddr;

/// The normalised network of an address: IPv4 /24, IPv6 /64. Addresses a
/// provider hands out change within these, and a different one is a
/// different place.
fn network(ip: &str) -> Option<[u8; 8]> {
    match ip.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some([4, o[0], o[1], o[2], 0, 0, 0, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(&v4.to_string()),
            None => {
                let o = v6.octets();
                Some([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        },
    }
}

/// Whether a recorded session's client (`seen_*`) is the presenting
/// client: the same user agent (as stored: the caller normalises both the
/// same way; none at all is a user agent too, a script's) from the same
/// network. An unknown or unparsable IP never matches: nothing then proves
/// the client was seen.
pub fn same_client(
    seen_ip: Option<&str>,
    seen_user_agent: Option<&str>,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> bool {
    let (Some(seen_ip), Some(ip)) = (seen_ip, ip) else {
        return false;
    };
    seen_user_agent == user_agent && network(seen_ip).is_some() && network(seen_ip) == network(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_browser_on_the_same_network_is_known() {
        assert!(same_client(
            Some("198.51.100.7"),
            Some("Firefox/130"),
            Some("198.51.100.200"),
            Some("Firefox/130")
        ));
        assert!(same_client(
            Some("2001:db8:1:2::1"),
            Some("App/1"),
            Some("2001:db8:1:2:ffff::9"),
            Some("App/1")
        ));
        assert!(same_client(
            Some("::ffff:198.51.100.7"),
            Some("A"),
            Some("198.51.100.9"),
            Some("A")
        ));
    }

    #[test]
    fn another_network_browser_or_unknown_is_new() {
        let ua = Some("Firefox/130");
        assert!(!same_client(
            Some("198.51.100.7"),
            ua,
            Some("198.51.101.7"),
            ua
        ));
        assert!(!same_client(
            Some("198.51.100.7"),
            ua,
            Some("198.51.100.7"),
            Some("Chrome/120")
        ));
        assert!(!same_client(None, ua, Some("198.51.100.7"), ua));
        assert!(!same_client(
            Some("198.51.100.7"),
            None,
            Some("198.51.100.7"),
            ua
        ));
        assert!(same_client(
            Some("198.51.100.7"),
            None,
            Some("198.51.100.8"),
            None
        ));
        assert!(!same_client(Some("garbage"), ua, Some("garbage"), ua));
        assert!(!same_client(
            Some("2001:db8:1:2::1"),
            ua,
            Some("2001:db8:1:3::1"),
            ua
        ));
    }
}
