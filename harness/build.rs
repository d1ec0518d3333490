//! Record the versions of the protocol stacks from Cargo.lock, so run.json can
//! say exactly what was measured.

fn main() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let wanted = [
        "quinn",
        "quinn-proto",
        "rustls",
        "hyper",
        "h3",
        "h3-quinn",
        "tokio",
        "h2",
    ];
    let mut found = Vec::new();
    let mut name: Option<String> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("version = ") {
            if let Some(n) = name.take() {
                if wanted.contains(&n.as_str()) {
                    found.push(format!("{n}={}", v.trim_matches('"')));
                }
            }
        }
    }
    println!(
        "cargo:rustc-env=QUICBENCH_STACK_VERSIONS={}",
        found.join(";")
    );
}
