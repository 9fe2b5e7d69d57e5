//! The kernels of the matrix: Debian's own packages, found with apt-cache,
//! fetched once with `apt-get download` and unpacked with `dpkg -x` (nothing
//! is installed on the host), then cached under target/vm-test/kernels as
//! just what a guest needs: the bzImage and the three modules the capture
//! needs, decompressed (busybox's insmod reads plain `.ko` files).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};

use mirror_testkit::{ScratchDir, command::run};

/// One kernel line of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// What `--kernel` takes.
    pub name: &'static str,
    /// The Debian package name is `{prefix}{digits...}{suffix}`.
    prefix: &'static str,
    suffix: &'static str,
    /// Where the kernel comes from, for the report.
    pub origin: &'static str,
}

/// Debian 12's own kernel (the Vagrant box's), and the 6.12 that Debian 12
/// also ships (Debian 13's kernel line): no TCX below 6.6, TCX above.
pub const LINES: &[Line] = &[
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
    /// Is `package` one of this line's image packages (not -dbg, -unsigned)?
    fn version_of<'a>(&self, package: &'a str) -> Option<&'a str> {
        let middle = package
            .strip_prefix(self.prefix)?
            .strip_suffix(self.suffix)?;
        // 6.1: "57"; 6.12: "117+deb12".
        let digits = middle.split('+').next()?;
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(middle)
    }

    /// Orders packages of the line by their ABI / patch number.
    fn number(&self, package: &str) -> u64 {
        self.version_of(package)
            .and_then(|v| v.split('+').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0)
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

/// The newest package of `line` the apt sources offer, else the newest
/// already in the cache; fetched and unpacked when not cached yet.
pub fn prepare(line: Line, cache: &Path) -> Result<Kernel> {
    let offered = newest_offered(line);
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
            "no Debian package of kernel {} found (looked for {}N{} with apt-cache); \
             the matrix needs Debian 12 (bookworm) apt sources and `apt-get update`",
            line.name,
            line.prefix,
            line.suffix
        ),
    };
    let dir = cache.join(&package);
    if !dir.join("done").exists() {
        fetch(&package, &dir)?;
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

fn newest_offered(line: Line) -> Option<String> {
    let names = run(Command::new("apt-cache").args(["pkgnames", line.prefix])).ok()?;
    names
        .lines()
        .filter(|name| line.version_of(name).is_some())
        .max_by_key(|name| line.number(name))
        .map(str::to_owned)
}

fn newest_cached(line: Line, cache: &Path) -> Option<String> {
    fs::read_dir(cache)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| line.version_of(name).is_some() && cache.join(name).join("done").exists())
        .max_by_key(|name| line.number(name))
}

/// `apt-get download` + `dpkg -x` in a scratch directory, then only the
/// bzImage and the modules are kept.
fn fetch(package: &str, dir: &Path) -> Result<()> {
    println!(
        "    fetching {package} from Debian (once; cached in {})",
        dir.display()
    );
    let _ = fs::remove_dir_all(dir);
    // Next to the cache, removed on the way out whatever happens.
    let download = ScratchDir::new_in(
        dir.parent().context("a kernel directory has a parent")?,
        "download",
    )?;
    let scratch = download.path();
    run(Command::new("apt-get")
        // As root, apt would drop to `_apt`, which cannot write here.
        .args(["-o", "APT::Sandbox::User=root", "download", package])
        .current_dir(scratch))
    .with_context(|| format!("downloading {package}"))?;
    let deb = fs::read_dir(scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let tree = scratch.join("tree");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree))?;

    fs::create_dir_all(dir)?;
    let vmlinuz = only_entry(&tree.join("boot"), "vmlinuz-")?;
    fs::copy(&vmlinuz, dir.join("vmlinuz"))?;
    let release_dir = only_entry(&tree.join("lib/modules"), "")?;
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

    #[test]
    fn packages_of_a_line_are_recognised_and_ordered() {
        let old = line("6.1").unwrap();
        assert_eq!(
            old.version_of("linux-image-6.1.0-57-cloud-amd64"),
            Some("57")
        );
        assert_eq!(old.version_of("linux-image-6.1.0-57-cloud-amd64-dbg"), None);
        assert_eq!(old.version_of("linux-image-6.1.0-57-amd64"), None);
        assert_eq!(
            old.version_of("linux-image-6.12.117+deb12-cloud-amd64"),
            None
        );
        assert!(
            old.number("linux-image-6.1.0-100-cloud-amd64")
                > old.number("linux-image-6.1.0-57-cloud-amd64")
        );
        let new = line("6.12").unwrap();
        assert_eq!(
            new.version_of("linux-image-6.12.117+deb12-cloud-amd64"),
            Some("117+deb12")
        );
        assert_eq!(new.version_of("linux-image-6.12-cloud-amd64"), None);
        assert_eq!(new.number("linux-image-6.12.117+deb12-cloud-amd64"), 117);
        assert!(line("5.10").is_err());
    }
}
