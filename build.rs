//! Compiles the libfuse glue against the libfuse headers meson selected
//! (FPIO_FUSE_INCLUDEDIR / FPIO_FUSE_LIBDIR, set by scripts/cargo-wrapper.py),
//! falling back to `pkg-config fuse3` for a plain `cargo build`.

use std::env;
use std::process::Command;

fn pkg_config_var(var: &str) -> Option<String> {
    let out = Command::new("pkg-config")
        .args([&format!("--variable={var}"), "fuse3"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    for v in ["FPIO_FUSE_INCLUDEDIR", "FPIO_FUSE_LIBDIR", "PKG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=src/glue/fpio_glue.c");
    println!("cargo:rerun-if-changed=src/fpio.map");

    let includedir = env::var("FPIO_FUSE_INCLUDEDIR")
        .ok()
        .or_else(|| pkg_config_var("includedir").map(|d| format!("{d}/fuse3")));
    let libdir = env::var("FPIO_FUSE_LIBDIR")
        .ok()
        .or_else(|| pkg_config_var("libdir"));
    let includedir = includedir.unwrap_or_else(|| {
        panic!("libfuse 3 headers not found: install libfuse3-dev or set PKG_CONFIG_PATH")
    });

    cc::Build::new()
        .file("src/glue/fpio_glue.c")
        .include(&includedir)
        .define("_FILE_OFFSET_BITS", "64")
        .flag_if_supported("-Wall")
        .flag_if_supported("-Wextra")
        .warnings_into_errors(true)
        .compile("fpioglue");

    if let Some(libdir) = libdir {
        println!("cargo:rustc-link-search=native={libdir}");
    }
    println!("cargo:rustc-link-lib=dylib=fuse3");

    // cargo's cdylib gets the same soname as the meson-built one. Its export
    // list is rustc's own version script (the #[no_mangle] fpio_* functions):
    // adding src/fpio.map as a second script works only with LLD (rustup's
    // default linker since 1.90); GNU ld, which Debian's rustc uses, rejects
    // "anonymous version tag cannot be combined with other version tags".
    // The library meson links and installs applies src/fpio.map (FPIO_0).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfpio.so.0");
}
