//! Files the agent writes hold v1's traffic (recordings: headers, cookies,
//! bodies) or answers (the diff log), so they are created readable by the
//! agent's user only — `0600`, directories `0700` — whatever the umask.
//! The systemd unit's `UMask=0077` covers that one way of running the
//! agent; these cover every other (a shell's usual umask 022, a container).
//! A file that already exists keeps its mode: it was made by someone who
//! chose it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of a file the agent creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a directory the agent creates.
pub const DIR_MODE: u32 = 0o700;

fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Creates `path` (or truncates it), like [`File::create`].
pub fn create(path: &Path) -> io::Result<File> {
    options().write(true).create(true).truncate(true).open(path)
}

/// Creates `path`, failing if it exists.
pub fn create_new(path: &Path) -> io::Result<File> {
    options().write(true).create_new(true).open(path)
}

/// Opens `path` to append, creating it if needed.
pub fn append(path: &Path) -> io::Result<File> {
    options().create(true).append(true).open(path)
}

/// Creates `dir` and its missing parents.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_are_private_whatever_the_umask() {
        // The umask is per process: the test sets the usual one and puts
        // the process's back, so the assertions would fail without the
        // explicit modes.
        let old = unsafe { libc::umask(0o022) };
        let scratch = std::env::temp_dir().join(format!("mirror-private-{}", std::process::id()));
        let dir = scratch.join("a/b");
        create_dir_all(&dir).unwrap();
        let made = [
            (create(&dir.join("created")).map(drop), "created"),
            (create_new(&dir.join("new")).map(drop), "new"),
            (append(&dir.join("appended")).map(drop), "appended"),
        ];
        unsafe { libc::umask(old) };
        for (result, name) in made {
            result.unwrap();
            assert_eq!(mode(&dir.join(name)), FILE_MODE, "{name}");
        }
        assert_eq!(mode(&scratch.join("a")), DIR_MODE);
        assert_eq!(mode(&dir), DIR_MODE);
        assert!(create_new(&dir.join("new")).is_err(), "create_new refuses");
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
