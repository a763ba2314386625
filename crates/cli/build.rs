//! Links the `azlin` executable as position-dependent (`-no-pie`): a PIE of this size needs ~40,000
//! relocations applied at every start, which made `azlin --version` take ~1 ms longer than
//! it needs to. The address-space randomisation of the executable image is what this gives up;
//! libraries, stack and heap stay randomised.
fn main() {
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
