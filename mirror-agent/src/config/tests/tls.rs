//! The TLS settings of https targets.

use super::*;

/// A PEM CA certificate for the TLS settings' tests (a self-signed CA,
/// P-256, made once with `openssl req -x509`; its key was not kept):
/// certificates are made at run time only by the kernel tests.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkjCCATmgAwIBAgIUSMSjfQFXBPhjHjdpqiQtC4OxjKgwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTbWlycm9yIHVuaXQtdGVzdCBDQTAgFw0yNjExMzAyMDQ3Mzla
GA8yMTI2MTEwNjIwNDczOVowHjEcMBoGA1UEAwwTbWlycm9yIHVuaXQtdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPqycy8LeApWaHG9hRSsqyy2skmC
gIgZDahSlQel0KX4tO7tG0uKStk7FuvtXt7RaXlqTPETrGZ2TFj7qxeg1BOjUzBR
MB0GA1UdDgQWBBR8+mn/ZDxOfCJ5q9ZTaFn+LyuAazAfBgNVHSMEGDAWgBR8+mn/
ZDxOfCJ5q9ZTaFn+LyuAazAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA
MEQCIB1Byrf4QrpMEDpbGnZPzshF1aYwQvSvarXhVoQDUjMJAiAIJRoBZFrht7vu
ZanbaKq87hlUfHSiw9dssGs7Iwh65A==
-----END CERTIFICATE-----
";

#[test]
fn https_targets_get_their_ca_file_or_the_top_levels_or_the_system_roots() {
    let ca = write_temp("ca.pem", TEST_CA_PEM);
    let other = write_temp("other-ca.pem", TEST_CA_PEM);
    let text = format!(
        "ca_file = \"{}\"\n\
         [[target]]\nurl = \"https://v2.internal\"\n\
         [[target]]\nurl = \"https://v3.internal:8443\"\nca_file = \"{}\"\ninsecure_skip_verify = true\n\
         [[target]]\nurl = \"http://v4\"\n",
        ca.display(),
        other.display()
    );
    let config = resolved(&text);
    let settings = &config.live.shadows.settings;
    let roots_path = |i: usize| match &settings[i].tls.as_ref().unwrap().roots {
        TlsRoots::CaFile { path, certs } => {
            assert_eq!(certs.len(), 1);
            path.clone()
        }
        TlsRoots::System => panic!("target {i}: system roots"),
    };
    assert_eq!(roots_path(0), ca, "the top level's");
    assert!(settings[0].tls.as_ref().unwrap().verify);
    assert_eq!(roots_path(1), other, "its own");
    assert!(!settings[1].tls.as_ref().unwrap().verify, "its own opt-out");
    assert_eq!(settings[2].tls, None, "http: no TLS");

    // Spelled out again by check-config, per target, and read back alike.
    let printed = render_config(&config).unwrap();
    assert!(printed.contains("insecure_skip_verify = true"), "{printed}");
    let again = resolved(&printed);
    assert_eq!(again.live.shadows.settings, *settings);

    // Without a CA file: the system's roots, verified.
    let plain = route_settings(&["--shadow", "https://v2.internal"]);
    assert_eq!(plain[0].tls, Some(TlsSettings::default()));
}

fn route_settings(args: &[&str]) -> Vec<crate::shadow::TargetSettings> {
    loaded(args).live.shadows.settings
}

#[test]
fn the_tls_flags_apply_to_the_https_targets() {
    let ca = write_temp("flag-ca.pem", TEST_CA_PEM);
    let settings = route_settings(&[
        "--shadow",
        "https://v2:8443",
        "--shadow",
        "http://v3",
        "--ca-file",
        ca.to_str().unwrap(),
        "--insecure-skip-verify",
    ]);
    let tls = settings[0].tls.as_ref().unwrap();
    assert!(matches!(&tls.roots, TlsRoots::CaFile { path, .. } if *path == ca));
    assert!(!tls.verify);
    assert_eq!(settings[1].tls, None);
    // Takes no value but with `=`: what follows is a flag.
    let next = route_settings(&["--insecure-skip-verify", "--shadow", "https://v2"]);
    assert!(!next[0].tls.as_ref().unwrap().verify);
    let off = route_settings(&["--insecure-skip-verify=false", "--shadow", "https://v2"]);
    assert!(off[0].tls.as_ref().unwrap().verify);
}

#[test]
fn bad_tls_settings_are_clear_errors() {
    let missing = refused(&["--shadow", "https://v2", "--ca-file", "/nonexistent/ca.pem"]);
    assert!(
        missing.contains("key `ca_file`")
            && missing.contains("cannot read `/nonexistent/ca.pem`")
            && missing.contains("--ca-file"),
        "{missing}"
    );
    let no_https = refused(&["--shadow", "http://v2", "--insecure-skip-verify"]);
    assert!(no_https.contains("no target is https"), "{no_https}");

    // A target whose CA file holds `pem`, and the error expected of it
    // (`{path}` stands for the file's path).
    let ca_file = |name: &str, pem: &str, error: &str| {
        let path = write_temp(name, pem).display().to_string();
        (
            format!("[[target]]\nurl = \"https://a\"\nca_file = \"{path}\"\n"),
            format!(
                ":2:7: key `target.ca_file`: {}",
                error.replace("{path}", &path)
            ),
        )
    };
    let cases = [
        ca_file(
            "junk.pem",
            "not a certificate\n",
            "`{path}` holds no certificate",
        ),
        ca_file(
            "bad-cert.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "certificate 1 of `{path}` is not a valid CA certificate",
        ),
        (
            "[[target]]\nurl = \"http://a\"\ninsecure_skip_verify = true\n".to_owned(),
            ":2:7: key `target.insecure_skip_verify`: `http://a` is not https".to_owned(),
        ),
        (
            "[[target]]\nurl = \"https://a\"\ninsecure_skip_verify = \"yes\"\n".to_owned(),
            ":3:24: key `target.insecure_skip_verify`: invalid type".to_owned(),
        ),
        (
            "ca_file = \"\"\n[[target]]\nurl = \"https://a\"\n".to_owned(),
            ":1:11: key `ca_file`: a CA file needs a file name".to_owned(),
        ),
    ];
    for (text, expected) in cases {
        let err = file_error("tls.toml", &text, &expected);
        assert!(!err.contains('\n'), "one line: {err}");
    }
}
