#!/usr/bin/env python3
"""The one bridge from meson to cargo (the librsvg pattern).

build: cargo build --locked, then copy the staticlib to meson's output path.
test:  cargo test --locked, with the same libfuse selection as the build.

meson passes the libfuse it found (include and lib dirs) so that cargo's
build.rs compiles the libfuse glue against the very same headers: one libfuse
per build tree, chosen once at `meson setup` through PKG_CONFIG_PATH.

A release tarball (meson dist, scripts/dist-vendor.sh) carries vendor/ and
.cargo/config.toml: then cargo runs --offline from the source root, where it
finds that configuration wherever the build directory is.
"""
import argparse
import os
import shutil
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["build", "test"])
    ap.add_argument("--cargo", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--target-dir", required=True)
    ap.add_argument("--profile", choices=["debug", "release"], default="release")
    ap.add_argument("--fuse-includedir", required=True)
    ap.add_argument("--fuse-libdir", required=True)
    ap.add_argument("--output", help="where to copy the staticlib (build)")
    args, rest = ap.parse_known_args()

    env = dict(os.environ)
    env["FPIO_FUSE_INCLUDEDIR"] = args.fuse_includedir
    env["FPIO_FUSE_LIBDIR"] = args.fuse_libdir
    # cargo test binaries must load the libfuse we built against, not the system one.
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in [args.fuse_libdir, env.get("LD_LIBRARY_PATH", "")] if p)

    cmd = [args.cargo, args.command, "--locked", "--manifest-path", args.manifest,
           "--target-dir", args.target_dir]
    if args.profile == "release":
        cmd.append("--release")
    srcdir = os.path.dirname(os.path.abspath(args.manifest))
    vendored = (os.path.isdir(os.path.join(srcdir, "vendor"))
                and os.path.isfile(os.path.join(srcdir, ".cargo", "config.toml")))
    if vendored:
        cmd.append("--offline")
    cmd += [r for r in rest if r != "--"]
    res = subprocess.run(cmd, env=env, cwd=srcdir if vendored else None)
    if res.returncode != 0:
        return res.returncode

    if args.command == "build":
        if not args.output:
            print("cargo-wrapper: build needs --output", file=sys.stderr)
            return 2
        built = os.path.join(args.target_dir, args.profile, "libfpio.a")
        tmp = args.output + ".tmp"
        shutil.copyfile(built, tmp)
        os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
