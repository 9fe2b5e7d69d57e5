use super::*;

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn names_match_whatever_their_case_and_style() {
    let policy = Policy::default();
    for name in [
        "access_token",
        "refreshToken",
        "ID-TOKEN",
        "client_secret",
        "clientSecret",
        "password",
        "Passwd",
        "db.password",
        "api_key",
        "apiKey",
        "API-KEY",
        "Api.Key",
        "Authorization",
        "cookie",
        "sessionId",
        "session",
        "signature",
        "sig",
        "pwd",
        "private_key",
    ] {
        assert!(policy.secret_field(name), "{name} is a credential");
    }
    for name in [
        "id",
        "name",
        "design",
        "signal",
        "code",
        "sortKey",
        "publicKey",
        "author",
        "expires_in",
        "token_type",
        "total_tokens",
    ] {
        assert!(!policy.secret_field(name), "{name} is not a credential");
    }
}

#[test]
fn headers_and_query_keys_have_their_own_extras() {
    let policy = Policy::default();
    for name in [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "x-auth-token",
        "X-Functions-Key",
        "Ocp-Apim-Subscription-Key",
        "X-Amz-Security-Token",
    ] {
        assert!(policy.secret_header(name), "{name}");
    }
    for name in ["content-type", "etag", "x-request-id", "location"] {
        assert!(!policy.secret_header(name), "{name}");
    }
    assert!(policy.secret_query("key", "/maps"));
    assert!(policy.secret_query("X-Amz-Signature", "/bucket/object"));
    assert!(policy.secret_query("sig", "/blob"));
    assert!(!policy.secret_query("page", "/orders"));
    // `code` only where it is an authorisation code.
    assert!(policy.secret_query("code", "/oauth/callback"));
    assert!(policy.secret_query("code", "/login/sso"));
    assert!(!policy.secret_query("code", "/countries"));
}

#[test]
fn the_users_names_add_and_the_defaults_can_go() {
    let policy = Policy::default()
        .with_fields(&owned(&["pin", "*Ssn*"]))
        .with_headers(&owned(&["X-Tenant"]))
        .with_queries(&owned(&["ref*"]));
    assert!(policy.secret_field("PIN") && policy.secret_field("user_ssn_last4"));
    assert!(!policy.secret_field("pinned"), "exact unless starred");
    assert!(policy.secret_header("x_tenant") && !policy.secret_field("x-tenant"));
    assert!(policy.secret_query("referrer", "/") && !policy.secret_query("href", "/"));
    let none = Policy::new(false).with_fields(&owned(&["pin"]));
    assert!(!none.has_defaults());
    assert!(!none.secret_field("access_token") && !none.secret_header("Authorization"));
    assert!(!none.secret_query("code", "/oauth/callback"));
    assert!(none.secret_field("pin"));
    assert!(Name::parse(" * ").is_none() && Name::parse("").is_none());
}

#[test]
fn a_path_is_secret_when_any_of_its_keys_is() {
    let policy = Policy::default();
    for path in [
        "$.access_token",
        "$.data.client_secret",
        "$.tokens[3].access_token",
        "$.tokens[*].value",
        "$['X-Api-Key']",
        "$.headers['Authorization'][0]",
        "$['a \\' b'].session",
        "$.auth.user",
    ] {
        assert!(policy.secret_path(path), "{path}");
    }
    for path in [
        "$",
        "$.items[2].price",
        "$…",
        "body",
        "$['a b'].c",
        "status",
    ] {
        assert!(!policy.secret_path(path), "{path}");
    }
    assert_eq!(path_keys("$.a['b.c'][4].d"), ["a", "b.c", "d"]);
}

#[test]
fn equal_values_give_equal_markers_different_ones_differ_and_show_nothing() {
    let a = marker(b"\"eyJhbGciOi.first\"");
    assert_eq!(a, marker(b"\"eyJhbGciOi.first\""));
    assert_ne!(a, marker(b"\"eyJhbGciOi.second\""));
    assert!(
        a.starts_with("<redacted:") && a.ends_with('>') && a.len() == 19,
        "{a}"
    );
    assert!(!a.contains("eyJ") && !a.contains("first"));
    assert!(is_placeholder(&a) && is_placeholder("<absent>") && is_placeholder(REDACTED));
    assert!(!is_placeholder("<https://x>; rel=next"));
    assert_eq!(hide("<absent>"), "<absent>");
    assert_eq!(hide("hunter2"), marker(b"hunter2"));
    // 1,000 distinct values, 1,000 distinct markers.
    let markers: std::collections::HashSet<String> = (0..1000)
        .map(|i| marker(format!("t{i}").as_bytes()))
        .collect();
    assert_eq!(markers.len(), 1000);
}

#[test]
fn json_fields_are_hidden_at_any_depth_and_the_rest_kept_byte_for_byte() {
    let policy = Policy::default();
    let body = br#"{"token_type":"bearer", "access_token" : "at-1\"x", "n":1,
 "data":{"client_secret":"cs-1","list":[{"refreshToken":"rt-1"}],"apiKey":42},
 "session":{"id":"s-1","user":"bob"},"note":"say \"password\": no"}"#;
    let out = String::from_utf8(policy.redact_json(body).unwrap()).unwrap();
    for secret in ["at-1", "cs-1", "rt-1", ":42", "s-1", "bob"] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    assert!(out.contains(r#""token_type":"bearer""#), "{out}");
    assert!(
        out.contains(r#""note":"say \"password\": no""#),
        "a string is not a key: {out}"
    );
    assert_eq!(out.matches("<redacted:").count(), 5, "{out}");
    let value: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
    assert_eq!(value["n"], 1);
    assert_eq!(value["access_token"], marker(br#""at-1\"x""#).as_str());
    assert!(policy.redact_json(br#"{"a":[1,2],"b":"c"}"#).is_none());
}

#[test]
fn shown_text_is_redacted_even_when_cut() {
    let policy = Policy::default();
    let cut = r#"…Ij9","refresh_token":"rt-secret","scope":"read"}"#;
    let shown = policy.redact_text(cut);
    assert!(
        !shown.contains("rt-secret") && shown.contains("\"scope\":\"read\""),
        "{shown}"
    );
    let cut_inside = r#"{"data":{"client_secret":"cs-very-long-and-cut…"#;
    assert!(!policy.redact_text(cut_inside).contains("cs-very"));
    let form = "…&access_token=at-9&expires_in=3600";
    let shown = policy.redact_text(form);
    assert!(
        !shown.contains("at-9") && shown.contains("expires_in=3600"),
        "{shown}"
    );
    let location = "https://app/callback?code=c-1&state=xyz";
    let shown = policy.redact_text(location);
    assert!(
        !shown.contains("c-1") && shown.contains("state=xyz"),
        "{shown}"
    );
    assert!(matches!(policy.redact_text("\"plain\""), Cow::Borrowed(_)));
}

#[test]
fn request_targets_keep_their_keys_and_lose_their_secrets() {
    let policy = Policy::default();
    // The secrets hold letters past `f`: never in a marker's hex.
    let target =
        "/oauth/callback;jsessionid=Jq?code=cq/x+y==&sig=sq&session=sz&page=2#access_token=zz";
    let shown = policy.redact_target(target);
    for secret in ["Jq", "cq", "x+y", "sq", "sz", "zz"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.starts_with("/oauth/callback;jsessionid=<redacted:"),
        "{shown}"
    );
    assert!(shown.contains("&page=2#access_token=<redacted:"), "{shown}");
    assert_eq!(policy.redact_target("/a?x=1&y=2"), "/a?x=1&y=2");
    assert_eq!(
        policy.redact_target("/countries?code=fr"),
        "/countries?code=fr"
    );
    assert_eq!(policy.redact_target("/a?auth=&=1"), "/a?auth=&=1");
}
