//! The probe's command line. Also why this file exists: an integration
//! test makes `cargo test --workspace` build the `sdk-probe` binary with
//! the workspace's unified features, so the end-to-end suite finds it
//! without a second build of the SDK under other features.

use std::process::Command;

fn probe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sdk-probe"))
        .args(args)
        .output()
        .expect("sdk-probe runs")
}

#[test]
fn unknown_commands_print_usage_and_fail() {
    for args in [&[][..], &["nonsense"][..]] {
        let out = probe(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: sdk-probe once | imds | soak"), "{err}");
        assert!(out.stdout.is_empty());
    }
}
