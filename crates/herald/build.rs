//! Builds the web UI (the demo chat app and the admin UI in `web/`) with npm and embeds it:
//! `npm ci` when `web/node_modules` is missing or older than `web/package-lock.json`, then
//! `npm run build` into `$OUT_DIR/web-dist`, then `$OUT_DIR/web_assets.rs`, a table of
//! `include_bytes!` that `src/web/` includes.
//!
//! npm runs only when one of the web inputs ([`WEB_INPUTS`]) changed since the last run, when
//! this script itself changed, and on the first build in a target directory; editing Rust code
//! does not run it. Under `cargo clippy` it never runs (see `main`).
//!
//! It also generates the Rust types of the client protocol's Protobuf schema
//! (`proto/client.proto`) with prost into `$OUT_DIR/herald.client.rs`, parsing the schema with
//! protox (a Rust .proto parser) so that no system `protoc` has to be installed.
//!
//! `HERALD_SKIP_WEB=1` builds without the UI (the binary then serves a short "UI not built"
//! page). Without npm the build stops with a message saying to install Node 20 or to set it.

use std::fmt::Write as _;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Inputs of the web build: a change to any of them rebuilds the UI.
const WEB_INPUTS: &[&str] = &[
    "src",
    "public",
    "index.html",
    "admin/index.html",
    "package.json",
    "package-lock.json",
    "vite.config.js",
];

fn main() {
    protobuf();
    println!("cargo:rerun-if-env-changed=HERALD_SKIP_WEB");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env("OUT_DIR"));
    let web = manifest.join("../../web");
    let generated = out.join("web_assets.rs");

    let skip = std::env::var("HERALD_SKIP_WEB").is_ok_and(|v| !v.is_empty() && v != "0");
    // `cargo clippy` compiles this script with clippy-driver, so it is compiled and run again
    // whenever the lint flags change (`cargo clippy` then `cargo clippy -- -D warnings`). Lints
    // never produce a binary: they get the table without the UI instead of an npm build.
    let linting = std::env::var("RUSTC_WORKSPACE_WRAPPER")
        .is_ok_and(|wrapper| wrapper.contains("clippy-driver"));
    if skip || linting || !web.join("package.json").is_file() {
        if !skip && !linting {
            println!(
                "cargo:warning=web/ not found next to the crate: building herald without the web UI"
            );
        }
        write(&generated, &table(&[], false));
        return;
    }
    let web = web.canonicalize().unwrap_or(web);
    for input in WEB_INPUTS {
        let path = web.join(input);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    // Several cargo commands (check, test, release builds) may run this script at once: one
    // npm at a time in web/.
    let _lock = lock(&web);
    check_npm();
    if node_modules_outdated(&web) {
        npm(&web, &["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    }
    let dist = out.join("web-dist");
    let dist_arg = dist.display().to_string();
    npm(
        &web,
        &["run", "build", "--", "--outDir", &dist_arg, "--emptyOutDir"],
    );

    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    if !files.iter().any(|(key, _)| key == "/index.html") {
        panic!("the web build produced no index.html in {}", dist.display());
    }
    write(&generated, &table(&files, true));
}

/// Generates `$OUT_DIR/herald.client.rs` from `proto/client.proto`: prost's types, with
/// `bytes` fields as `bytes::Bytes` so that payloads are shared with `protocol::Payload`
/// rather than copied.
fn protobuf() {
    const SCHEMA: &str = "proto/client.proto";
    println!("cargo:rerun-if-changed={SCHEMA}");
    let descriptors = protox::compile([SCHEMA], ["proto"])
        .unwrap_or_else(|e| panic!("{SCHEMA} is not a valid Protobuf schema: {e}"));
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("cannot generate Rust from {SCHEMA}: {e}"));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

fn write(path: &Path, content: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return;
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The generated Rust: `ASSETS` (URL path, bytes) and whether the UI was built.
fn table(files: &[(String, PathBuf)], built: bool) -> String {
    let mut out = String::from(
        "/// The built web UI: URL path and content of each file.\n\
         pub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (key, path) in files {
        let path = path.display().to_string();
        let _ = writeln!(out, "    ({key:?}, include_bytes!({path:?})),");
    }
    out.push_str("];\n");
    let _ = writeln!(
        out,
        "/// Whether the UI was built (false with HERALD_SKIP_WEB).\npub const BUILT: bool = {built};"
    );
    out
}

/// Every file under `dir`, keyed by its URL path relative to `root` (`/assets/x.js`).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((format!("/{key}"), path));
        }
    }
}

fn check_npm() {
    let found = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        panic!(
            "\n\nbuilding herald's web UI (web/) needs Node.js 20 or newer with npm, and `npm` \
             was not found.\nInstall Node 20 (e.g. `apt-get install nodejs npm`), or build \
             without the UI: HERALD_SKIP_WEB=1 cargo build\n\n"
        );
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `npm ci` must run: no `node_modules`, or it is older than the lock file.
fn node_modules_outdated(web: &Path) -> bool {
    let installed = modified(&web.join("node_modules/.package-lock.json"));
    let wanted = [web.join("package-lock.json"), web.join("package.json")]
        .iter()
        .filter_map(|p| modified(p))
        .max();
    match (installed, wanted) {
        (None, _) => true,
        (Some(installed), Some(wanted)) => installed < wanted,
        (Some(_), None) => false,
    }
}

fn npm(web: &Path, args: &[&str]) {
    let output = Command::new("npm")
        .args(args)
        .current_dir(web)
        .env("npm_config_update_notifier", "false")
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm {}: {e}", args.join(" ")));
    if !output.status.success() {
        panic!(
            "`npm {}` in {} failed ({}):\n{}\n{}\n(set HERALD_SKIP_WEB=1 to build without the UI)",
            args.join(" "),
            web.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// An exclusive lock for npm work in `web`: a directory in the temp dir named after the path,
/// holding the owner's process id; removed when dropped. A lock whose owner is gone (a build
/// that was killed) or that is older than ten minutes is taken over.
struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn lock(web: &Path) -> Option<Lock> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    web.hash(&mut hasher);
    let path = std::env::temp_dir().join(format!("herald-web-build-{:x}.lock", hasher.finish()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15 * 60);
    loop {
        if fs::create_dir(&path).is_ok() {
            let _ = fs::write(path.join("pid"), std::process::id().to_string());
            return Some(Lock(path));
        }
        if lock_is_stale(&path) {
            if fs::remove_dir_all(&path).is_err() && fs::remove_file(&path).is_err() {
                return None;
            }
            continue;
        }
        if std::time::Instant::now() > deadline {
            return None; // go ahead rather than wait forever
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn lock_is_stale(path: &Path) -> bool {
    let old = modified(path)
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(600));
    let owner_gone = fs::read_to_string(path.join("pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| {
            Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
        });
    old || owner_gone
}
