//! Makes sure the browser page's asset directory exists, so that the
//! `rust-embed` derive in `src/http/page.rs` compiles even where the assets
//! were never built (no npm): the page then answers 503 `assets_missing`.
//! `make assets` (dev/assets.sh) builds them into `res/web/dist`.

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let dist = Path::new(&manifest_dir).join("../res/web/dist");
    // A directory here makes cargo re-run this script, and so re-embed the
    // assets, whenever any file below it changes.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../res/web/dist");
    if !dist.join("index.html").is_file() {
        if let Err(e) = std::fs::create_dir_all(&dist) {
            println!("cargo:warning=cannot create {}: {e}", dist.display());
            return;
        }
        println!(
            "cargo:warning=the browser page's assets are not built ({} has no index.html): \
             GET / will answer 503 assets_missing; run `make assets`",
            dist.display()
        );
    }
}
