//! Target URLs: `http[s]://HOST[:PORT][/PATH-PREFIX]`; https targets are
//! reached over TLS (`shadow::tls`), port 443 unless given.

use std::fmt;

/// A parsed `--shadow` URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetUrl {
    /// `https`: the target is reached over TLS.
    pub tls: bool,
    /// Host name or IP address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written in the URL (IPv6 in brackets): the Host
    /// header value of `--host-header target`.
    pub authority: String,
    /// Prepended to every request target; empty, or starts with `/` and
    /// has no trailing `/`.
    pub path_prefix: String,
}

impl TargetUrl {
    pub fn parse(text: &str) -> Result<TargetUrl, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "`{text}` is not a URL such as http://myapp-v2:9000"
            ));
        };
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(format!(
                "`{text}`: the scheme must be http or https, not `{scheme}`"
            ));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if path.contains(['?', '#']) {
            return Err(format!("`{text}`: a target URL takes no query or fragment"));
        }
        if authority.contains('@') {
            return Err(format!(
                "`{text}`: a target URL takes no user name or password"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err(format!("`{text}`: unclosed `[` in the host"));
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("`{text}`: `{addr}` is not an IPv6 address"));
            }
            let port =
                match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(|| {
                        format!("`{text}`: unexpected `{p}` after the IPv6 address")
                    })?),
                };
            (addr, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{text}`: the host is missing"));
        }
        if !authority.starts_with('[')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(format!("`{text}`: `{host}` is not a host name or address"));
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("`{text}`: `{p}` is not a port (1 to 65535)")),
            },
        };
        if tls && rustls::pki_types::ServerName::try_from(host).is_err() {
            return Err(format!(
                "`{text}`: `{host}` cannot be checked against a certificate"
            ));
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "`{text}`: the path has spaces or control characters"
            ));
        }
        Ok(TargetUrl {
            tls,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path_prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path_prefix)
    }
}

impl std::str::FromStr for TargetUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TargetUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_prefix() {
        // URL, host, port, path prefix, authority.
        for (url, host, port, prefix, authority) in [
            (
                "http://myapp-v2:9000",
                "myapp-v2",
                9000,
                "",
                "myapp-v2:9000",
            ),
            (
                "http://10.0.0.7:9001/prefix/",
                "10.0.0.7",
                9001,
                "/prefix",
                "10.0.0.7:9001",
            ),
            ("HTTP://[::1]:8080/a/b", "::1", 8080, "/a/b", "[::1]:8080"),
            ("http://shadow/", "shadow", 80, "", "shadow"),
        ] {
            let u = TargetUrl::parse(url).unwrap();
            assert_eq!(
                (
                    u.host.as_str(),
                    u.port,
                    u.path_prefix.as_str(),
                    u.authority.as_str()
                ),
                (host, port, prefix, authority),
                "{url}"
            );
        }
        let u = TargetUrl::parse("http://10.0.0.7:9001/prefix/").unwrap();
        assert_eq!(u.to_string(), "http://10.0.0.7:9001/prefix");
    }

    #[test]
    fn https_urls_are_tls_on_port_443_unless_given() {
        let u = TargetUrl::parse("https://shadow.example.com/api/").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str()),
            ("shadow.example.com", 443, "shadow.example.com"),
            "the Host header of --host-header target has no default port"
        );
        assert_eq!(u.path_prefix, "/api");
        assert_eq!(u.to_string(), "https://shadow.example.com/api");
        let u = TargetUrl::parse("HTTPS://[::1]:8443").unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.to_string(), "https://[::1]:8443");
        let plain = TargetUrl::parse("http://shadow").unwrap();
        assert!(!plain.tls);
        assert_eq!(plain.port, 80);
        assert_ne!(plain, TargetUrl::parse("https://shadow:80").unwrap());
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("ftp://x", "scheme must be http or https"),
            ("https://x:0", "not a port"),
            ("https://u:p@x", "user name"),
            ("https://bad..name", "checked against a certificate"),
            ("myapp:9000", "not a URL"),
            ("http://x:0", "not a port"),
            ("http://x:99999", "not a port"),
            ("http://:80", "host is missing"),
            ("http://u:p@x", "user name"),
            ("http://x/?q=1", "query"),
            ("http://[::1", "unclosed"),
            ("http://ex ample", "not a host"),
        ] {
            let err = TargetUrl::parse(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
