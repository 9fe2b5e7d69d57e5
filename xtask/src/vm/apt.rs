//! A private apt configuration that reaches the Debian suites the kernel
//! matrix takes its kernels from (bookworm, bullseye, trixie-backports),
//! whatever the host's own sources are. It lives under
//! target/vm-test/apt with lists of its own: the host's apt never sees these
//! suites, so nothing from them can be installed or upgraded on the host by
//! accident (no sources file or pinning in /etc/apt to get wrong), and no
//! root is needed. It only ever lists package names and downloads `.deb`
//! files.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result};

use mirror_testkit::command::run;

/// `(archive, suite)`: the archive is the path under the mirror host
/// (`debian` or `debian-security`). Each line of the matrix is in one of
/// these; the security suites carry the newest ABI of 5.10 and 6.1.
const SUITES: &[(&str, &str)] = &[
    ("debian", "bookworm"),
    ("debian-security", "bookworm-security"),
    ("debian", "bullseye"),
    ("debian-security", "bullseye-security"),
    ("debian", "trixie-backports"),
];

/// Debian's own key ring (package debian-archive-keyring): it holds the keys
/// of bullseye, bookworm and trixie.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Lists younger than this are used as they are: a new kernel ABI appears a
/// few times a month, and a run should not wait on the mirror each time.
const LISTS_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// The mirror used when the host's sources name none (not Debian, say).
const DEFAULT_MIRROR: &str = "http://deb.debian.org";

pub struct Apt {
    dir: PathBuf,
    config: PathBuf,
}

impl Apt {
    /// Writes the configuration under `dir`; lists are fetched by
    /// [`Apt::refresh`].
    pub fn new(dir: &Path) -> Result<Self> {
        for sub in ["lists/partial", "cache", "apt.conf.d", "preferences.d"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let (main, security) = host_mirrors();
        fs::write(dir.join("sources.list"), sources(&main, &security))?;
        let config = dir.join("apt.conf");
        fs::write(&config, config_text(dir, &host_proxies()))?;
        Ok(Self {
            dir: dir.to_owned(),
            config,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("APT_CONFIG", &self.config);
        command
    }

    /// `apt-get update` of the private lists, unless they are recent and
    /// were made from the same sources. A failure (no network) leaves the
    /// old lists, if any, in use: the caller then falls back on cached
    /// kernels.
    pub fn refresh(&self) -> Result<()> {
        let stamp = self.dir.join("updated");
        let sources = fs::read_to_string(self.dir.join("sources.list"))?;
        let fresh = fs::read_to_string(&stamp).is_ok_and(|made_from| made_from == sources)
            && fs::metadata(&stamp)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh {
            return Ok(());
        }
        println!(
            "    apt-get update of the kernel suites ({}; lists in {})",
            SUITES
                .iter()
                .map(|(_, s)| *s)
                .collect::<Vec<_>>()
                .join(", "),
            self.dir.join("lists").display()
        );
        let _ = fs::remove_file(&stamp);
        run(self.command("apt-get").arg("update"))
            .context("apt-get update of the kernel suites")?;
        fs::write(&stamp, sources)?;
        Ok(())
    }

    /// Every package name starting with `prefix` in the private lists.
    pub fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let out = run(self.command("apt-cache").args(["pkgnames", prefix]))?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// `apt-get download` of `packages` into `into`.
    pub fn download(&self, packages: &[String], into: &Path) -> Result<()> {
        run(self
            .command("apt-get")
            .arg("download")
            .args(packages)
            .current_dir(into))
        .with_context(|| format!("downloading {}", packages.join(" ")))?;
        Ok(())
    }
}

fn sources(main: &str, security: &str) -> String {
    SUITES
        .iter()
        .map(|(archive, suite)| {
            let host = if *archive == "debian-security" {
                security
            } else {
                main
            };
            format!("deb [signed-by={KEYRING}] {host}/{archive} {suite} main\n")
        })
        .collect()
}

/// Only this directory: the host's apt.conf.d is left out, so that its
/// hooks (appstream, packagekit refreshes after an update) do not run and
/// its index targets (translations, DEP-11) are not fetched; only its
/// proxy settings are carried over.
fn config_text(dir: &Path, proxies: &[String]) -> String {
    let at = |sub: &str| dir.join(sub).display().to_string();
    let mut text = format!(
        "Dir::Etc::sourcelist \"{}\";\n\
         Dir::Etc::sourceparts \"-\";\n\
         Dir::Etc::parts \"{}\";\n\
         Dir::Etc::main \"/dev/null\";\n\
         Dir::Etc::preferences \"/dev/null\";\n\
         Dir::Etc::preferencesparts \"{}\";\n\
         Dir::State::Lists \"{}\";\n\
         Dir::State::status \"/dev/null\";\n\
         Dir::Cache \"{}\";\n\
         Dir::Cache::srcpkgcache \"\";\n\
         Acquire::Languages \"none\";\n\
         // Lists kept compressed: ~20 MB instead of ~100.\n\
         Acquire::GzipIndexes \"true\";\n\
         // As root, apt drops to `_apt`, which cannot write under target/.\n\
         APT::Sandbox::User \"root\";\n",
        at("sources.list"),
        at("apt.conf.d"),
        at("preferences.d"),
        at("lists"),
        at("cache"),
    );
    for line in proxies {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The host's `Acquire::http(s)::Proxy...` settings, as `apt-config dump`
/// prints them (a CI runner may reach the mirrors only through one).
fn host_proxies() -> Vec<String> {
    let Ok(dump) = run(Command::new("apt-config").arg("dump")) else {
        return Vec::new();
    };
    dump.lines()
        .filter(|line| {
            line.starts_with("Acquire::http::Proxy") || line.starts_with("Acquire::https::Proxy")
        })
        .map(str::to_owned)
        .collect()
}

/// The mirrors the host's own sources use for Debian and its security
/// archive (a local mirror or proxy stays in use), else deb.debian.org.
fn host_mirrors() -> (String, String) {
    let policy = run(Command::new("apt-cache").arg("policy")).unwrap_or_default();
    mirrors_in_policy(&policy)
}

/// From `apt-cache policy`: lines like
/// ` 500 http://deb.debian.org/debian bookworm/main amd64 Packages`
/// followed by ` release ...,o=Debian,...`.
fn mirrors_in_policy(policy: &str) -> (String, String) {
    let (mut main, mut security) = (None, None);
    let lines: Vec<&str> = policy.lines().collect();
    for pair in lines.windows(2) {
        let words: Vec<&str> = pair[0].split_whitespace().collect();
        let [_, uri, suite, _, "Packages"] = words[..] else {
            continue;
        };
        if !pair[1].contains("o=Debian,") {
            continue;
        }
        let Some(host) = uri
            .strip_suffix("/debian-security")
            .or_else(|| uri.strip_suffix("/debian"))
        else {
            continue;
        };
        let slot = if suite.contains("-security/") {
            &mut security
        } else {
            &mut main
        };
        slot.get_or_insert_with(|| host.to_owned());
    }
    let main = main.unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
    let security = security.unwrap_or_else(|| main.clone());
    (main, security)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 https://packages.cloud.google.com/apt cloud-sdk-bookworm/main amd64 Packages
     release o=cloud-sdk,c=main,b=amd64
 500 http://security.example/debian-security bookworm-security/main amd64 Packages
     release v=12,o=Debian,a=oldstable-security,n=bookworm-security,l=Debian-Security,c=main,b=amd64
 500 http://mirror.example/debian bookworm/main amd64 Packages
     release v=12.15,o=Debian,a=oldstable,n=bookworm,l=Debian,c=main,b=amd64
Pinned packages:
";

    #[test]
    fn the_hosts_debian_mirrors_are_reused() {
        assert_eq!(
            mirrors_in_policy(POLICY),
            (
                "http://mirror.example".to_owned(),
                "http://security.example".to_owned()
            )
        );
        let none = mirrors_in_policy("Package files:\n 100 /var/lib/dpkg/status\n");
        assert_eq!(none.0, DEFAULT_MIRROR);
        assert_eq!(none.1, DEFAULT_MIRROR);
    }

    #[test]
    fn every_suite_is_listed_with_debians_key() {
        let list = sources("http://m", "http://s");
        assert!(list.contains("http://m/debian bullseye main"));
        assert!(list.contains("http://s/debian-security bullseye-security main"));
        assert!(list.contains("http://m/debian trixie-backports main"));
        assert_eq!(list.lines().count(), SUITES.len());
        assert!(list.lines().all(|l| l.contains(KEYRING)));
    }

    #[test]
    fn the_config_keeps_apt_away_from_the_hosts_state() {
        let text = config_text(
            Path::new("/c"),
            &["Acquire::http::Proxy \"http://p\";".into()],
        );
        assert!(text.contains("Dir::State::Lists \"/c/lists\";"));
        assert!(text.contains("Dir::Etc::sourceparts \"-\";"));
        assert!(text.contains("Dir::Etc::parts \"/c/apt.conf.d\";"));
        assert!(text.contains("Dir::State::status \"/dev/null\";"));
        assert!(text.ends_with("Acquire::http::Proxy \"http://p\";\n"));
    }
}
