//! `cargo xtask cross-test` (and part of `cargo xtask test`): the inference core's kernel
//! tests built for aarch64 and run under qemu-user, so the NEON paths are compiled,
//! clippy-clean and exact on every change without an ARM machine. The cross linker and qemu
//! come from Debian (`setup_test_machine`), the target's standard library from rustup.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, root, run};

const TARGET: &str = "aarch64-unknown-linux-gnu";

/// Clippy and the kernel unit tests of `cinder-core` for aarch64 (burn's GPU backend left
/// out: the kernels do not touch it). Inside `cargo xtask test` (`required: false`) a machine
/// whose rustup cannot add the target skips them, saying so loudly, rather than failing every
/// other test with it; `cargo xtask cross-test` requires them.
pub(crate) fn aarch64_tests(required: bool) -> Result<()> {
    if let Err(e) = ensure_target() {
        if required {
            return Err(e);
        }
        eprintln!(
            "xtask: WARNING: the aarch64 kernel tests did not run: rustup could not add \
             {TARGET}: {e:#}"
        );
        return Ok(());
    }
    let with_env = |c: &mut Command| {
        c.env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        )
        .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
            "qemu-aarch64 -L /usr/aarch64-linux-gnu",
        );
    };
    let core = [
        "--release",
        "--target",
        TARGET,
        "-p",
        "cinder-core",
        "--no-default-features",
        "--lib",
    ];
    let mut clippy = cargo();
    clippy
        .arg("clippy")
        .args(core)
        .args(["--tests", "--", "-D", "warnings"]);
    with_env(&mut clippy);
    run(&mut clippy)?;
    let mut test = cargo();
    test.arg("test").args(core).args(["--", "kernels::"]);
    with_env(&mut test);
    run(&mut test)
}

/// The aarch64 standard library, added through rustup when missing.
fn ensure_target() -> Result<()> {
    let out = Command::new("rustup")
        .current_dir(root())
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup target list")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup")
        .current_dir(root())
        .args(["target", "add", TARGET]))
}
