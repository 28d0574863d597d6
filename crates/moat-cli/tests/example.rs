//! The newcomer's story, `examples/private-registry.sh`, runs as written against the binary
//! under test: a private registry, the clear denial, endpoints, upload and download from inside.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[test]
fn the_private_registry_example_runs() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/private-registry.sh");
    let out = std::process::Command::new("bash").arg(script).env("MOAT", common::BIN).env_remove("MOAT_PROFILE").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the example failed:\n{stdout}\n{stderr}");
    for step in ["PublicNetworkAccessDisabled", "pe-registry", "Approved", "downloaded bytes match", "Microsoft.Network/admission", "done:"]
    {
        assert!(stdout.contains(step) || stderr.contains(step), "'{step}' missing from the example's output:\n{stdout}\n{stderr}");
    }
}
