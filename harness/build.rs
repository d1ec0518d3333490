//! Record the versions of the protocol stacks from Cargo.lock, so run.json can
//! say exactly what was measured.

fn main() {
    // At run time, not env!(): a build script compiled in another checkout
    // (a copied target directory) would read that checkout's Cargo.lock.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let lock = std::path::Path::new(&dir).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    // No versions would make every run.json silently incomplete: fail the build.
    let text = std::fs::read_to_string(&lock)
        .unwrap_or_else(|e| panic!("reading {} for the stack versions: {e}", lock.display()));
    let wanted = [
        "quinn",
        "quinn-proto",
        "rustls",
        "hyper",
        "h3",
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
    assert!(
        !found.is_empty(),
        "{} names none of the protocol stacks",
        lock.display()
    );
    println!(
        "cargo:rustc-env=QUICBENCH_STACK_VERSIONS={}",
        found.join(";")
    );
}
