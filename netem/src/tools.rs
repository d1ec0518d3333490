//! Where the system tools the link drives live (`tc`, `ip`, `nft`): first the
//! PATH, then the sbin directories, which an ordinary user's PATH often lacks
//! (Debian's default user PATH has no /usr/sbin) although the tools run fine
//! inside a user namespace.

use std::path::PathBuf;
use std::process::Command;

const SBIN: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"];

/// The path to run for `name`: found on PATH, else in an sbin directory, else
/// `name` itself (so the spawn error names it).
pub fn locate(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A `Command` for the system tool `name` (see [`locate`]).
pub fn command(name: &str) -> Command {
    Command::new(locate(name))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_as_given() {
        assert_eq!(
            locate("quicbench-no-such-tool"),
            PathBuf::from("quicbench-no-such-tool")
        );
    }

    #[test]
    fn sh_is_found_with_an_empty_path() {
        // /bin/sh exists everywhere this runs; with PATH unset the sbin
        // fallbacks still end in /usr/bin.
        let p = locate("sh");
        assert!(p.is_absolute(), "{}", p.display());
    }
}
