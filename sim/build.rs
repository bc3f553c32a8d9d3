//! Stamps the harness with the commit it was built from (`-dirty` with uncommitted changes to
//! tracked files), so that reports and replay commands name the code that ran, not whatever
//! the checkout holds when the binary runs.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let build = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            format!("{head}{}", if dirty { "-dirty" } else { "" })
        }
        None => format!(
            "{}-unknown-commit",
            std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
        ),
    };
    println!("cargo:rustc-env=ZRAFT_BUILD={build}");
    // A new commit, a staged change, or an edit to the code that goes into the binary.
    // (Only paths that exist: cargo would take a missing one as changed on every build.)
    let paths = [
        "../.git/HEAD",
        "../.git/index",
        "../.git/refs",
        "../.git/packed-refs",
        "../src",
        "src",
        "../Cargo.toml",
        "Cargo.toml",
    ];
    for path in paths.iter().filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}
