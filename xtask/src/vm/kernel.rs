//! The kernels of the matrix: Debian's own packages, found with apt-cache
//! in the matrix's private apt lists ([`super::apt`]), fetched once with
//! `apt-get download` and unpacked with `dpkg -x` (nothing is installed on
//! the host), then cached under target/vm-test/kernels as just what a guest
//! needs: the bzImage and the three modules the capture needs, decompressed
//! (busybox's insmod reads plain `.ko` files).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};

use mirror_testkit::{ScratchDir, command::run};

use super::apt::Apt;

/// One kernel line of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// What `--kernel` takes.
    pub name: &'static str,
    /// The Debian image package is `{prefix}{numbers}{suffix}`, where
    /// numbers are dot-separated, optionally followed by `+debNN`.
    prefix: &'static str,
    suffix: &'static str,
    /// Where the kernel comes from, for the report.
    pub origin: &'static str,
}

/// The kernels users' nodes run, oldest first: 5.10 (Debian 11, Amazon
/// Linux 2), 6.1 (Debian 12, the Vagrant box), 6.12 (Debian 13's line) and
/// the newest Debian builds (7.x, trixie-backports). No TCX below 6.6.
pub const LINES: &[Line] = &[
    Line {
        name: "5.10",
        prefix: "linux-image-5.10.0-",
        suffix: "-cloud-amd64",
        origin: "Debian 11 (bullseye; Amazon Linux 2's line)",
    },
    Line {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64",
        origin: "Debian 12 (the Vagrant box's kernel)",
    },
    Line {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "-cloud-amd64",
        origin: "Debian 12's 6.12 line (Debian 13's kernel)",
    },
    Line {
        name: "7.x",
        prefix: "linux-image-7.",
        suffix: "-cloud-amd64",
        origin: "Debian 13's backports (the newest Debian kernel)",
    },
];

/// The modules the guest loads: veth for the test's link, clsact and
/// cls_bpf for the netlink attach mode. Built in on this machine's kernel,
/// modules in Debian's.
pub const MODULES: &[&str] = &[
    "drivers/net/veth",
    "net/sched/sch_ingress",
    "net/sched/cls_bpf",
];

/// A kernel ready to boot.
#[derive(Debug)]
pub struct Kernel {
    pub line: Line,
    /// The Debian package it came from.
    pub package: String,
    pub bzimage: PathBuf,
    /// Module files (`NAME.ko`), in load order.
    pub modules: Vec<PathBuf>,
}

impl Line {
    /// The numbers of `package` if it is one of this line's image packages
    /// (not -dbg, -unsigned, nor the metapackage): 5.10 and 6.1: `[46]`
    /// (the ABI); 6.12: `[118]` (`118+deb12`); 7.x: `[3, 4]` (`3.4+deb13`).
    fn version_of(&self, package: &str) -> Option<Vec<u64>> {
        let middle = package
            .strip_prefix(self.prefix)?
            .strip_suffix(self.suffix)?;
        let numbers = match middle.split_once('+') {
            Some((numbers, build)) => build.starts_with("deb").then_some(numbers)?,
            None => middle,
        };
        numbers.split('.').map(|n| n.parse().ok()).collect()
    }
}

pub fn line(name: &str) -> Result<Line> {
    LINES
        .iter()
        .copied()
        .find(|line| line.name == name)
        .with_context(|| {
            let known: Vec<_> = LINES.iter().map(|l| l.name).collect();
            format!(
                "unknown kernel `{name}`; available: {}, all",
                known.join(", ")
            )
        })
}

/// The newest package of `line` the kernel suites offer, else the newest
/// already in the cache; fetched and unpacked when not cached yet.
pub fn prepare(line: Line, apt: &Apt, cache: &Path) -> Result<Kernel> {
    let offered = newest_offered(line, apt);
    let cached = newest_cached(line, cache);
    let package = match (offered, cached) {
        (Some(package), _) => package,
        (None, Some(package)) => {
            println!(
                "    apt offers no {} kernel: using the cached {package}",
                line.name
            );
            package
        }
        (None, None) => bail!(
            "no Debian package of kernel {} found (looked for {}N{} with apt-cache \
             in the suites of {}) and none cached",
            line.name,
            line.prefix,
            line.suffix,
            cache.parent().unwrap_or(cache).join("apt").display(),
        ),
    };
    let dir = cache.join(&package);
    if !dir.join("done").exists() {
        fetch(apt, &package, &dir)?;
    }
    let bzimage = dir.join("vmlinuz");
    let modules = MODULES
        .iter()
        .map(|m| dir.join(format!("{}.ko", module_name(m))))
        .collect();
    Ok(Kernel {
        line,
        package,
        bzimage,
        modules,
    })
}

fn module_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn newest_offered(line: Line, apt: &Apt) -> Option<String> {
    let names = apt.names(line.prefix).ok()?;
    names
        .into_iter()
        .filter_map(|name| Some((line.version_of(&name)?, name)))
        .max()
        .map(|(_, name)| name)
}

fn newest_cached(line: Line, cache: &Path) -> Option<String> {
    fs::read_dir(cache)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| cache.join(name).join("done").exists())
        .filter_map(|name| Some((line.version_of(&name)?, name)))
        .max()
        .map(|(_, name)| name)
}

/// The packages that hold the kernel of `image`: the image package itself
/// and, from Debian 13 on, where `linux-image-*` is an empty shell, its
/// `linux-binary-*` (vmlinuz) and `linux-modules-*` when the suites offer
/// them.
fn packages_of(image: &str, apt: &Apt) -> Result<Vec<String>> {
    let release = image
        .strip_prefix("linux-image-")
        .context("not an image package")?;
    let mut packages = vec![image.to_owned()];
    for kind in ["linux-binary-", "linux-modules-"] {
        let name = format!("{kind}{release}");
        if apt.names(&name)?.contains(&name) {
            packages.push(name);
        }
    }
    Ok(packages)
}

/// `apt-get download` + `dpkg -x` in a scratch directory, then only the
/// bzImage and the modules are kept.
fn fetch(apt: &Apt, package: &str, dir: &Path) -> Result<()> {
    let packages = packages_of(package, apt)?;
    println!(
        "    fetching {} from Debian (once; cached in {})",
        packages.join(" "),
        dir.display()
    );
    let _ = fs::remove_dir_all(dir);
    // Next to the cache, removed on the way out whatever happens.
    let download = ScratchDir::new_in(
        dir.parent().context("a kernel directory has a parent")?,
        "download",
    )?;
    let scratch = download.path();
    apt.download(&packages, scratch)?;
    let tree = scratch.join("tree");
    for deb in fs::read_dir(scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
    {
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree))?;
    }

    fs::create_dir_all(dir)?;
    // Up to Debian 12: /boot/vmlinuz-RELEASE and /lib/modules/RELEASE;
    // from 13 on: /usr/lib/modules/RELEASE/vmlinuz.
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|at| tree.join(at))
        .find(|at| at.is_dir())
        .with_context(|| format!("{package} has no lib/modules"))?;
    let release_dir = only_entry(&modules_root, "")?;
    let vmlinuz = match only_entry(&tree.join("boot"), "vmlinuz-") {
        Ok(path) => path,
        Err(_) => release_dir.join("vmlinuz"),
    };
    fs::copy(&vmlinuz, dir.join("vmlinuz"))
        .with_context(|| format!("{package}: no kernel at {}", vmlinuz.display()))?;
    for module in MODULES {
        let base = release_dir.join("kernel").join(module);
        let plain = base.with_extension("ko");
        let xz = base.with_extension("ko.xz");
        let out = dir.join(format!("{}.ko", module_name(module)));
        if plain.exists() {
            fs::copy(&plain, &out)?;
        } else if xz.exists() {
            let bytes = Command::new("xz")
                .arg("-dc")
                .arg(&xz)
                .output()
                .context("running xz (package xz-utils)")?;
            ensure!(bytes.status.success(), "xz -dc {} failed", xz.display());
            fs::write(&out, bytes.stdout)?;
        } else {
            bail!("{package} has no module {module} (built in?)");
        }
    }
    fs::write(dir.join("done"), package)?;
    Ok(())
}

/// The one entry of `dir` whose name starts with `prefix`.
fn only_entry(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path());
    let first = found
        .next()
        .with_context(|| format!("nothing named {prefix}* in {}", dir.display()))?;
    ensure!(
        found.next().is_none(),
        "more than one {prefix}* in {}",
        dir.display()
    );
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newest<'a>(line: &Line, names: &[&'a str]) -> Option<&'a str> {
        names
            .iter()
            .filter_map(|name| Some((line.version_of(name)?, *name)))
            .max()
            .map(|(_, name)| name)
    }

    #[test]
    fn packages_of_each_line_are_recognised_and_ordered() {
        let old = line("5.10").unwrap();
        assert_eq!(
            old.version_of("linux-image-5.10.0-46-cloud-amd64"),
            Some(vec![46])
        );
        assert_eq!(
            old.version_of("linux-image-5.10.0-46-cloud-amd64-dbg"),
            None
        );
        assert_eq!(
            old.version_of("linux-image-5.10.0-46-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(old.version_of("linux-image-5.10.0-46-amd64"), None);
        assert_eq!(
            newest(
                &old,
                &[
                    "linux-image-5.10.0-9-cloud-amd64",
                    "linux-image-5.10.0-46-cloud-amd64",
                    "linux-image-6.1.0-57-cloud-amd64",
                ]
            ),
            Some("linux-image-5.10.0-46-cloud-amd64")
        );

        let bookworm = line("6.1").unwrap();
        assert_eq!(
            bookworm.version_of("linux-image-6.1.0-57-cloud-amd64"),
            Some(vec![57])
        );
        assert_eq!(
            bookworm.version_of("linux-image-6.12.117+deb12-cloud-amd64"),
            None
        );
        assert!(
            bookworm.version_of("linux-image-6.1.0-100-cloud-amd64")
                > bookworm.version_of("linux-image-6.1.0-57-cloud-amd64")
        );

        let twelve = line("6.12").unwrap();
        assert_eq!(
            twelve.version_of("linux-image-6.12.117+deb12-cloud-amd64"),
            Some(vec![117])
        );
        // The metapackage, and an unsigned build, are not kernels.
        assert_eq!(twelve.version_of("linux-image-6.12-cloud-amd64"), None);
        assert_eq!(
            twelve.version_of("linux-image-6.12.117+deb12-cloud-amd64-unsigned"),
            None
        );

        // 7.3.4 is newer than 7.2.12 (numbers, not text, are compared).
        let newest_line = line("7.x").unwrap();
        assert_eq!(
            newest(
                &newest_line,
                &[
                    "linux-image-7.2.12+deb13-cloud-amd64",
                    "linux-image-7.3.4+deb13-cloud-amd64",
                    "linux-image-7.2.9+deb13-cloud-amd64",
                    "linux-image-7.3.4+deb13-cloud-amd64-dbg",
                    "linux-image-6.19.14+deb13-cloud-amd64",
                ]
            ),
            Some("linux-image-7.3.4+deb13-cloud-amd64")
        );
        assert_eq!(
            newest_line.version_of("linux-image-7.3.4+deb13-rt-amd64"),
            None
        );

        assert!(line("4.19").is_err());
    }

    #[test]
    fn the_newest_cached_kernel_of_a_line_is_found() {
        let cache = ScratchDir::new("kernel-cache").unwrap();
        for (name, done) in [
            ("linux-image-7.2.12+deb13-cloud-amd64", true),
            ("linux-image-7.3.4+deb13-cloud-amd64", true),
            // Not finished: a fetch that was cut.
            ("linux-image-7.4.1+deb13-cloud-amd64", false),
            ("linux-image-6.1.0-57-cloud-amd64", true),
        ] {
            let dir = cache.path().join(name);
            fs::create_dir_all(&dir).unwrap();
            if done {
                fs::write(dir.join("done"), name).unwrap();
            }
        }
        assert_eq!(
            newest_cached(line("7.x").unwrap(), cache.path()).as_deref(),
            Some("linux-image-7.3.4+deb13-cloud-amd64")
        );
        assert_eq!(newest_cached(line("5.10").unwrap(), cache.path()), None);
    }
}
