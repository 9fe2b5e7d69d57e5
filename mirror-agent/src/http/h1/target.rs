//! The forms a request target may take (RFC 9112 §3.2), strictly: only
//! those every conforming origin server reads the same way.

/// Why a request target is not framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// `PRI *`: the HTTP/2 connection preface.
    Http2Preface,
    /// `CONNECT` (authority-form), asterisk-form other than `OPTIONS *`,
    /// or a target that is neither origin-form nor an `http(s)` absolute
    /// URI.
    Unsupported,
    /// An absolute URI whose authority is not a plain `host[:port]`
    /// (userinfo, an empty or odd host, a bad port).
    InvalidAuthority,
}

/// Checks the target of a request with `method`.
pub(crate) fn check_target(method: &[u8], target: &[u8]) -> Result<(), TargetError> {
    if target == b"*" {
        return match method {
            b"OPTIONS" => Ok(()),
            b"PRI" => Err(TargetError::Http2Preface),
            _ => Err(TargetError::Unsupported),
        };
    }
    if method == b"CONNECT" {
        return Err(TargetError::Unsupported);
    }
    if target.first() == Some(&b'/') {
        return Ok(());
    }
    let Some(colon) = target.iter().position(|b| *b == b':') else {
        return Err(TargetError::Unsupported);
    };
    let scheme = &target[..colon];
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        return Err(TargetError::Unsupported);
    }
    let Some(rest) = target[colon + 1..].strip_prefix(b"//") else {
        return Err(TargetError::Unsupported);
    };
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    if valid_authority(&rest[..end]) {
        Ok(())
    } else {
        Err(TargetError::InvalidAuthority)
    }
}

/// `host [":" port]` with a host of letters, digits, `-`, `.`, `_` or an
/// IP literal in brackets; no userinfo (RFC 9110 §4.2.4: a recipient
/// should treat it as an error, and nginx refuses it).
pub(crate) fn valid_authority(authority: &[u8]) -> bool {
    let (host, port) = if let Some(literal) = authority.strip_prefix(b"[") {
        let Some(close) = literal.iter().position(|b| *b == b']') else {
            return false;
        };
        let inside = &literal[..close];
        let ok = !inside.is_empty()
            && inside
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !ok {
            return false;
        }
        (&b"x"[..], &literal[close + 1..])
    } else {
        let colon = authority
            .iter()
            .position(|b| *b == b':')
            .unwrap_or(authority.len());
        (&authority[..colon], &authority[colon..])
    };
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_http_absolute_forms_are_framed() {
        for (method, target) in [
            ("GET", "/"),
            ("GET", "/a?b=c"),
            ("OPTIONS", "*"),
            ("GET", "http://example.com"),
            ("GET", "HTTP://example.com:8080/x?y"),
            ("GET", "https://[::1]:443/"),
            ("GET", "http://a_b.example-1.com/?q"),
        ] {
            assert_eq!(
                check_target(method.as_bytes(), target.as_bytes()),
                Ok(()),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn connect_asterisk_and_other_forms_are_unsupported() {
        for (method, target) in [
            ("CONNECT", "example.com:443"),
            ("CONNECT", "/"),
            ("M-SEARCH", "*"),
            ("GET", "*"),
            ("GET", "relative/path"),
            ("GET", "ftp://example.com/"),
            ("GET", "http:/example.com/"),
        ] {
            assert_eq!(
                check_target(method.as_bytes(), target.as_bytes()),
                Err(TargetError::Unsupported),
                "{method} {target}"
            );
        }
        assert_eq!(check_target(b"PRI", b"*"), Err(TargetError::Http2Preface));
    }

    #[test]
    fn userinfo_and_bad_hosts_or_ports_are_invalid_authorities() {
        for target in [
            "http://a:b@c@host/",
            "http://user@host/",
            "http:///path",
            "http://host:port/",
            "http://host:123456/",
            "http://ho%20st/",
            "http://[::1/",
            "http://[zz]/",
            "http://[::1]x/",
        ] {
            assert_eq!(
                check_target(b"GET", target.as_bytes()),
                Err(TargetError::InvalidAuthority),
                "{target}"
            );
        }
    }
}
