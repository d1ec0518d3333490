//! Record the source tree's git commit in the binary (run.json says what was
//! measured). Docker builds pass it as QUICBENCH_GIT_COMMIT instead.

fn main() {
    println!("cargo:rerun-if-env-changed=QUICBENCH_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    if std::env::var("QUICBENCH_GIT_COMMIT").is_ok_and(|v| !v.is_empty()) {
        return;
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !commit.is_empty() {
        println!("cargo:rustc-env=QUICBENCH_GIT_COMMIT={commit}");
    }
}
