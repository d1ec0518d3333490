//! Where quicbench may send traffic: loopback and the benchmarking ranges its
//! own namespaces use (198.18.0.0/15, RFC 2544; 2001:2::/48, RFC 5180). Any
//! other target needs `--allow-remote`.

use std::net::IpAddr;

pub fn is_local_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback() || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_target(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0)
        }
    }
}

/// Refuse a non-local target unless allowed.
pub fn check_target(ip: IpAddr, allow_remote: bool) -> anyhow::Result<()> {
    if allow_remote || is_local_target(ip) {
        Ok(())
    } else {
        anyhow::bail!(
            "refusing to send to {ip}: quicbench only targets loopback and its own benchmarking \
             ranges (198.18.0.0/15, 2001:2::/48) unless --allow-remote is given"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_benchmark_ranges() {
        for ok in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "198.18.0.1",
            "198.19.255.254",
            "2001:2::1",
            "2001:2:0:1::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_local_target(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "8.8.8.8",
            "198.20.0.1",
            "198.17.255.255",
            "2001:3::1",
            "2001:2:1::1",
            "fe80::1",
            "::ffff:8.8.8.8",
            "0.0.0.0",
        ] {
            assert!(!is_local_target(bad.parse().unwrap()), "{bad}");
            assert!(check_target(bad.parse().unwrap(), false).is_err());
            assert!(check_target(bad.parse().unwrap(), true).is_ok());
        }
    }
}
