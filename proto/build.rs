//! Compiles `seedship/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "seedship/v1/common.proto",
        "seedship/v1/agents.proto",
        "seedship/v1/seeds.proto",
        "seedship/v1/diskprep.proto",
        "seedship/v1/shipping.proto",
        "seedship/v1/operator.proto",
    ];
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Drive keys and passkeys must never reach logs through a derived Debug.
        .skip_debug([
            "seedship.v1.DriveReport",
            "seedship.v1.GetDriveKeyResponse",
            "seedship.v1.GetPasskeyResponse",
            "seedship.v1.GetLeasePasskeyResponse",
        ])
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=seedship");
    Ok(())
}
